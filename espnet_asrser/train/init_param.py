"""``--init_param`` with counts: how many tensors of the model each file initialised.

``AbsTask.main_worker`` passes every ``--init_param FILE[:SRC_KEY[:DST_KEY[:EXCLUDES]]]``
to ESPnet's ``load_pretrained_model``, which leaves tensors at their random
initialisation without an error in two common cases:

* a ``SRC_KEY`` that no tensor of the file starts with (``model.pth:encoderr``): nothing is
  loaded, and nothing is said;
* ``--ignore_init_mismatch true``: every tensor whose name or shape differs is dropped with
  a warning of its own, so with a wrong prefix or another architecture, all of them are.

:func:`counted_init_param_loads` wraps ESPnet's function, unchanged, while
``main_worker`` runs. During each call, ``load_state_dict`` pre-hooks on the modules of the
model see the state dict that ESPnet loads: a tensor that came from the file has storage of
its own, a tensor ESPnet kept from the model's ``state_dict()`` shares the parameter's. The
counts of parameters and buffers are logged for every ``--init_param``, with the names of
the parameters left at their random initialisation; a file that sets no parameter at all
(a fixed buffer such as the mel matrix does not count) is an :class:`InitParamError`.

A checkpoint does not hold its token list, so one trained on a list of the same size in
another order loads without any shape error and maps every id to another word. ESPnet
writes ``config.yaml`` beside its checkpoints; when that file names a token list and the
``--init_param`` loads more than token-independent modules (the encoder, frontend, ...),
the list must equal the training's ``--token_list`` (:func:`check_token_list`).

An ``--init_param`` file must load with ``weights_only=True`` before ESPnet's loader, which
unpickles without that restriction, opens it
(:class:`espnet_asrser.utils.weights_file.UntrustedWeightsError` otherwise).
"""

import contextlib
import logging
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

import torch
import yaml

from espnet2.tasks import abs_task
from espnet_asrser.asr.pretrained import read_token_list, token_list_difference
from espnet_asrser.utils.weights_file import load_weights

logger = logging.getLogger(__name__)

_MAX_LISTED = 10


class InitParamError(RuntimeError):
    """An ``--init_param`` that initialised no parameter of the model."""


def _file_keys(init_param: str) -> List[str]:
    """A few tensor names of the file, for the error message; [] if it cannot be read."""
    try:
        state = load_weights(init_param.split(":", 1)[0], "--init_param")
    except Exception:  # the names are a hint only
        return []
    if isinstance(state, dict) and isinstance(state.get("module"), dict):
        state = state["module"]
    return list(state)[:3] if isinstance(state, dict) else []


def load_counted(
    load: Callable, init_param: str, model: torch.nn.Module, **kwargs
) -> Dict[str, List[str]]:
    """Call ``load(init_param=..., model=..., **kwargs)`` (ESPnet's loader) and count.

    Returns:
        ``{"loaded": [...], "kept": [...], "buffers": [...]}``: names (in the model) of the
        tensors that the file set and of those that kept their values; ``buffers`` names
        the non-parameter tensors among both (fixed tables such as a mel filterbank).

    Raises:
        InitParamError: the file set no parameter of its target (a buffer alone, such as
            the mel matrix that every model of a config shares, does not count).
    """
    names = {module: name for name, module in model.named_modules()}
    loaded: List[str] = []
    kept: List[str] = []
    buffers: List[str] = []

    def count(module, state_dict, prefix, *args) -> None:
        qualified = names.get(module, "")
        persistent = [
            (n, b)
            for n, b in module.named_buffers(recurse=False)
            if n not in getattr(module, "_non_persistent_buffers_set", ())
        ]
        for name, tensor in [*module.named_parameters(recurse=False), *persistent]:
            full = f"{qualified}.{name}" if qualified else name
            value = state_dict.get(prefix + name)
            from_file = (
                isinstance(value, torch.Tensor)
                and value.numel() > 0
                and value.data_ptr() != tensor.data_ptr()
            )
            (loaded if from_file else kept).append(full)
            if not isinstance(tensor, torch.nn.Parameter):
                buffers.append(full)

    handles = [m.register_load_state_dict_pre_hook(count) for m in names]
    try:
        load(init_param=init_param, model=model, **kwargs)
    finally:
        for handle in handles:
            handle.remove()

    is_buffer = set(buffers)
    n_params = sum(1 for name in loaded + kept if name not in is_buffer)
    loaded_params = [name for name in loaded if name not in is_buffer]
    kept_params = [name for name in kept if name not in is_buffer]
    summary = (
        f"loaded {len(loaded_params)} of {n_params} parameters and "
        f"{len(loaded) - len(loaded_params)} of {len(is_buffer)} buffers of the target"
    )
    if not (loaded_params if n_params else loaded):
        raise InitParamError(
            f"--init_param {init_param}: no parameter of the model was loaded from it "
            f"({summary}; {len(kept_params)} parameters would keep their random "
            f"initialisation). The file's tensors are named like {_file_keys(init_param)}, "
            f"the model's like {list(model.state_dict())[:3]}: give FILE:SRC_KEY:DST_KEY so "
            f"that SRC_KEY is a prefix of the file's names and DST_KEY a module of the "
            f"model; with --ignore_init_mismatch true, check that the shapes match"
        )
    logger.info(f"--init_param {init_param}: {summary}")
    if kept_params:
        shown = ", ".join(kept_params[:_MAX_LISTED])
        shown += " ..." if len(kept_params) > _MAX_LISTED else ""
        logger.warning(
            f"--init_param {init_param}: {len(kept_params)} of {n_params} parameters were "
            f"not in the file (or were skipped as mismatched) and keep their random "
            f"initialisation: {shown}"
        )
    return {"loaded": loaded, "kept": kept, "buffers": buffers}


# Modules whose tensors do not depend on the token list: loading only these from a model
# trained on other tokens is fine (e.g. ``model.pth:encoder:asr.encoder``).
_TOKEN_INDEPENDENT = ("frontend", "normalize", "preencoder", "encoder", "postencoder")


def _loads_token_tensors(init_param: str) -> bool:
    src_key = (init_param.split(":") + [""])[1]
    last = src_key.split(".")[-1] if src_key else ""
    return last not in _TOKEN_INDEPENDENT


def _config_token_list(config: Path) -> Optional[List[str]]:
    with open(config, encoding="utf-8") as f:
        token_list = (yaml.safe_load(f) or {}).get("token_list")
    if isinstance(token_list, str) and not Path(token_list).is_file():
        raise InitParamError(
            f"{config} names the token list {token_list}, which does not exist here (paths "
            "are read from the current directory); without it, the order of the tokens the "
            "checkpoint was trained on cannot be checked"
        )
    return None if token_list is None else read_token_list(token_list)


def check_token_list(
    init_param: str, token_list: Optional[Union[str, Sequence[str]]]
) -> None:
    """An :class:`InitParamError` naming both lists when the ``config.yaml`` beside the
    checkpoint has another token list than ``token_list`` (the training's), for an
    ``--init_param`` that loads token-dependent tensors (decoder, CTC, embeddings)."""
    config = Path(init_param.split(":", 1)[0]).parent / "config.yaml"
    if token_list is None or not _loads_token_tensors(init_param) or not config.is_file():
        return
    theirs = _config_token_list(config)
    if theirs is None:
        return
    name = token_list if isinstance(token_list, str) else "(a list)"
    difference = token_list_difference(
        read_token_list(token_list), f"this training's --token_list {name}",
        theirs, f"the token list of {config}, which trained the --init_param model",
    )
    if difference:
        raise InitParamError(
            f"--init_param {init_param}: {difference}. Token ids would mean other tokens: "
            "train with that model's token list, or load only token-independent modules "
            "(FILE:encoder:asr.encoder)"
        )


@contextlib.contextmanager
def counted_init_param_loads(
    token_list: Optional[Union[str, Sequence[str]]] = None,
) -> Iterator[None]:
    """While active, ``AbsTask.main_worker`` loads each ``--init_param`` through
    :func:`load_counted` around ESPnet's own ``load_pretrained_model``, after
    :func:`check_token_list` against ``token_list``."""
    espnet_load = abs_task.load_pretrained_model

    def load_pretrained_model(init_param, model, **kwargs):
        # ESPnet's loader unpickles with weights_only=False, which would run any code an
        # --init_param file (a user's download) carries: the file must first load as
        # weights only (UntrustedWeightsError says how to re-save one that does not).
        load_weights(init_param.split(":", 1)[0], "--init_param")
        check_token_list(init_param, token_list)
        return load_counted(espnet_load, init_param, model, **kwargs)

    abs_task.load_pretrained_model = load_pretrained_model
    try:
        yield
    finally:
        abs_task.load_pretrained_model = espnet_load
