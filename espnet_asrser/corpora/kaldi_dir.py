"""Kaldi-style data directories: validation, writing and subsets.

A data directory holds one table per file, one ``<key> <value>`` line per utterance
(``wav.scp``, ``text``, ``utt2spk``, ``emotion``, ``utt2dur``, ...) plus ``spk2utt``,
which is keyed by speaker and lists that speaker's utterances. Each table is read and
written by :mod:`espnet_asrser.utils.kaldi_table` with its strict settings (sorted in
C-locale byte order, final newline, no control characters); this module adds what
concerns a directory as a whole, so that an utterance missing from one table is an error
at preparation time rather than a KeyError in a data loader or a silently smaller
training set:

* values are non-empty, except in transcript tables (``text``, ``text.orig``) where an
  utterance may have an empty transcript (one that was only ``[LAUGHTER]``);
* every utterance table holds exactly the ids of ``utt2spk``, and ``spk2utt`` is its
  inverse;
* durations and sample counts are positive numbers, speaker ids have no white space.

Kaldi also asks that speaker ids prefix utterance ids, so that sorting by speaker and by
utterance agree. Nothing in this project sorts by speaker, and IEMOCAP's own ids
(``Ses01F_impro01_M003`` spoken by ``Ses01_M``) do not follow that rule, so it is not
enforced: renaming the corpus' utterances would make every result harder to trace back.
"""

import math
import os
import shutil
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

from espnet_asrser.utils.kaldi_table import (
    KaldiTableError,
    TableLine,
    read_table,
    read_table_lines,
    sort_key,
    write_table,
)

__all__ = [
    "DIR_FILES",
    "UTTERANCE_TABLES",
    "EMPTY_VALUE_TABLES",
    "utt2spk_to_spk2utt",
    "write_data_dir",
    "validate_data_dir",
    "subset_data_dir",
]

PathLike = Union[str, Path]

#: Files that describe a data directory rather than its utterances, carried unchanged into
#: its subsets and dumps: ``classes``, the label set in model output order.
DIR_FILES = ("classes",)

#: Tables keyed by utterance id that this project reads or writes.
UTTERANCE_TABLES = (
    "wav.scp",
    "text",
    "text.orig",
    "utt2spk",
    "emotion",
    "utt2dur",
    "utt2num_samples",
    "utt2session",
    "utt2category",
)
#: Tables in which an utterance may have an empty value (an empty transcript).
EMPTY_VALUE_TABLES = frozenset({"text", "text.orig"})
_NUMERIC_TABLES = frozenset({"utt2dur", "utt2num_samples"})
#: How many offending ids an error message lists before it only gives the count.
_MAX_LISTED = 10


def _list_ids(ids: Iterable[str]) -> str:
    ordered = sorted(ids, key=sort_key)
    shown = " ".join(ordered[:_MAX_LISTED])
    more = f" ... ({len(ordered)} in total)" if len(ordered) > _MAX_LISTED else ""
    return f"{shown}{more}"


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> Dict[str, str]:
    """Invert ``{utt: spk}`` into ``{spk: "utt1 utt2 ..."}``, utterances sorted."""
    spk2utts: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk, key=sort_key):
        spk2utts.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in spk2utts.items()}


def write_data_dir(
    path: PathLike,
    tables: Mapping[str, Mapping[str, str]],
    dir_files: Optional[Mapping[str, str]] = None,
) -> List[str]:
    """Write a data directory from ``{file name: {utt: value}}`` (and the contents of its
    :data:`DIR_FILES`, ``{file name: text}``) and validate it.

    ``spk2utt`` is derived from ``utt2spk`` and must not be given. Every table must
    have exactly the keys of ``utt2spk``. The directory is built under a temporary name
    and renamed into place, replacing any previous directory of that name, so a reader
    never sees a half-written one.

    Args:
        path: the directory to create.
        tables: at least ``wav.scp`` and ``utt2spk``; values are strings.

    Returns:
        The utterance ids, in C-locale byte order.

    Raises:
        KaldiTableError: a table is missing or has other keys than ``utt2spk``, or any
            entry breaks the conventions of :func:`write_table`.
    """
    path = Path(path)
    for required in ("wav.scp", "utt2spk"):
        if required not in tables:
            raise KaldiTableError(
                path, None, f"cannot write a data directory without {required}"
            )
    if "spk2utt" in tables:
        raise KaldiTableError(path, None, "spk2utt is derived from utt2spk; do not pass it")
    utts = set(tables["utt2spk"])
    if not utts:
        raise KaldiTableError(
            path, None, "refusing to write a data directory with no utterances"
        )
    for name, table in tables.items():
        _check_same_keys(path / "utt2spk", utts, path / name, set(table))

    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        for name, table in tables.items():
            write_table(tmp / name, table, allow_empty_value=name in EMPTY_VALUE_TABLES)
        write_table(tmp / "spk2utt", utt2spk_to_spk2utt(tables["utt2spk"]))
        for name, text in (dir_files or {}).items():
            if name not in DIR_FILES:
                raise KaldiTableError(path, None, f"{name} is not one of {', '.join(DIR_FILES)}")
            (tmp / name).write_text(text, encoding="utf-8")
        validate_data_dir(tmp, required=tuple(tables) + ("spk2utt",))
    except BaseException:
        shutil.rmtree(tmp)
        raise
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return sorted(utts, key=sort_key)


def _check_same_keys(ref_path: Path, ref: set, path: Path, keys: set) -> None:
    missing = ref - keys
    extra = keys - ref
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} ids of {ref_path.name} are missing: {_list_ids(missing)}"
        )
    if extra:
        problems.append(f"{len(extra)} ids are not in {ref_path.name}: {_list_ids(extra)}")
    if problems:
        raise KaldiTableError(path, None, "; ".join(problems))


def _check_value(path: Path, line: TableLine) -> None:
    name = path.name
    if name in _NUMERIC_TABLES:
        try:
            number = float(line.value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise KaldiTableError(
                path,
                line.lineno,
                f"{line.key}: expected a positive number, got {line.value!r}",
            )
    elif name == "utt2spk" and len(line.value.split()) != 1:
        raise KaldiTableError(
            path, line.lineno, f"{line.key}: speaker id {line.value!r} has white space"
        )


def validate_data_dir(
    path: PathLike,
    required: Sequence[str] = ("wav.scp", "utt2spk", "spk2utt"),
    optional: Sequence[str] = UTTERANCE_TABLES,
) -> List[str]:
    """Check a data directory's tables one by one and against each other.

    Every table that is required or optional-and-present is read with the strict
    settings of :func:`~espnet_asrser.utils.kaldi_table.read_table_lines`; utterance
    tables must all hold the same ids as ``utt2spk``; ``spk2utt`` must be exactly the
    inverse of ``utt2spk`` (each utterance listed once, under its own speaker).

    Args:
        path: the data directory.
        required: tables that must exist (``utt2spk`` and ``spk2utt`` are always
            checked when present).
        optional: tables that are checked when present.

    Returns:
        The utterance ids, in C-locale byte order.

    Raises:
        KaldiTableError: naming the file and, where one is at fault, the line.
    """
    path = Path(path)
    if not path.is_dir():
        raise KaldiTableError(path, None, "not a directory")
    for name in required:
        if not (path / name).is_file():
            raise KaldiTableError(path, None, f"required file {name} is missing")
    if not (path / "utt2spk").is_file():
        raise KaldiTableError(path, None, "utt2spk is missing; it defines the utterance ids")

    names = [n for n in dict.fromkeys([*required, *optional]) if (path / n).is_file()]
    tables: Dict[str, Dict[str, str]] = {}
    for name in names:
        if name == "spk2utt":
            continue
        table: Dict[str, str] = {}
        lines = read_table_lines(path / name, allow_empty_value=name in EMPTY_VALUE_TABLES)
        for line in lines:
            _check_value(path / name, line)
            table[line.key] = line.value
        tables[name] = table

    utt2spk = tables["utt2spk"]
    if not utt2spk:
        raise KaldiTableError(path / "utt2spk", None, "no utterances")
    utts = set(utt2spk)
    for name, table in tables.items():
        _check_same_keys(path / "utt2spk", utts, path / name, set(table))

    if (path / "spk2utt").is_file():
        _check_spk2utt(path / "spk2utt", utt2spk)
    return sorted(utts, key=sort_key)


def _check_spk2utt(path: Path, utt2spk: Mapping[str, str]) -> None:
    listed: Dict[str, int] = {}
    for line in read_table_lines(path):
        for utt in line.value.split():
            if utt in listed:
                raise KaldiTableError(
                    path,
                    line.lineno,
                    f"utterance {utt} is listed again (first at line {listed[utt]})",
                )
            listed[utt] = line.lineno
            speaker = utt2spk.get(utt)
            if speaker is None:
                raise KaldiTableError(
                    path,
                    line.lineno,
                    f"utterance {utt} of speaker {line.key} is not in utt2spk",
                )
            if speaker != line.key:
                raise KaldiTableError(
                    path,
                    line.lineno,
                    f"utterance {utt} is listed under speaker {line.key} but utt2spk "
                    f"says {speaker}",
                )
    unlisted = set(utt2spk) - set(listed)
    if unlisted:
        raise KaldiTableError(
            path,
            None,
            f"{len(unlisted)} utterances of utt2spk are not listed: {_list_ids(unlisted)}",
        )


def subset_data_dir(src: PathLike, dst: PathLike, utt_ids: Iterable[str]) -> List[str]:
    """Write ``dst`` holding only ``utt_ids`` of the data directory ``src``.

    Every utterance table of ``src`` is filtered and ``spk2utt`` is rebuilt. A file
    this module does not know how to filter is an error rather than being left out of
    ``dst`` unnoticed; hidden files (``.done`` markers) are not copied.

    Returns:
        The utterance ids of ``dst``, in C-locale byte order.

    Raises:
        KaldiTableError: ``src`` is invalid, an id is not in ``src``, ``utt_ids`` is
            empty, or ``src`` holds an unknown file.
    """
    src, dst = Path(src), Path(dst)
    validate_data_dir(src)
    wanted = set(utt_ids)
    if not wanted:
        raise KaldiTableError(src, None, f"empty utterance list for the subset {dst}")
    unknown_files = sorted(
        p.name
        for p in src.iterdir()
        if not p.name.startswith(".")
        and p.name not in ("spk2utt", *UTTERANCE_TABLES, *DIR_FILES)
    )
    if unknown_files:
        raise KaldiTableError(
            src,
            None,
            f"cannot subset unknown file(s) {', '.join(unknown_files)}; only utterance "
            f"tables ({', '.join(UTTERANCE_TABLES)}) and spk2utt are supported",
        )
    tables = {}
    for name in UTTERANCE_TABLES:
        if (src / name).is_file():
            table = read_table(src / name, allow_empty_value=name in EMPTY_VALUE_TABLES)
            tables[name] = table
    absent = wanted - set(tables["utt2spk"])
    if absent:
        raise KaldiTableError(
            src,
            None,
            f"{len(absent)} requested utterances are not in utt2spk: {_list_ids(absent)}",
        )
    return write_data_dir(
        dst,
        {name: {u: v for u, v in t.items() if u in wanted} for name, t in tables.items()},
        {n: (src / n).read_text(encoding="utf-8") for n in DIR_FILES if (src / n).is_file()},
    )
