"""Loading a weights file that a user gave (``--init_param``, a packed model's ``.pth``).

A ``.pth`` is a pickle: ``torch.load(..., weights_only=False)`` runs whatever callable the
file names, so a downloaded checkpoint could run any code. Files from elsewhere are loaded
with ``weights_only=True`` (tensors, containers and numbers only). A file that needs more
is refused with :class:`UntrustedWeightsError`, which names the file, the Python object it
asks for, and the command that re-saves its tensors as a plain state dict. Only files this
run wrote itself (``checkpoint.pth`` of the experiment being resumed) are loaded otherwise.
"""

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Union

import torch

PathLike = Union[str, Path]


class UntrustedWeightsError(RuntimeError):
    """A weights file that holds more than tensors; loading it would run its code."""


def _refused_object(error: Exception) -> str:
    """What torch's weights-only error says the file asked for."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    return f"it needs {found.group(1)}" if found else "an object that is not a tensor"


def load_weights(path: PathLike, what: str = "weights file") -> Any:
    """``torch.load(path, weights_only=True)`` on CPU (memory-mapped when the file allows),
    with :class:`UntrustedWeightsError` for a file that holds other Python objects.

    ``what`` says where the file came from, for the message (``--init_param``)."""
    path = Path(path)
    try:
        # Memory-mapped, a check of a multi-GB model costs no copy; mmap needs the zip
        # format that torch.save has written since 1.6.
        return torch.load(path, map_location="cpu", weights_only=True,
                          mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise
        raise UntrustedWeightsError(
            f"{what} {path} holds Python objects besides tensors ({_refused_object(e)}): "
            "loading it would run code stored in the file, so it is refused. If you trust "
            "where the file came from, keep only its tensors and pass the new file:\n"
            f"  python -c \"import torch; s = torch.load('{path}', weights_only=False); "
            "torch.save({k: v for k, v in s.items() if isinstance(v, torch.Tensor)}, "
            f"'{path.with_suffix('')}.tensors.pth')\""
        ) from None
