"""Strict reader for Kaldi-style ``<utt-id> <value>`` files (text, utt2emo, wav.scp, ...).

Each line holds an utterance id, then ASCII whitespace (spaces or tabs), then the value,
which runs to the end of the line and may itself contain spaces (a transcript). Files are
UTF-8 with ``\\n`` line ends.

Scoring and data preparation must not quietly lose or double utterances, so anything
irregular is an error naming the file and line: duplicate ids, empty lines, lines starting
with whitespace, CRLF line ends, a UTF-8 byte-order mark, bytes that are not UTF-8, and
(when ``allow_empty_value=False``) an id without a value.
"""

import codecs
import os
import re
import unicodedata
from typing import Dict, Optional, Union

# The id ends at the first space or tab. Only ASCII whitespace separates fields, as in
# Kaldi: str.split() would also split on e.g. U+3000, which may occur inside a transcript.
_LINE = re.compile(r"([^ \t]+)(?:[ \t]+(.*?))?[ \t]*")


class KaldiTextError(ValueError):
    """A malformed line in a Kaldi-style file; the message starts with ``path:line:``."""

    def __init__(self, path: Union[str, os.PathLike], line_no: int, message: str):
        super().__init__(f"{os.fspath(path)}:{line_no}: {message}")
        self.path = os.fspath(path)
        self.line_no = line_no


def read_kaldi_text(
    path: Union[str, os.PathLike], *, allow_empty_value: bool = True
) -> Dict[str, str]:
    """Read ``<utt-id> <value>`` lines into a dict, in file order.

    Args:
        path: the file to read.
        allow_empty_value: accept a line holding only an id and map it to ``""`` (an empty
            transcript). Pass False for files where every id needs a value (labels, paths).

    Returns:
        utterance id -> value, with leading and trailing spaces/tabs of the value removed.

    Raises:
        KaldiTextError: (a ValueError) on the first malformed line.
    """
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    # A final "\n" terminates the last line rather than opening an empty one.
    if lines[-1] == b"":
        lines.pop()

    entries: Dict[str, str] = {}
    first_seen: Dict[str, int] = {}
    for line_no, raw in enumerate(lines, start=1):
        if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
            raise KaldiTextError(path, line_no, "file starts with a UTF-8 byte-order mark")
        if raw.endswith(b"\r"):
            raise KaldiTextError(
                path, line_no, "CRLF line end; convert the file to '\\n' line ends"
            )
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise KaldiTextError(
                path, line_no, f"not valid UTF-8 (byte {e.start} of the line)"
            ) from None
        match = _LINE.fullmatch(line)
        if match is None:
            what = "empty line" if not line.strip() else "line starts with whitespace"
            raise KaldiTextError(path, line_no, f"{what}; expected '<utt-id> <value>'")
        utt_id, value = match.group(1), match.group(2) or ""
        if utt_id in first_seen:
            raise KaldiTextError(
                path,
                line_no,
                f"duplicate utterance id '{utt_id}' (first on line {first_seen[utt_id]})",
            )
        if not value and not allow_empty_value:
            raise KaldiTextError(path, line_no, f"utterance '{utt_id}' has no value")
        first_seen[utt_id] = line_no
        entries[utt_id] = value
    return entries


def control_character(text: str) -> Optional[str]:
    """The first control character (Unicode category Cc) of ``text``, or None. Tabs,
    carriage returns and the like in a key or value break Kaldi-style tables silently."""
    return next((char for char in text if unicodedata.category(char) == "Cc"), None)
