"""Registers this package's ASR components in ESPnet's own ASR ``ClassChoices``.

After :func:`register_asr_components`, ESPnet's unmodified ``ASRTask`` (and so
``espnet2.bin.asr_train``'s options, ``ASRTask.build_model`` and ``Speech2Text``) accepts

* ``frontend: logmel``    -> :class:`espnet_asrser.asr.frontend.LogMelFrontend`
* ``preencoder: stack``   -> :class:`espnet_asrser.asr.stack.StackPreEncoder`
* ``encoder: blstm``      -> :class:`espnet_asrser.asr.blstm_encoder.BLSTMEncoder`
* ``decoder: a2w``        -> :class:`espnet_asrser.asr.a2w_decoder.A2WDecoder`

This adds entries to ESPnet's registries and changes none of its behaviour. It runs when
:mod:`espnet_asrser.tasks` is imported; our CLIs import it, so a model trained with them
decodes with ESPnet's own ``Speech2Text`` in any process that has imported it too.
"""

from espnet2.tasks import asr as espnet_asr_task

from espnet_asrser.asr.a2w_decoder import A2WDecoder
from espnet_asrser.asr.blstm_encoder import BLSTMEncoder
from espnet_asrser.asr.frontend import LogMelFrontend
from espnet_asrser.asr.stack import StackPreEncoder

ASR_COMPONENTS = {
    espnet_asr_task.frontend_choices: {"logmel": LogMelFrontend},
    espnet_asr_task.preencoder_choices: {"stack": StackPreEncoder},
    espnet_asr_task.encoder_choices: {"blstm": BLSTMEncoder},
    espnet_asr_task.decoder_choices: {"a2w": A2WDecoder},
}


def register_asr_components() -> None:
    """Idempotently add our components to ESPnet's ASR choices."""
    for choices, classes in ASR_COMPONENTS.items():
        for name, cls in classes.items():
            registered = choices.classes.setdefault(name, cls)
            if registered is not cls:
                raise RuntimeError(
                    f"ESPnet already defines {choices.name} '{name}' as {registered}; "
                    f"espnet_asrser cannot register {cls} under that name"
                )
