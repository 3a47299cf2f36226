"""ESPnet tasks of this package; importing it registers our ASR components in ESPnet."""

from espnet_asrser.tasks.registry import register_asr_components

register_asr_components()
