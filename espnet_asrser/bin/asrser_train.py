#!/usr/bin/env python3
"""Usage: python -m espnet_asrser.bin.asrser_train --config conf/train_asrser.yaml \
    --train_data_path_and_name_and_type dump/fbank/train/feats.scp,speech,kaldi_ark \
    --train_data_path_and_name_and_type data/train/emotion,emotion,text \
    --train_data_path_and_name_and_type data/train/text,text,text \
    --train_shape_file exp/stats/train/speech_shape ... --output_dir exp/asrser

Trains the ASR-SER model or one of its baselines (``--mode``); every option of ESPnet's
``asr_train`` applies, see ``--help`` and ``--print_config`` (which writes only YAML to
stdout, a complete config that ``--config`` reads back).
"""

from espnet_asrser.bin import flash_attention_notice_to_stderr, run_task

flash_attention_notice_to_stderr()

from espnet_asrser.tasks.asrser import ASRSERTask  # noqa: E402  (after the notice)


def get_parser():
    return ASRSERTask.get_parser()


def main(cmd=None):
    run_task(ASRSERTask, cmd)


if __name__ == "__main__":
    main()
