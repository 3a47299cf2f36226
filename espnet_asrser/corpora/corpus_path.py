"""Checks of the corpus locations that a recipe reads from ``db.sh``.

A wrong path in ``db.sh`` otherwise surfaces as a message about a file deep inside the
corpus, or about a missing session, that does not say which setting to change. These
checks run first and name the variable, what it holds, what was expected under it and,
where the path is one level off (the parent of the release, or one session of it), the
path that was probably meant.
"""

from pathlib import Path
from typing import List, Optional, Sequence

__all__ = ["CorpusPathError", "check_iemocap_path", "check_librispeech_path"]

IEMOCAP_SESSIONS = tuple(f"Session{n}" for n in range(1, 6))
# What every session of IEMOCAP_full_release holds and the data preparation reads.
IEMOCAP_PARTS = ("dialog/EmoEvaluation", "dialog/transcriptions", "sentences/wav")


class CorpusPathError(ValueError):
    """A corpus location (a db.sh variable) that does not hold the corpus."""


def _setting(var: str, path: str, option: str) -> str:
    return f"{var}={path} (db.sh; passed as {option})"


def _child_holding(path: Path, relative: str) -> Optional[Path]:
    """A direct sub-directory of ``path`` that holds ``relative``, if there is one."""
    try:
        children = sorted(p for p in path.iterdir() if p.is_dir())
    except OSError:
        return None
    return next((c for c in children if (c / relative).is_dir()), None)


def _start(path: str, var: str, option: str, expected: str) -> Path:
    if not str(path).strip():
        raise CorpusPathError(
            f"{var} is not set: write the location of {expected} into {var}= in db.sh, or "
            f"export {var}=/path/to/it"
        )
    root = Path(path)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise CorpusPathError(
            f"{_setting(var, path, option)} {what}; set {var} in db.sh to {expected}"
        )
    return root


def check_iemocap_path(path: str, var: str = "IEMOCAP", option: str = "--iemocap") -> Path:
    """``path`` holds IEMOCAP_full_release (Session1..Session5 with labels, transcripts
    and audio); else :class:`CorpusPathError` naming ``var``."""
    expected = "the IEMOCAP_full_release directory, the one that holds Session1 ... Session5"
    root = _start(path, var, option, expected)
    missing: List[str] = [
        f"{session}/{part}"
        for session in IEMOCAP_SESSIONS
        for part in IEMOCAP_PARTS
        if not (root / session / part).is_dir()
    ]
    if not missing:
        return root
    if len(missing) == len(IEMOCAP_SESSIONS) * len(IEMOCAP_PARTS):
        problem = "no Session1/dialog/EmoEvaluation under it"
        meant = _child_holding(root, "Session1/dialog/EmoEvaluation")
        if meant is None and (root / "dialog/EmoEvaluation").is_dir():
            meant = root.parent  # a session folder itself
        hint = f" (did you mean {var}={meant}?)" if meant is not None else ""
    else:
        problem = f"{len(missing)} parts of the release are missing: {', '.join(missing[:5])}"
        problem += " ..." if len(missing) > 5 else ""
        hint = " (an incomplete copy?)"
    raise CorpusPathError(
        f"{_setting(var, path, option)}: {problem}{hint}; set {var} in db.sh to {expected}"
    )


def check_librispeech_path(
    path: str,
    subsets: Sequence[str],
    var: str = "LIBRISPEECH",
    option: str = "--librispeech",
) -> Path:
    """``path`` holds at least one LibriSpeech subset folder (``train-clean-100``, ...);
    else :class:`CorpusPathError` naming ``var``."""
    expected = f"the LibriSpeech directory, the one that holds {', '.join(subsets[:2])}, ..."
    root = _start(path, var, option, expected)
    if any((root / subset).is_dir() for subset in subsets):
        return root
    meant = next(
        (c for c in (_child_holding(root, s) for s in subsets) if c is not None), None
    )
    if meant is None and root.name in subsets:
        meant = root.parent  # one subset itself
    hint = f" (did you mean {var}={meant}?)" if meant is not None else ""
    raise CorpusPathError(
        f"{_setting(var, path, option)}: none of the subsets {', '.join(subsets)} is under "
        f"it{hint}; set {var} in db.sh to {expected}"
    )
