"""Starting ASR-SER from a trained ESPnet ASR model (``asrser_train --pretrained_asr``).

``--pretrained_asr`` takes one of

* ``X.zip`` / ``X.tar.gz``: an archive written by ``python -m espnet2.bin.pack asr
  --asr_train_config C --asr_model_file M --option ...`` (what the ESPnet model zoo serves);
* ``DIR``: such an archive unpacked (the directory holding its ``meta.yaml``);
* ``CONFIG,MODEL``: an ESPnet ASR training ``config.yaml`` and a model file, e.g.
  ``exp/asr_train/config.yaml,exp/asr_train/valid.acc.ave.pth``. Relative paths inside the
  config (normalisation statistics, BPE model) are read from the current directory, as in
  the recipe that trained it.

The ASR part is built from the archive's own config (frontend, normalisation statistics,
specaug, encoder, decoder, ``model_conf``, token list) with ESPnet's
``ASRTask.build_model``, and the archive's weights are loaded strictly, with the numbers of
loaded and skipped tensors logged. The model-building part of that config is kept as
``asr_config`` in the ASR-SER config.yaml, with absolute paths, so that
``ASRSERTask.build_model_from_file`` rebuilds the same ASR part without the archive (the
weights are then those of the ASR-SER checkpoint) and ``pack_asrser_model`` packs the files
it names. The ``text`` data are then tokenised with the archive's tokenizer
(``token_list``, ``token_type``, ``bpemodel``, ...).

Model-zoo names are not downloaded: a name that is no local path is an error saying how
to pass the archive instead.
"""

import argparse
import copy
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import humanfriendly
import torch
import yaml

from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.tasks.asr import ASRTask, frontend_choices
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet_asrser.asr.config_keys import BUILD_KEYS, FILE_KEYS, TOKENIZER_KEYS
from espnet_asrser.asr.decoder_states import check_decoder_has_states
from espnet_asrser.model_zoo import (
    PackedModelError,
    not_local_error,
    read_meta,
    unpack_archive,
)
from espnet_asrser.tasks.registry import register_asr_components

# Our own components (a2w, blstm, ...) may appear in the archive's config.
register_asr_components()

ARCHIVE_CONFIG_KEY = "asr_train_config"
ARCHIVE_MODEL_KEY = "asr_model_file"


@dataclass
class PretrainedASR:
    """A resolved ``--pretrained_asr``: the archive's ASR config and its weights."""

    source: str  # what the user passed
    config: Dict[str, Any]  # model-building part of the ASR config, absolute file paths
    model_file: Path
    config_file: Optional[Path] = None  # the ASR config as found (unpacked) on disk


def _looks_like_path(value: Any) -> bool:
    return isinstance(value, str) and ("/" in value or "." in value)


def _absolutise(value: Any, bases: Sequence[Path]) -> Any:
    """Rewrite relative paths of existing files to absolute ones, trying ``bases`` in
    order, so that the stored config does not depend on the working directory."""
    if isinstance(value, dict):
        return {k: _absolutise(v, bases) for k, v in value.items()}
    if isinstance(value, list):
        return [_absolutise(v, bases) for v in value]
    if _looks_like_path(value) and not Path(value).is_absolute():
        for base in bases:
            if (base / value).is_file():
                return str((base / value).absolute())
    return value


def _missing_files(value: Any, where: str = "") -> List[str]:
    """``key=path`` for every file-valued option (``FILE_KEYS``) whose file is missing."""
    missing: List[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            name = f"{where}.{k}" if where else str(k)
            if k in FILE_KEYS and isinstance(v, str) and not Path(v).is_file():
                missing.append(f"{name}={v}")
            else:
                missing.extend(_missing_files(v, name))
    return missing


def read_token_list(token_list: Union[str, Path, Sequence[str]]) -> List[str]:
    """A token list given as a file (one token per line) or as a list."""
    if isinstance(token_list, (str, Path)):
        with open(token_list, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f]
    return list(token_list)


def token_list_digest(tokens: Sequence[str]) -> str:
    """SHA-256 of a token list: equal lists, and only those, have equal digests (order
    matters: a list of the same size in another order maps ids to other tokens)."""
    return hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()


def token_list_difference(
    ours: Sequence[str], ours_name: str, theirs: Sequence[str], theirs_name: str
) -> Optional[str]:
    """None if the two token lists are equal, else a sentence naming both (sizes, SHA-256
    digests and the first id where they differ)."""
    ours_digest, theirs_digest = token_list_digest(ours), token_list_digest(theirs)
    if ours_digest == theirs_digest:
        return None
    first = next(
        (i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs))
    )
    ours_at = ours[first] if first < len(ours) else "(end)"
    theirs_at = theirs[first] if first < len(theirs) else "(end)"
    return (
        f"{ours_name} ({len(ours)} tokens, sha256 {ours_digest[:12]}) is not {theirs_name} "
        f"({len(theirs)} tokens, sha256 {theirs_digest[:12]}); they first differ at id "
        f"{first}: '{ours_at}' vs '{theirs_at}'"
    )


def asr_build_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The part of an ESPnet ASR training config that builds the model and tokenises text
    (component choices and their ``*_conf``, token list, tokenizer options); training
    data, shape files and optimiser settings are left out, so that packing never drags
    the ASR's training data along."""
    keys = {"model"}
    for choices in ASRTask.class_choices_list:
        keys.update((choices.name, f"{choices.name}_conf"))
    keys.update(BUILD_KEYS)
    keys.update(TOKENIZER_KEYS)
    kept = {k: copy.deepcopy(v) for k, v in config.items() if k in keys}
    kept["init"] = None  # the weights come from a checkpoint, never from an initialiser
    return kept


def _archive_files(spec: str) -> Tuple[Path, Path, List[Path]]:
    """(config, model file, directories to resolve the config's relative paths against)
    for each accepted form of ``--pretrained_asr``."""
    if "," in spec:
        config, _, model = (s.strip() for s in spec.partition(","))
        for label, path in (("config", config), ("model file", model)):
            if not Path(path).is_file():
                raise FileNotFoundError(
                    f"--pretrained_asr {spec}: the {label} '{path}' does not exist "
                    "(expected CONFIG,MODEL: an ESPnet ASR config.yaml and its .pth)"
                )
        return Path(config), Path(model), [Path.cwd()]
    path = Path(spec)
    if path.is_dir():
        files = read_meta(path)
        # A directory unpacked by hand keeps the archive-relative names in its config;
        # one unpacked by ESPnet has them rewritten to absolute paths already.
        bases = [path, Path.cwd()]
    elif path.is_file():
        files = unpack_archive(path)
        bases = [Path.cwd()]
    else:
        error = not_local_error(spec)
        raise FileNotFoundError(
            f"--pretrained_asr: {error} Accepted: an archive of `python -m espnet2.bin.pack "
            "asr` (.zip/.tar.gz), its unpacked directory, or CONFIG,MODEL."
        )
    for key in (ARCHIVE_CONFIG_KEY, ARCHIVE_MODEL_KEY):
        if key not in files:
            raise PackedModelError(
                f"--pretrained_asr {spec}: meta.yaml lists no '{key}' (it lists "
                f"{sorted(files)}); expected an ESPnet ASR archive made by "
                "`python -m espnet2.bin.pack asr`"
            )
    return Path(files[ARCHIVE_CONFIG_KEY]), Path(files[ARCHIVE_MODEL_KEY]), bases


def resolve_pretrained_asr(spec: str) -> PretrainedASR:
    """Find the ASR config and weights that ``--pretrained_asr spec`` names (unpacking an
    archive under :func:`espnet_asrser.model_zoo.default_cache_dir`)."""
    config_file, model_file, bases = _archive_files(spec)
    with open(config_file, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict) or "decoder" not in raw:
        raise ValueError(
            f"--pretrained_asr {spec}: {config_file} is not an ESPnet ASR training config "
            "(no 'decoder' option)"
        )
    config = asr_build_config(raw)
    # Tokens are no paths, whatever they look like: keep them out of the path rewriting.
    token_list = config.pop("token_list", None)
    if token_list is None:
        raise ValueError(f"--pretrained_asr {spec}: {config_file} has no token_list")
    config = _absolutise(config, bases)
    # A token list given as a file is read now: the stored config stays self-contained.
    if isinstance(token_list, str):
        token_list = _absolutise(token_list, bases)
    config["token_list"] = read_token_list(token_list)
    missing = _missing_files(config)
    if missing:
        raise FileNotFoundError(
            f"--pretrained_asr {spec}: files named by {config_file} are missing: "
            f"{', '.join(missing)} (relative paths are read from the current directory; "
            "pack them with the model, e.g. `espnet2.bin.pack asr --option FILE`)"
        )
    return PretrainedASR(
        source=spec, config=config, model_file=model_file, config_file=config_file
    )


def build_asr_from_config(
    asr_config: Dict[str, Any], source: str, model_conf: Optional[Dict[str, Any]] = None
) -> ESPnetASRModel:
    """Build the ASR part (random weights) exactly as ESPnet's ``ASRTask`` would from
    ``asr_config``, with ``model_conf`` updating its ``model_conf`` (the ASR-SER config's
    ``asr_model_conf``: e.g. label smoothing for fine-tuning), and check that its decoder
    can provide ASR features."""
    config = copy.deepcopy(asr_config)
    # Hand-written or older configs may omit options that ESPnet's parser would have
    # filled in; give them the parser's defaults.
    for choices in ASRTask.class_choices_list:
        config.setdefault(choices.name, choices.default)
        config.setdefault(f"{choices.name}_conf", {})
    for key in ("ctc_conf", "joint_net_conf", "model_conf"):
        config.setdefault(key, {})
    config["model_conf"] = {**config["model_conf"], **(model_conf or {})}
    config.setdefault("input_size", None)
    config["init"] = None
    asr = ASRTask.build_model(argparse.Namespace(**config))
    if not isinstance(asr, ESPnetASRModel):
        raise TypeError(
            f"pretrained ASR {source}: model '{config['model']}' builds a "
            f"{type(asr).__name__}; the ASR part of ASR-SER must be an ESPnetASRModel "
            "(model: espnet)"
        )
    if asr.decoder is None:
        raise TypeError(
            f"pretrained ASR {source} has no attention decoder (decoder: null, e.g. a "
            "CTC-only model); ASR-SER reads its features from the decoder states"
        )
    try:
        check_decoder_has_states(asr.decoder)
    except TypeError as e:
        raise TypeError(
            f"pretrained ASR {source}: its decoder '{config['decoder']}' "
            f"({type(asr.decoder).__name__}) cannot feed ASR-SER. {e}"
        ) from None
    return asr


def load_pretrained_weights(asr: torch.nn.Module, model_file: Path, source: str) -> None:
    """Load ``model_file`` into ``asr`` strictly, logging how many tensors loaded.

    Every tensor of ``asr`` must come from the checkpoint: a wrong key prefix or a size
    mismatch would otherwise leave parts of the ASR randomly initialised without notice
    (ESPnet's ``--ignore_init_mismatch`` only warns). The one exception is the CTC branch
    of a checkpoint when ``asr_model_conf`` sets ``ctc_weight: 0``, which builds none: its
    tensors are then left out, and the log says so.
    """
    state = torch.load(model_file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("module"), dict):
        state = state["module"]  # a DeepSpeed checkpoint, as ESPnet accepts too
    if getattr(asr, "ctc", True) is None:
        unused = [k for k in state if k.startswith("ctc.")]
        if unused:
            logging.info(
                f"pretrained ASR {source}: its CTC branch ({len(unused)} tensors) is not "
                "used: ctc_weight is 0 (asr_model_conf), so the ASR part has none"
            )
            state = {k: v for k, v in state.items() if not k.startswith("ctc.")}
    own = asr.state_dict()
    loaded = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    missing = [k for k in own if k not in state]
    logging.info(
        f"pretrained ASR {source}: loaded {len(loaded)} of {len(own)} tensors from "
        f"{model_file}; skipped {len(unexpected)} unknown and {len(mismatched)} "
        f"mismatched; {len(missing)} tensors of the model not in the checkpoint"
    )
    if not loaded:
        raise RuntimeError(
            f"pretrained ASR {source}: no tensor of {model_file} matches the ASR built "
            f"from its config (checkpoint keys look like {list(state)[:3]}, the model's "
            f"like {list(own)[:3]}); a wrong file or a wrong key prefix?"
        )
    if unexpected or mismatched or missing:
        details = "; ".join(
            f"{label} ({len(keys)}): {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
            for label, keys in (
                ("mismatched", mismatched),
                ("not in the model", unexpected),
                ("not in the checkpoint", missing),
            )
            if keys
        )
        raise RuntimeError(
            f"pretrained ASR {source}: {model_file} does not match the ASR built from its "
            f"config: {len(loaded)} of {len(own)} tensors would load, {details}"
        )
    asr.load_state_dict(state, strict=True)


def adopt_tokenizer(args: argparse.Namespace, asr_config: Dict[str, Any], source: str) -> None:
    """Make the task tokenise ``text`` as the pretrained ASR does: set ``args.token_list``
    (and token_type, bpemodel, ...) from ``asr_config``.

    A different ``--token_list`` given by the user is an error naming both lists: ids
    would silently mean other tokens (a list of the same size in another order loads
    without any shape error, hence the digest comparison).
    """
    asr_tokens = read_token_list(asr_config["token_list"])
    if args.token_list is not None:
        name = args.token_list if isinstance(args.token_list, (str, Path)) else "(a list)"
        difference = token_list_difference(
            read_token_list(args.token_list), f"--token_list {name}",
            asr_tokens, f"the token list of the pretrained ASR {source}",
        )
        if difference:
            raise ValueError(
                f"{difference}. Leave --token_list out: the pretrained ASR's own token list "
                "and tokenizer are used."
            )
    args.token_list = asr_tokens
    for key in TOKENIZER_KEYS:
        if key not in asr_config:
            continue
        value = asr_config[key]
        if getattr(args, key, None) not in (None, value):
            logging.warning(
                f"--{key} {getattr(args, key)} replaced by the pretrained ASR's {value!r}: "
                f"the text is tokenised as {source} was trained"
            )
        setattr(args, key, value)


def frontend_rate(name: Optional[str], conf: Optional[Dict[str, Any]]) -> Optional[int]:
    """Sampling rate (Hz) a frontend is configured for, or None when it has no ``fs``."""
    if name is None:
        return None
    fs = dict(conf or {}).get("fs", get_default_kwargs(frontend_choices.get_class(name)).get("fs"))
    if isinstance(fs, str):
        fs = humanfriendly.parse_size(fs)
    return int(fs) if fs is not None else None


def check_input_matches(args: argparse.Namespace, asr_config: Dict[str, Any], source: str) -> None:
    """The acoustic SER branch and the pretrained ASR read the same ``speech`` data: they
    must agree on waveform vs features, the feature dimension and the sampling rate."""
    ser_in, asr_in = args.input_size, asr_config.get("input_size")
    ser_rate = frontend_rate(args.frontend, args.frontend_conf) if ser_in is None else None
    asr_rate = (
        frontend_rate(asr_config.get("frontend"), asr_config.get("frontend_conf"))
        if asr_in is None
        else None
    )

    def describe(input_size: Optional[int], frontend: Optional[str], rate: Optional[int]) -> str:
        if input_size is not None:
            return f"{input_size}-dim features (input_size: {input_size})"
        return f"waveforms at {rate or 'any'} Hz (frontend: {frontend})"

    if (ser_in != asr_in) or (ser_rate and asr_rate and ser_rate != asr_rate):
        raise ValueError(
            f"the acoustic SER branch reads {describe(ser_in, args.frontend, ser_rate)} "
            f"but the pretrained ASR {source} reads "
            f"{describe(asr_in, asr_config.get('frontend'), asr_rate)}; both take the same "
            "'speech' data: set --input_size/--frontend_conf to match the pretrained ASR"
        )
