#!/usr/bin/env python3
"""Usage: python -m espnet_asrser.bin.asr_inference --asr_train_config exp/asr/config.yaml \
    --asr_model_file exp/asr/valid.acc.ave.pth --beam_size 4 --ctc_weight 0 \
    --data_path_and_name_and_type dump/fbank/test/feats.scp,speech,kaldi_ark --output_dir D

ESPnet's own ``asr_inference`` (``Speech2Text``) with this package's components registered,
so models trained with :mod:`espnet_asrser.bin.asr_train` decode unchanged.
"""

from espnet2.bin import asr_inference

import espnet_asrser.tasks  # noqa: F401  (registers the A2W components)


def main(cmd=None):
    asr_inference.main(cmd)


if __name__ == "__main__":
    main()
