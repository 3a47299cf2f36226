"""ESPnet's ASR task, trained by a Trainer whose attention plots show our A2W decoder.

:class:`ASRTask` is ``espnet2.tasks.asr.ASRTask`` with one class attribute changed,
``trainer`` (:class:`~espnet_asrser.train.attention_plot.PlottingTrainer`, ESPnet's
``Trainer`` whose ``att_ws/`` also includes our location-aware attention). Options, model,
config and checkpoints are ESPnet's own: ``espnet2.bin.asr_inference.Speech2Text`` loads
the result like any ESPnet ASR model (in a process that imported :mod:`espnet_asrser.tasks`,
which registers our components).
"""

from espnet2.tasks import asr as espnet_asr_task

from espnet_asrser.tasks import register_asr_components
from espnet_asrser.train.attention_plot import PlottingTrainer

register_asr_components()


class ASRTask(espnet_asr_task.ASRTask):
    trainer = PlottingTrainer
