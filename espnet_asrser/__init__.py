"""espnet-asrser: speech emotion recognition from the decoder states of an A2W ASR model.

Importing :mod:`espnet_asrser.tasks` registers this package's ASR components in ESPnet's
own ``ClassChoices`` (see :mod:`espnet_asrser.tasks.registry`); this top-level module stays
light so that e.g. :mod:`espnet_asrser.metrics` imports without torch.
"""

__version__ = "0.1.0"
