"""Packing trained ASR-SER models as model-zoo archives, and opening them again.

An archive is what ``espnet2.bin.pack`` writes (``meta.yaml`` + files), so
``espnet_model_zoo.downloader.ModelDownloader().unpack_local_file("model.zip")`` accepts it
and returns::

    {"asrser_train_config": ".../config.yaml", "asrser_model_file": ".../model.pth",
     "decode_config": ".../decode.yaml"}          # the last if packed with one

which are exactly the keyword arguments of
:class:`espnet_asrser.bin.asrser_inference.Speech2Emotion`.

Our own unpacker (:func:`unpack_asrser_model`, behind ``Speech2Emotion.from_pretrained``)
extracts into ``cache_dir``, by default :func:`default_cache_dir`: ``$ESPNET_ASRSER_CACHE``,
else ``~/.cache/espnet_asrser``.

Files the training config points to (the normalisation statistics of both the SER and the
ASR part, a BPE model, a token-list file) are packed under ``files/`` and the packed config
refers to them by those names; opening the archive rewrites them to the extracted paths, as
ESPnet's unpacker does.

Archives come from elsewhere, so they are not handed to ESPnet's unpacker (which extracts
a tarball's ``../`` entries, absolute paths and links as they are):
:func:`espnet_asrser.utils.archive.extract_archive` checks every entry and the total size
first (limit: ``ESPNET_ASRSER_MAX_UNPACKED_BYTES``, 20 GiB by default), and the model files
are loaded with ``weights_only=True`` (:mod:`espnet_asrser.utils.weights_file`) before
anything builds on them.
"""

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple, Union

import yaml

from espnet2.main_funcs.pack_funcs import find_path_and_change_it_recursive, pack
from espnet_asrser.asr.config_keys import INFERENCE_FILE_KEYS
from espnet_asrser.utils.archive import Member, extract_archive, unsafe_name
from espnet_asrser.utils.weights_file import load_weights

PathLike = Union[str, Path]
CONFIG_KEY = "asrser_train_config"
MODEL_KEY = "asrser_model_file"
# The decoding settings the model was evaluated with (the recipe's conf/decode_asr.yaml):
# a ``yaml_files`` entry, so ESPnet's unpacker returns it too, and a keyword argument of
# Speech2Emotion, which uses its beam size and length limits unless told otherwise.
DECODE_KEY = "decode_config"
ASR_CONFIG_KEY = "asr_config"
PACKED_DIR = "files/"


class PackedModelError(RuntimeError):
    """A packed model that cannot be used, naming what is wrong with it."""


def _referenced_files(value, found: List[str]) -> None:
    """Collect the strings in a config that name existing files."""
    if isinstance(value, dict):
        for v in value.values():
            _referenced_files(v, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _referenced_files(v, found)
    elif isinstance(value, str) and ("/" in value or "." in value) and Path(value).is_file():
        found.append(value)


def _replace(value, old: str, new: str):
    if isinstance(value, dict):
        return {k: _replace(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, old, new) for v in value]
    return new if value == old else value


def pack_asrser_model(
    train_config: PathLike,
    model_file: PathLike,
    outpath: PathLike,
    extra_files: Iterable[PathLike] = (),
    decode_config: Optional[PathLike] = None,
) -> Path:
    """Write ``outpath`` (.zip or .tar.gz) holding the model, its config and every file
    the config refers to; with ``decode_config`` (a YAML mapping of decoding options such
    as ``conf/decode_asr.yaml``), that file too, as ``decode.yaml`` listed in
    ``meta.yaml`` under ``yaml_files: decode_config``."""
    train_config, model_file, outpath = Path(train_config), Path(model_file), Path(outpath)
    config = yaml.safe_load(train_config.read_text(encoding="utf-8"))
    yaml_files = {CONFIG_KEY: "config.yaml"}
    if decode_config is not None:
        decoding = yaml.safe_load(Path(decode_config).read_text(encoding="utf-8"))
        if not isinstance(decoding, dict):
            raise PackedModelError(
                f"{decode_config}: a decoding config is a YAML mapping of options "
                "(beam_size: 4, maxlenratio: -200, ...)"
            )
        yaml_files[DECODE_KEY] = "decode.yaml"
    # Only what inference needs: component configs (normalisation statistics, ...) and
    # tokenizer files, not the training data lists or shape files.
    referenced: List[str] = []
    for key, value in config.items():
        # ``asr_config`` is the whole ESPnet ASR config of a model started from
        # --pretrained_asr (see espnet_asrser.asr.pretrained): its stats_file and bpemodel
        # are needed to rebuild the ASR part, so every file it names travels too.
        if key.endswith("_conf") or key in INFERENCE_FILE_KEYS or key == ASR_CONFIG_KEY:
            _referenced_files(value, referenced)
    with tempfile.TemporaryDirectory() as staging:
        staging = Path(staging)
        members: List[Tuple[Path, str]] = []
        for i, path in enumerate(dict.fromkeys(referenced)):
            name = f"{PACKED_DIR}{i}_{Path(path).name}"
            members.append((Path(path), name))
            config = _replace(config, path, name)
        for path in extra_files:
            members.append((Path(path), f"{PACKED_DIR}{Path(path).name}"))
        for src, name in members:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, staging / name)
        (staging / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        if decode_config is not None:
            shutil.copyfile(decode_config, staging / yaml_files[DECODE_KEY])
        shutil.copyfile(model_file, staging / "model.pth")
        outpath = outpath.resolve()
        cwd = os.getcwd()
        try:
            os.chdir(staging)  # pack() names members by their path from the cwd
            pack(
                files={MODEL_KEY: "model.pth"},
                yaml_files=yaml_files,
                option=[name for _, name in members],
                outpath=outpath,
            )
        finally:
            os.chdir(cwd)
    return outpath


_CACHE_HINT = " (set the place with cache_dir= or $ESPNET_ASRSER_CACHE)"


def default_cache_dir() -> Path:
    """Where packed models are unpacked unless told otherwise: ``$ESPNET_ASRSER_CACHE``,
    else ``~/.cache/espnet_asrser``."""
    return Path(
        os.environ.get("ESPNET_ASRSER_CACHE", Path.home() / ".cache" / "espnet_asrser")
    )


def _check_members(files: Dict[str, str], where: Path) -> Dict[str, str]:
    for key in (CONFIG_KEY, MODEL_KEY):
        if key not in files:
            raise PackedModelError(f"{where}: meta.yaml lists no '{key}'; is this an ASR-SER model?")
        if not Path(files[key]).exists():
            raise PackedModelError(f"{where}: the archive has no '{key}' member ({files[key]})")
    config = yaml.safe_load(Path(files[CONFIG_KEY]).read_text(encoding="utf-8"))
    missing: List[str] = []

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and (
            value.startswith(PACKED_DIR) or f"/{PACKED_DIR}" in value
        ) and not Path(value).exists():
            # ESPnet's unpacker rewrites only the members it found; a missing one keeps
            # its archive-relative name.
            missing.append(value)

    walk(config)
    if missing:
        names = ", ".join(Path(m).name for m in missing)
        raise PackedModelError(f"{where}: members referenced by the config are missing: {names}")
    return files


def not_local_error(model: PathLike) -> FileNotFoundError:
    """The error for a model given by a name that is no local file or directory."""
    return FileNotFoundError(
        f"'{model}' is neither a local archive nor a directory. Model-zoo names are "
        "not downloaded here: fetch the archive (e.g. the model's .zip on the "
        "Hugging Face hub) on a machine with network access and pass its local path."
    )


def read_meta(directory: PathLike) -> Dict[str, str]:
    """``{key: path}`` of the members an unpacked archive's ``meta.yaml`` lists (config
    and model files), as paths under ``directory``."""
    path = Path(directory)
    meta = path / "meta.yaml"
    if not meta.exists():
        raise PackedModelError(f"{path}: not an unpacked model (no meta.yaml)")
    info = yaml.safe_load(meta.read_text(encoding="utf-8"))
    return {k: str(path / v) for k, v in {**info["yaml_files"], **info["files"]}.items()}


def _meta(members, outdir: Path, where: Path) -> Dict[str, Dict[str, str]]:
    # As ESPnet's unpacker: the first member named meta.yaml, wherever it lies; the
    # paths it lists are relative to the archive's root.
    for member in members:
        if Path(member.name).name == "meta.yaml" and not member.is_dir:
            meta = yaml.safe_load((outdir / member.name).read_text(encoding="utf-8"))
            if not isinstance(meta, dict) or not all(
                isinstance(meta.get(k), dict) for k in ("yaml_files", "files")
            ):
                raise PackedModelError(f"{where}: {member.name} lists no 'yaml_files' and 'files'")
            for key, name in {**meta["yaml_files"], **meta["files"]}.items():
                # These names are read and rewritten below: none may point outside.
                problem = unsafe_name(str(name))
                if problem:
                    raise PackedModelError(
                        f"{where}: {member.name} names '{name}' for '{key}', which {problem}; "
                        "the archive is damaged or malicious"
                    )
            return meta
    raise PackedModelError(f"{where}: not a packed model (no meta.yaml)")


def _install(path: Path, members, extracted: Path, outdir: Path) -> Dict[str, str]:
    """Make the unpacked copy ``extracted`` of ``path`` usable from ``outdir``: the packed
    configs' file names rewritten to absolute paths under ``outdir`` (ESPnet's own function,
    as its unpacker does), every model file checked to load with ``weights_only=True``,
    then ``extracted`` renamed to ``outdir``."""
    meta = _meta(members, extracted, path)
    names = [m.name for m in members]
    for name in meta["yaml_files"].values():
        config_file = extracted / name
        if not config_file.is_file():
            continue  # reported by the caller, which knows what the key means
        config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        for member in names:
            config = find_path_and_change_it_recursive(config, member, str(outdir / member))
        config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    for name in meta["files"].values():
        if (extracted / name).is_file():
            load_weights(extracted / name, f"{path}: the model file")
    shutil.rmtree(outdir, ignore_errors=True)
    try:
        os.replace(extracted, outdir)
    except OSError:
        # Another process unpacked the same model meanwhile: its copy is as good.
        if not outdir.is_dir():
            raise
    return {k: str(outdir / v) for k, v in {**meta["yaml_files"], **meta["files"]}.items()}


def _cache_dir_for(path: Path, cache_dir: Optional[PathLike]) -> Tuple[Path, Path]:
    """(cache, outdir): one directory per source path, so two models of one name do not
    mix; absolute, so the paths written into the configs survive a change of cwd."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    cache = Path(cache_dir or default_cache_dir()).absolute()
    cache.mkdir(parents=True, exist_ok=True)
    return cache, cache / f"{path.stem}-{digest}"


def unpack_archive(
    archive: PathLike, cache_dir: PathLike = None, max_bytes: int = None
) -> Dict[str, str]:
    """Extract ``archive`` (.zip, .tar.gz, ...) under ``cache_dir`` and return ``{key:
    path}`` of the members its ``meta.yaml`` lists.

    Every entry is checked before anything is written (no absolute paths, ``..``, links or
    device files) and the archive may not expand past ``max_bytes``
    (default: the environment variable ``ESPNET_ASRSER_MAX_UNPACKED_BYTES``, else 20 GiB);
    see :mod:`espnet_asrser.utils.archive`. The packed configs' file names are rewritten to
    the extracted paths with ESPnet's own function, as its unpacker does, and every model
    file must load with ``weights_only=True``. Errors are :class:`PackedModelError` naming
    the archive and the entry."""
    path = Path(archive)
    if not path.is_file():
        raise not_local_error(archive)
    cache, outdir = _cache_dir_for(path, cache_dir)
    # A fresh directory of ours (mode 0700), renamed into place once complete: nothing an
    # earlier extraction or another user left there is written through or trusted.
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=cache))
    try:
        try:
            members = extract_archive(path, staging / "x", max_bytes)
        except Exception as e:  # UnsafeArchiveError, zipfile/tarfile errors
            raise PackedModelError(f"{path}: cannot unpack: {e}") from e
        logging.info("unpacked %s into %s%s", path, outdir, _CACHE_HINT)
        return _install(path, members, staging / "x", outdir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def unpack_directory(directory: PathLike, cache_dir: PathLike = None) -> Dict[str, str]:
    """A model directory as a Hugging Face repository holds it (the members of a packed
    model, ``meta.yaml`` naming them by relative paths): copied under ``cache_dir`` and
    installed as :func:`unpack_archive` installs an archive. Links are refused, so nothing
    outside the directory is read."""
    path = Path(directory)
    members = []
    for item in sorted(path.rglob("*")):
        name = item.relative_to(path).as_posix()
        if name.split("/", 1)[0] in (".git", ".cache"):
            continue
        if item.is_symlink() or not (item.is_file() or item.is_dir()):
            raise PackedModelError(f"{path}: {name} is a link or a special file; refused")
        members.append(Member(name, item.is_dir(), item.stat().st_size if item.is_file() else 0))
    cache, outdir = _cache_dir_for(path, cache_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=cache))
    try:
        extracted = staging / "x"
        for member in members:
            target = extracted / member.name
            if member.is_dir:
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path / member.name, target)
        logging.info("copied %s into %s%s", path, outdir, _CACHE_HINT)
        return _install(path, members, extracted, outdir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def unpack_asrser_model(model: PathLike, cache_dir: PathLike = None) -> Dict[str, str]:
    """Return Speech2Emotion's keyword arguments for a packed model.

    ``model`` is a ``.zip``/``.tar.gz`` archive or a directory holding an unpacked one
    (with its ``meta.yaml``). Model-zoo names are not downloaded: this project never
    fetches weights at run time.
    """
    path = Path(model)
    if path.is_dir() and _refers_to_itself(path):
        # Unpacked already (our unpacker's output): its configs name its own files.
        files = _check_members(read_meta(path), path)
        load_weights(files[MODEL_KEY], f"{path}: the model file")
        return files
    if path.is_dir():
        # A Hugging Face-style directory (relative member names): installed like an archive.
        return _check_members(unpack_directory(path, cache_dir), path)
    return _check_members(unpack_archive(path, cache_dir), path)


def _refers_to_itself(directory: Path) -> bool:
    """Whether the configs of an unpacked model name its files by absolute paths inside it
    (our unpacker's output), rather than by the archive's relative member names."""
    try:
        files = read_meta(directory)
        config = Path(files[CONFIG_KEY]).read_text(encoding="utf-8")
    except (PackedModelError, KeyError, OSError):
        return True  # _check_members says what is wrong
    return f"{PACKED_DIR}" not in config or str(directory.absolute()) in config
