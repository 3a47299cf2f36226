"""Kaldi-style tables (``wav.scp``, ``text``, ``utt2spk``, ``emotion``, ...): the one strict
reader and writer of the project.

A table holds one ``<key> <value>`` line per entry: the key (an utterance or speaker id),
then ASCII spaces or tabs, then the value, which runs to the end of the line and may hold
spaces (a transcript, a speaker's utterance list). ESPnet reads these files with a plain
``split(maxsplit=1)``, so a stray ``\\r``, a doubled id or a Latin-1 byte does not fail
there: it shows up much later as a KeyError in a data loader, a label with ``\\r`` in it or
a silently smaller training set. Here every such defect is a :class:`KaldiTableError`
whose message starts with ``path:line:`` and says what to fix.

Always rejected, on the first offending line: a UTF-8 byte-order mark, CRLF line ends,
bytes that are not UTF-8, empty lines, lines starting with white space, duplicate keys
and control characters (Unicode category Cc) inside a key or value. Optional, per call:

* ``allow_empty_value``: a line that is only a key (an empty transcript) is accepted and
  maps to ``""``; elsewhere (labels, paths) it is an error;
* ``check_sorted``: keys strictly increasing in C-locale byte order (``LC_ALL=C sort``),
  the order Kaldi's tools and :func:`write_table` use;
* ``check_final_newline``: the last line ends with ``\\n``, as every table written by a
  tool does; a missing one is the mark of a truncated write.

The strict settings are the defaults: they are what :func:`write_table` produces, and a
file from outside the pipeline (a hand-made ``wav.scp``, a hypothesis file) relaxes them
explicitly. Only ASCII spaces and tabs separate the fields, as in Kaldi: ``str.split``
would also split on e.g. U+3000, which may occur inside a transcript.
"""

import codecs
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Union

__all__ = [
    "KaldiTableError",
    "TableLine",
    "control_character",
    "sort_key",
    "read_table_lines",
    "read_table",
    "write_table",
]

PathLike = Union[str, os.PathLike]

# The key ends at the first space or tab; trailing spaces and tabs are not in the value.
_LINE = re.compile(r"([^ \t]+)(?:[ \t]+(.*?))?[ \t]*")


class KaldiTableError(ValueError):
    """A table, or a set of tables, breaks the conventions above. The message starts with
    ``path:line:`` (``path:`` where no single line is at fault)."""

    def __init__(self, path: PathLike, line_no: Optional[int], message: str):
        where = os.fspath(path) if line_no is None else f"{os.fspath(path)}:{line_no}"
        super().__init__(f"{where}: {message}")
        self.path = os.fspath(path)
        self.line_no = line_no


@dataclass(frozen=True)
class TableLine:
    """One parsed line of a table: 1-based line number, key and (possibly empty) value."""

    lineno: int
    key: str
    value: str


def control_character(text: str) -> Optional[str]:
    """The first control character (Unicode category Cc) of ``text``, or None. Tabs,
    carriage returns and the like in a key or value break Kaldi-style tables silently."""
    return next((char for char in text if unicodedata.category(char) == "Cc"), None)


def sort_key(key: str) -> bytes:
    """The C-locale sort key of a table key: its UTF-8 bytes."""
    return key.encode("utf-8")


def _parse_line(
    path: PathLike, line_no: int, raw: bytes, allow_empty_value: bool
) -> TableLine:
    if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
        raise KaldiTableError(
            path, line_no, "file starts with a UTF-8 byte-order mark; save it without one"
        )
    if raw.endswith(b"\r"):
        raise KaldiTableError(
            path, line_no, "CRLF line end; convert the file to '\\n' line ends (dos2unix)"
        )
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise KaldiTableError(
            path, line_no, f"not valid UTF-8 (byte {e.start} of the line); re-encode the file"
        ) from None
    match = _LINE.fullmatch(line)
    if match is None:
        what = "empty line" if not line.strip() else "line starts with whitespace"
        raise KaldiTableError(path, line_no, f"{what}; expected '<key> <value>'")
    key, value = match.group(1), match.group(2) or ""
    char = control_character(key + value)
    if char is not None:
        raise KaldiTableError(
            path, line_no, f"control character U+{ord(char):04X} in entry {key!r}"
        )
    if not value and not allow_empty_value:
        raise KaldiTableError(path, line_no, f"utterance '{key}' has no value")
    return TableLine(line_no, key, value)


def read_table_lines(
    path: PathLike,
    *,
    allow_empty_value: bool = False,
    check_sorted: bool = True,
    check_final_newline: bool = True,
) -> List[TableLine]:
    """The lines of a table, in file order, after checking the whole file.

    Args:
        path: the table file.
        allow_empty_value: accept a line that is only a key (transcript tables).
        check_sorted: require strictly increasing keys in C-locale byte order.
        check_final_newline: require a ``\\n`` after the last line.

    Raises:
        KaldiTableError: ``path:line:`` and the fix, on the first malformed line.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    # A final "\n" terminates the last line rather than opening an empty one.
    if lines[-1] == b"":
        lines.pop()
    elif check_final_newline:
        raise KaldiTableError(
            path, len(lines), "missing newline at the end of the file (truncated?)"
        )
    parsed: List[TableLine] = []
    first_seen: Dict[str, int] = {}
    for line_no, raw in enumerate(lines, start=1):
        line = _parse_line(path, line_no, raw, allow_empty_value)
        if line.key in first_seen:
            raise KaldiTableError(
                path,
                line_no,
                f"duplicate utterance id '{line.key}' (first on line {first_seen[line.key]})",
            )
        if check_sorted and parsed and sort_key(line.key) < sort_key(parsed[-1].key):
            raise KaldiTableError(
                path,
                line_no,
                f"key {line.key!r} sorts before the previous key {parsed[-1].key!r}; "
                "tables must be sorted in C-locale byte order (LC_ALL=C sort)",
            )
        first_seen[line.key] = line_no
        parsed.append(line)
    return parsed


def read_table(
    path: PathLike,
    *,
    allow_empty_value: bool = False,
    check_sorted: bool = True,
    check_final_newline: bool = True,
) -> Dict[str, str]:
    """A table as an insertion-ordered ``{key: value}``; see :func:`read_table_lines`."""
    return {
        line.key: line.value
        for line in read_table_lines(
            path,
            allow_empty_value=allow_empty_value,
            check_sorted=check_sorted,
            check_final_newline=check_final_newline,
        )
    }


def _check_field(path: Path, key: str, value: str, allow_empty_value: bool) -> None:
    if not key or any(c.isspace() for c in key):
        raise KaldiTableError(path, None, f"key {key!r} is empty or contains white space")
    char = control_character(key + value)
    if char is not None:
        raise KaldiTableError(
            path, None, f"entry {key!r} contains control character U+{ord(char):04X}"
        )
    if value != value.strip():
        raise KaldiTableError(
            path, None, f"value of {key!r} has leading or trailing white space"
        )
    if not value and not allow_empty_value:
        raise KaldiTableError(path, None, f"key {key!r} has an empty value")


def write_table(
    path: PathLike, table: Mapping[str, str], *, allow_empty_value: bool = False
) -> None:
    """Write ``{key: value}`` sorted in C-locale byte order, atomically; an empty value is
    written as the bare key.

    The file is written next to its destination and renamed into place, so an
    interrupted run never leaves a truncated table that later reads as complete.

    Raises:
        KaldiTableError: a key is empty or has white space, a key or value holds a
            control character or a value has surrounding white space (it would not read
            back as written), or a value is empty where that is not allowed.
    """
    path = Path(path)
    lines = []
    for key in sorted(table, key=sort_key):
        value = table[key]
        _check_field(path, key, value, allow_empty_value)
        lines.append(f"{key} {value}\n" if value else f"{key}\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(lines), encoding="utf-8", newline="\n")
    os.replace(tmp, path)
