"""Reader and writer of the LibriSpeech release layout.

One subset (``train-clean-100``, ``dev-clean``, ...) is laid out as::

    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac
    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt

where each transcript line is ``<speaker>-<chapter>-<nnnn> UPPER CASE WORDS``. The reader
pairs every flac file with its transcript line and fails, naming the file, when either
is missing: an unpaired file means a damaged or partial download, which should be
fixed rather than trained around.

The writer creates the same layout (FLAC, 16 kHz) from :class:`LibriUtterance` objects
so that tests can run on a tiny generated corpus.
"""

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import soundfile

__all__ = [
    "SUBSETS",
    "TRAIN_SUBSETS",
    "LibriSpeechFormatError",
    "LibriUtterance",
    "LibriRecord",
    "read_librispeech",
    "write_librispeech",
]

#: The subsets of the release, in the order they are usually listed.
SUBSETS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)
#: The subsets whose union is the 960 h training set.
TRAIN_SUBSETS = SUBSETS[:3]

_UTT_ID = re.compile(r"(?P<speaker>\d+)-(?P<chapter>\d+)-(?P<index>\d+)")


class LibriSpeechFormatError(ValueError):
    """The corpus departs from the release layout; the message names the file."""


@dataclass
class LibriUtterance:
    """One utterance to write with :func:`write_librispeech`.

    Attributes:
        subset: e.g. ``train-clean-100``.
        speaker, chapter, index: the three parts of the id ``19-198-0001``.
        transcript: the transcript line's text; None writes no transcript line.
        audio: mono samples; None writes no flac file.
    """

    subset: str
    speaker: int
    chapter: int
    index: int
    transcript: Optional[str]
    audio: Optional[np.ndarray] = None

    @property
    def utt_id(self) -> str:
        return f"{self.speaker}-{self.chapter}-{self.index:04d}"


@dataclass(frozen=True)
class LibriRecord:
    """One utterance as found in the corpus.

    Attributes:
        utt_id: ``<speaker>-<chapter>-<nnnn>``.
        subset: the subset folder it was read from.
        speaker, chapter: as in the id.
        transcript: the transcript text (upper case, no punctuation in the release).
        flac: the audio file.
    """

    utt_id: str
    subset: str
    speaker: int
    chapter: int
    transcript: str
    flac: Path


def _numeric_dirs(folder: Path, what: str) -> List[Path]:
    dirs = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if not path.is_dir() or not path.name.isdigit():
            raise LibriSpeechFormatError(
                f"{path}: expected only {what} folders (named by number) in {folder}"
            )
        dirs.append(path)
    return dirs


def _read_transcripts(path: Path, speaker: str, chapter: str) -> Dict[str, Tuple[str, int]]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise LibriSpeechFormatError(f"{path}: not valid UTF-8 at byte offset {e.start}") from None
    lines: Dict[str, Tuple[str, int]] = {}
    # Not str.splitlines(), which would also break a line at U+2028 or a form feed.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        utt_id, _, transcript = line.strip().partition(" ")
        match = _UTT_ID.fullmatch(utt_id)
        if match is None or not transcript.strip():
            raise LibriSpeechFormatError(
                f"{path}:{lineno}: expected '<speaker>-<chapter>-<nnnn> TRANSCRIPT', got "
                f"{line!r}"
            )
        if (match["speaker"], match["chapter"]) != (speaker, chapter):
            raise LibriSpeechFormatError(
                f"{path}:{lineno}: {utt_id} does not belong to speaker {speaker}, "
                f"chapter {chapter}"
            )
        if utt_id in lines:
            raise LibriSpeechFormatError(
                f"{path}:{lineno}: second transcript for {utt_id} (first at line "
                f"{lines[utt_id][1]})"
            )
        lines[utt_id] = (" ".join(transcript.split()), lineno)
    return lines


def read_librispeech(root: Path, subset: str) -> List[LibriRecord]:
    """Read one subset of a LibriSpeech directory.

    Args:
        root: the ``LibriSpeech`` directory (holding ``train-clean-100`` etc.).
        subset: the subset folder name, e.g. ``dev-clean``.

    Returns:
        One record per utterance, sorted by utterance id in C-locale byte order.

    Raises:
        LibriSpeechFormatError: the subset is missing or empty, a folder or file is out
            of place, a transcript line is malformed or duplicated, a flac file has no
            transcript line, or a transcript line has no flac file.
    """
    subset_dir = Path(root) / subset
    if not subset_dir.is_dir():
        raise LibriSpeechFormatError(f"{subset_dir}: subset folder does not exist")
    records: List[LibriRecord] = []
    for speaker_dir in _numeric_dirs(subset_dir, "speaker"):
        for chapter_dir in _numeric_dirs(speaker_dir, "chapter"):
            speaker, chapter = speaker_dir.name, chapter_dir.name
            prefix = f"{speaker}-{chapter}"
            trans_file = chapter_dir / f"{prefix}.trans.txt"
            flacs = {
                p.name[: -len(".flac")]: p
                for p in chapter_dir.glob("*.flac")
                if not p.name.startswith(".")
            }
            if not trans_file.is_file():
                raise LibriSpeechFormatError(
                    f"{trans_file}: transcript file is missing ({len(flacs)} flac files "
                    f"in {chapter_dir})"
                )
            transcripts = _read_transcripts(trans_file, speaker, chapter)
            for utt_id in sorted(flacs):
                if utt_id not in transcripts:
                    raise LibriSpeechFormatError(
                        f"{flacs[utt_id]}: no transcript line for {utt_id} in {trans_file}"
                    )
            for utt_id, (transcript, lineno) in transcripts.items():
                if utt_id not in flacs:
                    raise LibriSpeechFormatError(
                        f"{trans_file}:{lineno}: no audio file "
                        f"{chapter_dir / (utt_id + '.flac')} for this transcript line"
                    )
                records.append(
                    LibriRecord(
                        utt_id=utt_id,
                        subset=subset,
                        speaker=int(speaker),
                        chapter=int(chapter),
                        transcript=transcript,
                        flac=flacs[utt_id],
                    )
                )
    if not records:
        raise LibriSpeechFormatError(f"{subset_dir}: no utterances found")
    return sorted(records, key=lambda r: r.utt_id.encode("utf-8"))


def write_librispeech(
    root: Path, utterances: Iterable[LibriUtterance], sample_rate: int = 16000
) -> None:
    """Write utterances in the LibriSpeech layout under ``root`` (the ``LibriSpeech`` dir).

    Raises:
        ValueError: an unknown subset, a duplicate id, a transcript with a line break,
            or audio that is not one-dimensional.
    """
    root = Path(root)
    chapters: Dict[Tuple[str, int, int], List[LibriUtterance]] = defaultdict(list)
    seen = set()
    for utterance in utterances:
        if utterance.subset not in SUBSETS:
            raise ValueError(f"{utterance.utt_id}: unknown subset {utterance.subset!r}")
        key = (utterance.subset, utterance.utt_id)
        if key in seen:
            raise ValueError(f"duplicate utterance {utterance.utt_id} in {utterance.subset}")
        seen.add(key)
        chapters[(utterance.subset, utterance.speaker, utterance.chapter)].append(utterance)

    for (subset, speaker, chapter), members in sorted(chapters.items()):
        chapter_dir = root / subset / str(speaker) / str(chapter)
        chapter_dir.mkdir(parents=True, exist_ok=True)
        lines = []
        for utterance in sorted(members, key=lambda u: u.index):
            if utterance.transcript is not None:
                if "\n" in utterance.transcript or "\r" in utterance.transcript:
                    raise ValueError(f"{utterance.utt_id}: transcript has a line break")
                lines.append(f"{utterance.utt_id} {utterance.transcript}\n")
            if utterance.audio is not None:
                audio = np.asarray(utterance.audio)
                if audio.ndim != 1:
                    raise ValueError(
                        f"{utterance.utt_id}: audio must be mono (1-D), got {audio.shape}"
                    )
                soundfile.write(
                    chapter_dir / f"{utterance.utt_id}.flac", audio, sample_rate, format="FLAC"
                )
        (chapter_dir / f"{speaker}-{chapter}.trans.txt").write_text(
            "".join(lines), encoding="utf-8"
        )
