"""Training reliability on top of ESPnet's Trainer: see ``docs/reliability.md``.

``ASRSERTrainer`` is the ``trainer`` of ``ASRSERTask``; ``checkpoint`` holds the checks and
repairs of an experiment directory that it runs before training resumes. ``attention_plot``
lets ESPnet's attention plots (``att_ws/``) show our A2W decoder's attention, for
``ASRSERTrainer`` and for ``PlottingTrainer``, the trainer of ``asr_train``.
"""

from espnet_asrser.train.checkpoint import CheckpointError, ConfigChangeError
from espnet_asrser.train.trainer import ASRSERTrainer

__all__ = ["ASRSERTrainer", "CheckpointError", "ConfigChangeError"]
