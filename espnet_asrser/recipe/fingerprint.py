"""Usage: python -m espnet_asrser.recipe.fingerprint WORD [WORD ...]

Prints the fingerprint of a recipe step's inputs: the words (its command line), then the
MD5 sum of every file the words name. A step's ``.done`` marker holds the fingerprint it
ran with, and the step is skipped while the fingerprint is unchanged.

Files are recognised in the words themselves, before a comma (ESPnet's path,name,type),
before a colon (path::asr) and after an equals sign (stats_file=path). Comment and blank
lines of YAML files do not count, so that editing a config's comments retrains nothing.
"""

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Iterable, List, Union

_YAML_NOISE = re.compile(rb"^[ \t]*(#|$)")


def _named_files(word: str) -> List[str]:
    candidates = [word, word.split(",", 1)[0], word.split(":", 1)[0], word.split("=", 1)[-1]]
    return [c for c in candidates if c and os.path.isfile(c)]


def _digest(path: str) -> str:
    data = Path(path).read_bytes()
    if path.endswith(".yaml"):
        data = b"".join(
            line for line in data.splitlines(keepends=True) if not _YAML_NOISE.match(line)
        )
    return hashlib.md5(data).hexdigest()


def fingerprint(words: Iterable[Union[str, os.PathLike]]) -> str:
    """The words on one line, then ``<md5>  <file>`` for every file they name, each once."""
    words = [os.fspath(w) for w in words]
    lines = [" ".join(words)]
    for word in words:
        for path in _named_files(word):
            line = f"{_digest(path)}  {path}"
            if line not in lines:
                lines.append(line)
    return "\n".join(lines) + "\n"


def is_done(directory: Union[str, os.PathLike], signature: str) -> bool:
    marker = Path(directory) / ".done"
    return marker.is_file() and marker.read_text(encoding="utf-8") == signature


def mark_done(directory: Union[str, os.PathLike], signature: str) -> None:
    Path(directory).mkdir(parents=True, exist_ok=True)
    (Path(directory) / ".done").write_text(signature, encoding="utf-8")


if __name__ == "__main__":
    sys.stdout.write(fingerprint(sys.argv[1:]))
