#!/usr/bin/env python3
"""Usage: python -m espnet_asrser.bin.asr_train --config conf/train_a2w.yaml ...

ESPnet's own ASR training (``espnet2.bin.asr_train``) with this package's components
registered: ``frontend: logmel``, ``preencoder: stack`` and ``decoder: a2w`` (the paper's
acoustic-to-word model). The checkpoints are ordinary ESPnet ASR models; only the attention
plots (``att_ws/``) differ, they also show the A2W decoder's attention
(:class:`espnet_asrser.tasks.asr.ASRTask`).
"""

from espnet_asrser.bin import flash_attention_notice_to_stderr, run_task

flash_attention_notice_to_stderr()

from espnet_asrser.tasks.asr import ASRTask  # noqa: E402  (after the notice)


def get_parser():
    return ASRTask.get_parser()


def main(cmd=None):
    run_task(ASRTask, cmd)


if __name__ == "__main__":
    main()
