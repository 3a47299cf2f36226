"""Kaldi-style data directories: strict reading, sorted writing, validation, subsets.

A data directory holds one table per file, one ``<key> <value>`` line per utterance
(``wav.scp``, ``text``, ``utt2spk``, ``emotion``, ``utt2dur``, ...) plus ``spk2utt``,
which is keyed by speaker and lists that speaker's utterances. ESPnet reads these files
with a plain ``split(maxsplit=1)``, so a stray ``\\r``, an unsorted file or an utterance
missing from one table does not fail there: it shows up much later as a KeyError in a
data loader or, worse, as a silently smaller training set. This module makes every such
defect an error at preparation time, naming the file and the line.

Conventions (the ones Kaldi's tools assume; written here in our own code):

* UTF-8 without byte-order mark, ``\\n`` line ends, a final newline, no empty lines;
* a key, then spaces (or tabs, as Kaldi allows; our writer uses one space), then the
  value; no control character inside a key or value;
* keys are unique and increasing in C-locale byte order, i.e. sorted by their UTF-8
  bytes, which is what ``LC_ALL=C sort`` produces;
* values are non-empty, except in transcript tables (``text``, ``text.orig``) where an
  utterance may have an empty transcript (one that was only ``[LAUGHTER]``); such a line
  is written as the bare key.

Kaldi also asks that speaker ids prefix utterance ids, so that sorting by speaker and by
utterance agree. Nothing in this project sorts by speaker, and IEMOCAP's own ids
(``Ses01F_impro01_M003`` spoken by ``Ses01_M``) do not follow that rule, so it is not
enforced: renaming the corpus' utterances would make every result harder to trace back.

Lines are parsed by the project's one strict reader,
:func:`espnet_asrser.utils.kaldi_text.read_kaldi_text`; :func:`iter_table` adds the
data-directory rules (sort order, control characters, final newline) on top of it.
"""

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

from espnet_asrser.utils.kaldi_text import KaldiTextError, control_character, read_kaldi_text

__all__ = [
    "DataDirError",
    "TableLine",
    "UTTERANCE_TABLES",
    "EMPTY_VALUE_TABLES",
    "iter_table",
    "read_table",
    "write_table",
    "utt2spk_to_spk2utt",
    "write_data_dir",
    "validate_data_dir",
    "subset_data_dir",
]

PathLike = Union[str, Path]

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


class DataDirError(ValueError):
    """A data directory or one of its tables breaks the conventions above."""


@dataclass(frozen=True)
class TableLine:
    """One parsed line of a table: 1-based line number, key and (possibly empty) value."""

    lineno: int
    key: str
    value: str


def _sort_key(key: str) -> bytes:
    return key.encode("utf-8")


def _list_ids(ids: Iterable[str]) -> str:
    ordered = sorted(ids, key=_sort_key)
    shown = " ".join(ordered[:_MAX_LISTED])
    more = f" ... ({len(ordered)} in total)" if len(ordered) > _MAX_LISTED else ""
    return f"{shown}{more}"


def iter_table(
    path: PathLike, *, allow_empty_value: bool = False, check_sorted: bool = True
) -> Iterator[TableLine]:
    """Yield the lines of a ``<key> <value>`` table, rejecting any malformed line.

    Line syntax (UTF-8, CRLF, empty lines, duplicate keys, byte-order mark) is checked
    by :func:`espnet_asrser.utils.kaldi_text.read_kaldi_text`; this adds the checks a
    data directory needs on top: control characters, a final newline and sort order.

    Args:
        path: the table file.
        allow_empty_value: accept a line that is only a key (transcript tables).
        check_sorted: require strictly increasing keys in C-locale byte order.

    Raises:
        DataDirError: naming ``path:line`` for non-UTF-8 bytes, CRLF line ends, control
            characters, a missing final newline, empty lines, leading white space, an
            empty value, a duplicate key or a key out of order.
    """
    path = Path(path)
    try:
        entries = read_kaldi_text(path, allow_empty_value=allow_empty_value)
    except KaldiTextError as e:
        raise DataDirError(str(e)) from None
    if entries:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                raise DataDirError(
                    f"{path}:{len(entries)}: missing newline at the end of the file"
                )
    previous: Optional[str] = None
    # read_kaldi_text rejects empty lines, so entry i is line i + 1.
    for lineno, (key, value) in enumerate(entries.items(), start=1):
        char = control_character(key + value)
        if char is not None:
            raise DataDirError(
                f"{path}:{lineno}: control character U+{ord(char):04X} in entry {key!r}"
            )
        if check_sorted and previous is not None and _sort_key(key) < _sort_key(previous):
            raise DataDirError(
                f"{path}:{lineno}: key {key!r} sorts before the previous key "
                f"{previous!r}; tables must be sorted in C-locale byte order "
                f"(LC_ALL=C sort)"
            )
        previous = key
        yield TableLine(lineno, key, value)


def read_table(
    path: PathLike, *, allow_empty_value: bool = False, check_sorted: bool = True
) -> Dict[str, str]:
    """Read a table with :func:`iter_table` into an insertion-ordered ``{key: value}``."""
    return {
        line.key: line.value
        for line in iter_table(
            path, allow_empty_value=allow_empty_value, check_sorted=check_sorted
        )
    }


def _check_field(path: Path, key: str, value: str, allow_empty_value: bool) -> None:
    if not key or any(c.isspace() for c in key):
        raise DataDirError(f"{path}: key {key!r} is empty or contains white space")
    char = control_character(key + value)
    if char is not None:
        raise DataDirError(
            f"{path}: entry {key!r} contains control character U+{ord(char):04X}"
        )
    if value != value.strip():
        raise DataDirError(f"{path}: value of {key!r} has leading or trailing white space")
    if not value and not allow_empty_value:
        raise DataDirError(f"{path}: key {key!r} has an empty value")


def write_table(
    path: PathLike, table: Mapping[str, str], *, allow_empty_value: bool = False
) -> None:
    """Write ``{key: value}`` sorted in C-locale byte order, atomically.

    The file is written next to its destination and renamed into place, so an
    interrupted run never leaves a truncated table that later reads as complete.

    Raises:
        DataDirError: a key is empty or has white space, or a key or value holds a
            control character, or a value is empty where that is not allowed.
    """
    path = Path(path)
    lines = []
    for key in sorted(table, key=_sort_key):
        value = table[key]
        _check_field(path, key, value, allow_empty_value)
        lines.append(f"{key} {value}\n" if value else f"{key}\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(lines), encoding="utf-8", newline="\n")
    os.replace(tmp, path)


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> Dict[str, str]:
    """Invert ``{utt: spk}`` into ``{spk: "utt1 utt2 ..."}``, utterances sorted."""
    spk2utts: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk, key=_sort_key):
        spk2utts.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in spk2utts.items()}


def write_data_dir(path: PathLike, tables: Mapping[str, Mapping[str, str]]) -> List[str]:
    """Write a data directory from ``{file name: {utt: value}}`` and validate it.

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
        DataDirError: a table is missing or has other keys than ``utt2spk``, or any
            entry breaks the conventions of :func:`write_table`.
    """
    path = Path(path)
    for required in ("wav.scp", "utt2spk"):
        if required not in tables:
            raise DataDirError(f"{path}: cannot write a data directory without {required}")
    if "spk2utt" in tables:
        raise DataDirError(f"{path}: spk2utt is derived from utt2spk; do not pass it")
    utts = set(tables["utt2spk"])
    if not utts:
        raise DataDirError(f"{path}: refusing to write a data directory with no utterances")
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
        validate_data_dir(tmp, required=tuple(tables) + ("spk2utt",))
    except BaseException:
        shutil.rmtree(tmp)
        raise
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return sorted(utts, key=_sort_key)


def _check_same_keys(ref_path: Path, ref: set, path: Path, keys: set) -> None:
    missing = ref - keys
    extra = keys - ref
    problems = []
    if missing:
        problems.append(f"{len(missing)} ids of {ref_path.name} are missing: {_list_ids(missing)}")
    if extra:
        problems.append(f"{len(extra)} ids are not in {ref_path.name}: {_list_ids(extra)}")
    if problems:
        raise DataDirError(f"{path}: " + "; ".join(problems))


def _check_value(path: Path, line: TableLine) -> None:
    name = path.name
    if name in _NUMERIC_TABLES:
        try:
            number = float(line.value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise DataDirError(
                f"{path}:{line.lineno}: {line.key}: expected a positive number, got "
                f"{line.value!r}"
            )
    elif name == "utt2spk" and len(line.value.split()) != 1:
        raise DataDirError(
            f"{path}:{line.lineno}: {line.key}: speaker id {line.value!r} has white space"
        )


def validate_data_dir(
    path: PathLike,
    required: Sequence[str] = ("wav.scp", "utt2spk", "spk2utt"),
    optional: Sequence[str] = UTTERANCE_TABLES,
) -> List[str]:
    """Check a data directory's tables one by one and against each other.

    Every table that is required or optional-and-present is read strictly with
    :func:`iter_table`; utterance tables must all hold the same ids as ``utt2spk``;
    ``spk2utt`` must be exactly the inverse of ``utt2spk`` (each utterance listed once,
    under its own speaker).

    Args:
        path: the data directory.
        required: tables that must exist (``utt2spk`` and ``spk2utt`` are always
            checked when present).
        optional: tables that are checked when present.

    Returns:
        The utterance ids, in C-locale byte order.

    Raises:
        DataDirError: naming the file and, where one is at fault, the line.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataDirError(f"{path}: not a directory")
    for name in required:
        if not (path / name).is_file():
            raise DataDirError(f"{path}: required file {name} is missing")
    if not (path / "utt2spk").is_file():
        raise DataDirError(f"{path}: utt2spk is missing; it defines the utterance ids")

    names = [n for n in dict.fromkeys([*required, *optional]) if (path / n).is_file()]
    tables: Dict[str, Dict[str, str]] = {}
    for name in names:
        if name == "spk2utt":
            continue
        table: Dict[str, str] = {}
        for line in iter_table(path / name, allow_empty_value=name in EMPTY_VALUE_TABLES):
            _check_value(path / name, line)
            table[line.key] = line.value
        tables[name] = table

    utt2spk = tables["utt2spk"]
    if not utt2spk:
        raise DataDirError(f"{path / 'utt2spk'}: no utterances")
    utts = set(utt2spk)
    for name, table in tables.items():
        _check_same_keys(path / "utt2spk", utts, path / name, set(table))

    if (path / "spk2utt").is_file():
        _check_spk2utt(path / "spk2utt", utt2spk)
    return sorted(utts, key=_sort_key)


def _check_spk2utt(path: Path, utt2spk: Mapping[str, str]) -> None:
    listed: Dict[str, int] = {}
    for line in iter_table(path):
        for utt in line.value.split():
            if utt in listed:
                raise DataDirError(
                    f"{path}:{line.lineno}: utterance {utt} is listed again (first at "
                    f"line {listed[utt]})"
                )
            listed[utt] = line.lineno
            speaker = utt2spk.get(utt)
            if speaker is None:
                raise DataDirError(
                    f"{path}:{line.lineno}: utterance {utt} of speaker {line.key} is not "
                    f"in utt2spk"
                )
            if speaker != line.key:
                raise DataDirError(
                    f"{path}:{line.lineno}: utterance {utt} is listed under speaker "
                    f"{line.key} but utt2spk says {speaker}"
                )
    unlisted = set(utt2spk) - set(listed)
    if unlisted:
        raise DataDirError(
            f"{path}: {len(unlisted)} utterances of utt2spk are not listed: "
            f"{_list_ids(unlisted)}"
        )


def subset_data_dir(src: PathLike, dst: PathLike, utt_ids: Iterable[str]) -> List[str]:
    """Write ``dst`` holding only ``utt_ids`` of the data directory ``src``.

    Every utterance table of ``src`` is filtered and ``spk2utt`` is rebuilt. A file
    this module does not know how to filter is an error rather than being left out of
    ``dst`` unnoticed; hidden files (``.done`` markers) are not copied.

    Returns:
        The utterance ids of ``dst``, in C-locale byte order.

    Raises:
        DataDirError: ``src`` is invalid, an id is not in ``src``, ``utt_ids`` is
            empty, or ``src`` holds an unknown file.
    """
    src, dst = Path(src), Path(dst)
    validate_data_dir(src)
    wanted = set(utt_ids)
    if not wanted:
        raise DataDirError(f"{src}: empty utterance list for the subset {dst}")
    unknown_files = sorted(
        p.name
        for p in src.iterdir()
        if not p.name.startswith(".") and p.name != "spk2utt" and p.name not in UTTERANCE_TABLES
    )
    if unknown_files:
        raise DataDirError(
            f"{src}: cannot subset unknown file(s) {', '.join(unknown_files)}; only "
            f"utterance tables ({', '.join(UTTERANCE_TABLES)}) and spk2utt are supported"
        )
    tables = {}
    for name in UTTERANCE_TABLES:
        if (src / name).is_file():
            table = read_table(src / name, allow_empty_value=name in EMPTY_VALUE_TABLES)
            tables[name] = table
    absent = wanted - set(tables["utt2spk"])
    if absent:
        raise DataDirError(
            f"{src}: {len(absent)} requested utterances are not in utt2spk: "
            f"{_list_ids(absent)}"
        )
    return write_data_dir(
        dst, {name: {u: v for u, v in t.items() if u in wanted} for name, t in tables.items()}
    )
