"""Reader and writer of the IEMOCAP release layout (``IEMOCAP_full_release/``).

The files this module reads, per session ``N`` in 1..5::

    SessionN/dialog/EmoEvaluation/<dialog>.txt       label summaries (read)
    SessionN/dialog/EmoEvaluation/{Categorical,Attribute,Self-evaluation}/
                                                     per-annotator files (ignored)
    SessionN/dialog/transcriptions/<dialog>.txt      transcripts (read)
    SessionN/sentences/wav/<dialog>/<utt>.wav        16 kHz mono audio (path only)

A label summary file opens with a ``%`` header line, then holds one block per utterance,
blocks separated by blank lines. A block's first line is the tab-separated summary::

    [6.2901 - 8.2357]	Ses01F_impro01_F000	neu	[2.5000, 2.5000, 2.5000]

(start and end in seconds, utterance id, majority label code, valence/activation/
dominance), followed by one line per annotator (``C-E2:	Neutral;	()``,
``A-E3:	val 3; act 2; dom  2;	()``), which are not needed here.

A transcription line is ``Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.``. The
files also hold turns that are not sentence utterances: ids such as
``Ses01F_impro01_MXX0`` and lines like ``M: [LAUGHTER]``. Only lines whose first token is
a well-formed utterance id are read; the others are skipped, since no label refers to
them.

Utterance ids are ``<dialog>_<gender><nnn>``, dialogs ``Ses<NN><F|M>_<impro|script>...``
(``Ses01F_impro01``, ``Ses01F_script01_1``, ``Ses03M_impro05a``). The speaker of an
utterance is its session plus the gender letter of the utterance *suffix*:
``Ses01F_impro01_M003`` is spoken by ``Ses01_M``, the male actor of session 1, although
the dialog name carries ``F`` (which says who wore the motion-capture markers).

The reader is strict: a malformed summary line, an unknown label code, a duplicate
utterance or a labelled utterance without a transcript is an error naming the file and
line (or the utterance), because silently skipping such a line would change the
evaluation set without anyone noticing.

The writer produces the same layout from :class:`IemocapUtterance` objects; tests use it
to build small corpora with synthetic audio, since the real corpus is licensed and cannot
be downloaded here.
"""

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import soundfile

__all__ = [
    "LABEL_CODES",
    "IemocapFormatError",
    "IemocapUtterance",
    "IemocapRecord",
    "UtteranceId",
    "parse_utterance_id",
    "read_iemocap",
    "write_iemocap",
]

#: Every majority-label code of the release: neutral, happiness, excitement, sadness,
#: anger, frustration, surprise, fear, disgust, other, and "xxx" (no majority).
LABEL_CODES = ("neu", "hap", "exc", "sad", "ang", "fru", "sur", "fea", "dis", "oth", "xxx")
# The paper's four classes, in the order of every model's output (exc is merged into hap
# or dropped; other labels are dropped). Data preparation writes them to the data
# directory's ``classes`` file, which every later step reads.
FOUR_CLASSES = ("ang", "hap", "neu", "sad")

# Names the annotators used in the categorical lines, for the writer only.
_LABEL_NAMES = {
    "neu": "Neutral",
    "hap": "Happiness",
    "exc": "Excited",
    "sad": "Sadness",
    "ang": "Anger",
    "fru": "Frustration",
    "sur": "Surprise",
    "fea": "Fear",
    "dis": "Disgust",
    "oth": "Other",
}

_UTT_ID = re.compile(
    r"(?P<dialog>Ses(?P<session>\d{2})[FM]_(?P<category>impro|script)[0-9a-z]*"
    r"(?:_[0-9a-z]+)*)_(?P<gender>[FM])(?P<index>\d{3})"
)
_NUMBER = r"\d+(?:\.\d*)?"
_SUMMARY = re.compile(
    rf"\[\s*(?P<start>{_NUMBER})\s*-\s*(?P<end>{_NUMBER})\s*\]\t+(?P<utt>\S+)\t+"
    rf"(?P<label>\S+)\t+\[(?P<vad>[^\]]*)\]"
)
# Annotator lines: "C-E2:", "A-E3:", "C-F1:" (evaluator kind, dash, evaluator id, colon).
_ANNOTATOR = re.compile(r"[A-Z]+-[A-Za-z0-9]+:")
_TRANSCRIPT = re.compile(
    rf"(?P<utt>\S+)\s+\[\s*(?P<start>{_NUMBER})\s*-\s*(?P<end>{_NUMBER})\s*\]:\s?(?P<text>.*)"
)
_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
_IGNORED_SUBDIRS = ("Categorical", "Attribute", "Self-evaluation")


class IemocapFormatError(ValueError):
    """The corpus departs from the release layout; the message names file and line."""


@dataclass(frozen=True)
class UtteranceId:
    """The parts of an utterance id such as ``Ses01F_script01_1_M003``."""

    utt_id: str
    session: int  # 1
    dialog: str  # Ses01F_script01_1
    category: str  # "impro" or "script"
    gender: str  # "M": the speaker of this utterance, from the suffix
    speaker: str  # Ses01_M


def parse_utterance_id(utt_id: str) -> Optional[UtteranceId]:
    """Split an utterance id into its parts, or return None if it is not one."""
    match = _UTT_ID.fullmatch(utt_id)
    if match is None:
        return None
    session = int(match["session"])
    return UtteranceId(
        utt_id=utt_id,
        session=session,
        dialog=match["dialog"],
        category=match["category"],
        gender=match["gender"],
        speaker=f"Ses{session:02d}_{match['gender']}",
    )


@dataclass
class IemocapUtterance:
    """One utterance to write with :func:`write_iemocap`.

    Session, dialog and speaker are derived from ``utt_id``.

    Attributes:
        utt_id: e.g. ``Ses01F_impro01_M003``.
        label: one of :data:`LABEL_CODES`.
        transcript: the transcription text; None writes no transcription line.
        start, end: times in the dialog, seconds.
        audio: mono samples (float in [-1, 1] or int16); None writes no wav file.
        vad: valence, activation, dominance (1..5).
    """

    utt_id: str
    label: str
    transcript: Optional[str]
    start: float
    end: float
    audio: Optional[np.ndarray] = None
    vad: Tuple[float, float, float] = (2.5, 2.5, 2.5)


@dataclass(frozen=True)
class IemocapRecord:
    """One labelled utterance as found in the corpus.

    Attributes:
        utt_id: e.g. ``Ses01F_impro01_M003``.
        session: 1..5.
        speaker: session plus the gender of the utterance suffix, e.g. ``Ses01_M``.
        dialog: e.g. ``Ses01F_impro01``.
        category: ``impro`` or ``script``.
        label: the majority label code, one of :data:`LABEL_CODES`.
        transcript: the transcription text as written (may be empty).
        wav: where the utterance's audio belongs; its existence is not checked here.
        start, end: times in the dialog from the label summary, seconds.
        vad: valence, activation, dominance from the label summary.
    """

    utt_id: str
    session: int
    speaker: str
    dialog: str
    category: str
    label: str
    transcript: str
    wav: Path
    start: float
    end: float
    vad: Tuple[float, float, float] = (2.5, 2.5, 2.5)


@dataclass(frozen=True)
class _Summary:
    utt: UtteranceId
    label: str
    start: float
    end: float
    vad: Tuple[float, float, float]
    where: str  # "file:line", for error messages


def _read_lines(path: Path) -> List[str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise IemocapFormatError(
            f"{path}: not valid UTF-8 at byte offset {e.start}"
        ) from None
    # "\r\n" is accepted: line ends carry no information in the release. Not
    # str.splitlines(), which would also break a line at U+2028 or a form feed.
    return [line.rstrip("\r") for line in text.split("\n")]


def _visible_txt_files(folder: Path) -> List[Path]:
    # Only direct children: the sub-folders hold per-annotator files, not summaries.
    # Dot files are macOS resource forks ("._Ses01F_impro01.txt") that some copies of
    # the release carry; they are not text.
    return sorted(
        p for p in folder.glob("*.txt") if p.is_file() and not p.name.startswith(".")
    )


def _parse_summaries(path: Path, session: int) -> List[_Summary]:
    summaries = []
    in_block = False
    for lineno, line in enumerate(_read_lines(path), start=1):
        where = f"{path}:{lineno}"
        stripped = line.strip()
        if not stripped:
            in_block = False
            continue
        if stripped.startswith("%"):
            continue
        if stripped.startswith("["):
            match = _SUMMARY.fullmatch(stripped)
            if match is None:
                raise IemocapFormatError(
                    f"{where}: malformed summary line (expected "
                    f"'[start - end]<TAB>utt_id<TAB>label<TAB>[V, A, D]'): {stripped!r}"
                )
            summaries.append(_summary_from_match(match, path, session, where))
            in_block = True
        elif _ANNOTATOR.match(stripped):
            if not in_block:
                raise IemocapFormatError(
                    f"{where}: annotator line outside an utterance block: {stripped!r}"
                )
        else:
            raise IemocapFormatError(
                f"{where}: neither a summary line nor an annotator line: {stripped!r}"
            )
    return summaries


def _summary_from_match(
    match: "re.Match[str]", path: Path, session: int, where: str
) -> _Summary:
    utt = parse_utterance_id(match["utt"])
    if utt is None:
        raise IemocapFormatError(f"{where}: malformed utterance id {match['utt']!r}")
    if utt.dialog != path.stem:
        raise IemocapFormatError(
            f"{where}: utterance {utt.utt_id} belongs to dialog {utt.dialog}, not to "
            f"{path.stem}"
        )
    if utt.session != session:
        raise IemocapFormatError(
            f"{where}: utterance {utt.utt_id} is of session {utt.session} but the file "
            f"is in Session{session}"
        )
    label = match["label"]
    if label not in LABEL_CODES:
        raise IemocapFormatError(
            f"{where}: unknown label code {label!r} for {utt.utt_id} (known: "
            f"{', '.join(LABEL_CODES)})"
        )
    try:
        vad = tuple(float(v) for v in match["vad"].split(","))
    except ValueError:
        vad = ()
    if len(vad) != 3:
        raise IemocapFormatError(
            f"{where}: expected three comma-separated numbers [V, A, D], got "
            f"[{match['vad']}]"
        )
    start, end = float(match["start"]), float(match["end"])
    if end < start:
        raise IemocapFormatError(f"{where}: {utt.utt_id} ends ({end}) before it starts ({start})")
    return _Summary(utt, label, start, end, vad, where)  # type: ignore[arg-type]


def _parse_transcripts(path: Path) -> Dict[str, str]:
    transcripts: Dict[str, str] = {}
    first_line: Dict[str, int] = {}
    for lineno, line in enumerate(_read_lines(path), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        first = stripped.split(maxsplit=1)[0]
        utt = parse_utterance_id(first)
        if utt is None:
            continue  # a turn that is not a sentence utterance (MXX0, "M: [LAUGHTER]")
        match = _TRANSCRIPT.fullmatch(stripped)
        if match is None:
            raise IemocapFormatError(
                f"{path}:{lineno}: malformed transcription line for {utt.utt_id} "
                f"(expected '<utt_id> [start-end]: text'): {stripped!r}"
            )
        if utt.dialog != path.stem:
            raise IemocapFormatError(
                f"{path}:{lineno}: utterance {utt.utt_id} belongs to dialog {utt.dialog}, "
                f"not to {path.stem}"
            )
        if utt.utt_id in transcripts:
            raise IemocapFormatError(
                f"{path}:{lineno}: second transcript for {utt.utt_id} (first at line "
                f"{first_line[utt.utt_id]})"
            )
        transcripts[utt.utt_id] = match["text"].strip()
        first_line[utt.utt_id] = lineno
    return transcripts


def _session_dirs(root: Path) -> List[Tuple[int, Path]]:
    if not root.is_dir():
        raise IemocapFormatError(f"{root}: IEMOCAP root directory does not exist")
    sessions = []
    for path in root.iterdir():
        match = re.fullmatch(r"Session(\d+)", path.name)
        if match and path.is_dir():
            sessions.append((int(match[1]), path))
    if not sessions:
        raise IemocapFormatError(
            f"{root}: no Session1..Session5 folders; point to IEMOCAP_full_release"
        )
    return sorted(sessions)


def read_iemocap(root: Path) -> List[IemocapRecord]:
    """Read every labelled utterance of an ``IEMOCAP_full_release`` directory.

    Args:
        root: the directory holding ``Session1`` ... ``Session5``.

    Returns:
        One record per utterance with a label summary, of every label code, sorted by
        utterance id. Audio files are not opened.

    Raises:
        IemocapFormatError: a missing folder, a malformed summary line, an unknown label
            code, a duplicate utterance, or a labelled utterance without a transcript;
            the message names the file and line, or the utterance.
    """
    root = Path(root)
    records: List[IemocapRecord] = []
    seen: Dict[str, str] = {}
    for session, session_dir in _session_dirs(root):
        emo_dir = session_dir / "dialog" / "EmoEvaluation"
        trans_dir = session_dir / "dialog" / "transcriptions"
        if not emo_dir.is_dir():
            raise IemocapFormatError(f"{emo_dir}: label folder is missing")
        for emo_file in _visible_txt_files(emo_dir):
            summaries = _parse_summaries(emo_file, session)
            if not summaries:
                continue
            trans_file = trans_dir / emo_file.name
            if not trans_file.is_file():
                raise IemocapFormatError(
                    f"{trans_file}: transcription file is missing for the "
                    f"{len(summaries)} labelled utterances of {emo_file}"
                )
            transcripts = _parse_transcripts(trans_file)
            for summary in summaries:
                utt = summary.utt
                if utt.utt_id in seen:
                    raise IemocapFormatError(
                        f"{summary.where}: duplicate utterance {utt.utt_id} (first at "
                        f"{seen[utt.utt_id]})"
                    )
                seen[utt.utt_id] = summary.where
                if utt.utt_id not in transcripts:
                    raise IemocapFormatError(
                        f"utterance {utt.utt_id} (labelled at {summary.where}) has no "
                        f"transcript in {trans_file}"
                    )
                records.append(
                    IemocapRecord(
                        utt_id=utt.utt_id,
                        session=session,
                        speaker=utt.speaker,
                        dialog=utt.dialog,
                        category=utt.category,
                        label=summary.label,
                        transcript=transcripts[utt.utt_id],
                        wav=session_dir / "sentences" / "wav" / utt.dialog / f"{utt.utt_id}.wav",
                        start=summary.start,
                        end=summary.end,
                        vad=summary.vad,
                    )
                )
    return sorted(records, key=lambda r: r.utt_id.encode("utf-8"))


def write_iemocap(
    root: Path,
    utterances: Iterable[IemocapUtterance],
    *,
    sample_rate: int = 16000,
    non_utterance_lines: bool = True,
) -> None:
    """Write utterances in the IEMOCAP release layout under ``root``.

    Utterances are grouped into dialogs and sessions by their ids, and each dialog's
    blocks and transcription lines are sorted by start time, as in the release. Each
    ``EmoEvaluation`` sub-folder gets a decoy file per dialog that repeats a summary
    line: a reader that wrongly descended into them would report duplicates.

    Args:
        root: the ``IEMOCAP_full_release`` directory to create or extend.
        utterances: what to write; ids must be well-formed and unique.
        sample_rate: sample rate of the wav files.
        non_utterance_lines: also write transcription lines that are not sentence
            utterances (``..._MXX0`` turns and ``M: [LAUGHTER]``), which readers skip.

    Raises:
        ValueError: a malformed or duplicate id, an unknown label, or audio that is not
            one-dimensional.
    """
    root = Path(root)
    dialogs: Dict[str, List[Tuple[UtteranceId, IemocapUtterance]]] = defaultdict(list)
    seen = set()
    for utterance in utterances:
        utt = parse_utterance_id(utterance.utt_id)
        if utt is None:
            raise ValueError(f"malformed IEMOCAP utterance id {utterance.utt_id!r}")
        if utterance.label not in LABEL_CODES:
            raise ValueError(f"{utterance.utt_id}: unknown label code {utterance.label!r}")
        if utt.utt_id in seen:
            raise ValueError(f"duplicate utterance {utterance.utt_id}")
        seen.add(utt.utt_id)
        dialogs[utt.dialog].append((utt, utterance))

    for dialog, members in sorted(dialogs.items()):
        members.sort(key=lambda m: (m[1].start, m[0].utt_id))
        session_dir = root / f"Session{members[0][0].session}"
        _write_summaries(session_dir / "dialog" / "EmoEvaluation", dialog, members)
        _write_transcripts(
            session_dir / "dialog" / "transcriptions" / f"{dialog}.txt",
            members,
            non_utterance_lines,
        )
        wav_dir = session_dir / "sentences" / "wav" / dialog
        for utt, utterance in members:
            if utterance.audio is None:
                continue
            audio = np.asarray(utterance.audio)
            if audio.ndim != 1:
                raise ValueError(f"{utt.utt_id}: audio must be mono (1-D), got {audio.shape}")
            wav_dir.mkdir(parents=True, exist_ok=True)
            soundfile.write(
                wav_dir / f"{utt.utt_id}.wav", audio, sample_rate, subtype="PCM_16"
            )


def _summary_line(utt: UtteranceId, utterance: IemocapUtterance) -> str:
    v, a, d = utterance.vad
    return (
        f"[{utterance.start:.4f} - {utterance.end:.4f}]\t{utt.utt_id}\t{utterance.label}\t"
        f"[{v:.4f}, {a:.4f}, {d:.4f}]"
    )


def _write_summaries(
    emo_dir: Path, dialog: str, members: List[Tuple[UtteranceId, IemocapUtterance]]
) -> None:
    emo_dir.mkdir(parents=True, exist_ok=True)
    lines = [_HEADER, ""]
    for utt, utterance in members:
        name = _LABEL_NAMES.get(utterance.label, "Other")
        v, a, d = (int(round(x)) for x in utterance.vad)
        lines += [
            _summary_line(utt, utterance),
            f"C-E1:\t{name};\t()",
            f"C-E2:\t{name};\t()",
            f"C-F1:\t{name};\t(writer default)",
            f"A-E1:\tval {v}; act {a}; dom  {d};\t()",
            f"A-F1:\tval {v}; act {a}; dom  {d};\t()",
            "",
        ]
    (emo_dir / f"{dialog}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    first_utt, first = members[0]
    decoys = {
        "Categorical": (f"{dialog}_e1_cat.txt", f"{first_utt.utt_id} :Neutral state; ()"),
        "Attribute": (f"{dialog}_e1_atr.txt", f"{first_utt.utt_id} :act 2; val 3; dom 2; ()"),
        "Self-evaluation": (f"{dialog}.txt", f"{first_utt.utt_id} :Neutral state; ()"),
    }
    for sub, (name, line) in decoys.items():
        (emo_dir / sub).mkdir(exist_ok=True)
        text = f"{line}\n{_summary_line(first_utt, first)}\n"
        (emo_dir / sub / name).write_text(text, encoding="utf-8")


def _write_transcripts(
    path: Path,
    members: List[Tuple[UtteranceId, IemocapUtterance]],
    non_utterance_lines: bool,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (utt, utterance) in enumerate(members):
        if utterance.transcript is not None:
            lines.append(
                f"{utt.utt_id} [{utterance.start:08.4f}-{utterance.end:08.4f}]: "
                f"{utterance.transcript}"
            )
        if non_utterance_lines and i == 0:
            # A back-channel turn of the other speaker, numbered like the release's.
            other = "M" if utt.gender == "F" else "F"
            lines.append(
                f"{utt.dialog}_{other}XX0 [{utterance.end:08.4f}-{utterance.end + 0.5:08.4f}]: "
                f"Mm-hmm."
            )
    if non_utterance_lines:
        lines.append("M: [LAUGHTER]")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
