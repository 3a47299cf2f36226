"""Command-line entry points (``python -m espnet_asrser.bin.<name>``).

Importing this package keeps ESPnet's start-up quiet without changing ESPnet; each fix is
scoped to the one cause, so that any other message still shows:

* ``import espnet2.tasks.asr`` imports ``g2p_en`` (for ESPnet's phoneme tokenizers), and
  ``g2p_en`` tries at import to download two NLTK resources: offline, 8 lines of
  ``[nltk_data] Error loading ...`` and a wait on the network for a tokenizer none of our
  models uses. A stand-in module takes ``g2p_en``'s place in ``sys.modules`` and imports
  the real one at its first use, when a ``g2p_en`` tokenizer is built, which then
  downloads as ESPnet intends. (``importlib.util.LazyLoader`` would not do: the
  ``import`` statement reads ``__spec__``, which makes it load at once.)
* ESPnet's trainer and ASR model call ``torch.cuda.amp.autocast(...)``, which torch
  deprecates with a FutureWarning on the first training and validation step. Only that
  message, and only where ESPnet's own modules issue it, is filtered; the same call in
  our code would still warn.
* ``espnet.nets.pytorch_backend.transformer.attention`` prints ``Failed to import Flash
  Attention...`` to stdout when imported without flash-attn, which becomes the first
  key of ``--print_config``'s YAML. Entry points whose stdout is data call
  :func:`flash_attention_notice_to_stderr` before importing ESPnet, so the line is still
  shown, on stderr. Only that module is imported with stdout redirected: ESPnet binds
  ``sys.stdout`` at import elsewhere (``AbsTask.print_config(file=sys.stdout)``), and a
  wider redirect would send the YAML itself to stderr. The import costs torch's
  start-up, so it is not done here, where ``asrser_score`` (no torch) would pay for it.

These run in every process that imports an entry point, including the workers that
ESPnet spawns for multi-GPU training (they re-import the main module).

:func:`run_task` is the ``main(cmd)`` of the training entry points: ESPnet's
``--print_config`` reads ``sys.argv`` rather than ``cmd`` and writes to the ``sys.stdout``
of the time ESPnet was imported, so ``main(["--print_config", ...])`` called from Python
would print another config, somewhere else.
"""

import contextlib
import importlib
import importlib.util
import sys
import types
import warnings
from typing import Optional, Sequence


class _ImportOnUse(types.ModuleType):
    """Stands in ``sys.modules`` for a module until one of its own attributes is read.

    The import system, ``inspect`` and the like read only dunder attributes, which are
    set here from the module's spec, so they do not trigger the import."""

    def __init__(self, spec):
        super().__init__(spec.name)
        self.__spec__ = spec
        self.__loader__ = spec.loader
        self.__file__ = spec.origin
        if spec.submodule_search_locations is not None:
            self.__path__ = spec.submodule_search_locations

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)
        return getattr(real, attr)


def _defer_g2p_en() -> None:
    if "g2p_en" in sys.modules:
        return
    spec = importlib.util.find_spec("g2p_en")
    if spec is None:
        return  # not installed: ESPnet's own import error applies
    sys.modules["g2p_en"] = _ImportOnUse(spec)


def flash_attention_notice_to_stderr() -> None:
    """Import ESPnet's attention module, sending the notice it prints to stderr."""
    import torch  # noqa: F401  (its import must not see the redirected stdout)

    with contextlib.redirect_stdout(sys.stderr):
        importlib.import_module("espnet.nets.pytorch_backend.transformer.attention")


def run_task(task, cmd: Optional[Sequence[str]] = None) -> None:
    """``task.main(cmd=cmd)``, with ``--print_config`` printing the config of ``cmd`` to the
    current stdout; like ESPnet, it then exits with status 0."""
    if cmd is None or "--print_config" not in cmd:
        task.main(cmd=cmd)
        return
    task.get_parser().parse_args(cmd)  # an invalid option stops here, as in main()
    argv = sys.argv
    sys.argv = [argv[0], *cmd]
    try:
        task.print_config(file=sys.stdout)
    finally:
        sys.argv = argv
    sys.exit(0)


_defer_g2p_en()
warnings.filterwarnings(
    "ignore",
    message=r"`torch\.cuda\.amp\.\w+\(args\.\.\.\)` is deprecated",
    category=FutureWarning,
    module=r"espnet2\.",
)
