"""The SER systems the recipe trains and scores, and the paper's numbers for them.

A *trained* system is one SER model per fold (``audio``, ``text``, ``combined``,
``asrser`` and the ASR-SER ablations ``asrser_<name>``). A *scored* system is a row of the
paper's tables: a trained model plus the transcripts it reads at test time, so
``text_asr`` is the ``text`` model reading the ASR model's transcripts.

The paper reports three settings: Table 1 (all utterances, leave one session out),
Table 4 (improvised utterances only; the paper gives only its ASR-SER row) and Table 5
(speaker-dependent random split). :func:`paper_table` picks the one of a run.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

BASELINES = ("audio", "text", "combined")
ASRSER = "asrser"


@dataclass(frozen=True)
class System:
    key: str  # results directory name
    row: str  # the paper's row name
    model: str  # the trained system whose models it runs (audio, text, ..., asrser_<name>)
    transcripts: Optional[str]  # None, "reference" or "asr" (the ASR model's, zero-shot)

    @property
    def mode(self) -> str:
        """The SER model's ``--mode`` (ablations are ASR-SER models)."""
        return ASRSER if self.model.startswith(ASRSER) else self.model

    @property
    def has_asr_text(self) -> bool:
        """Whether the system's transcripts (and so a WER) come from an ASR model."""
        return self.transcripts == "asr" or self.mode == ASRSER


TABLE_SYSTEMS = (
    System("audio", "Audio-based", "audio", None),
    System("text", "Text-based", "text", "reference"),
    System("text_asr", "Text-based (ASR transcripts)", "text", "asr"),
    System("combined", "Combined", "combined", "reference"),
    System("combined_asr", "Combined (ASR transcripts)", "combined", "asr"),
    System("asrser", "ASR-SER", ASRSER, None),
)


def ablation_system(name: str, label: str) -> System:
    """The system of an ablation config ``train_asrser_<name>.yaml``."""
    return System(f"{ASRSER}_{name}", label, f"{ASRSER}_{name}", None)


def trained_systems(ablations: Sequence[str]) -> List[str]:
    """Every trained system: the baselines, ASR-SER, then the ablations (their keys)."""
    return [*BASELINES, ASRSER, *ablations]


@dataclass(frozen=True)
class PaperTable:
    number: int
    title: str
    # key -> (WA, UA, WER) in percent; None where the paper gives no number.
    numbers: Dict[str, Tuple[Optional[float], Optional[float], Optional[float]]]

    def row(self, key: str) -> Tuple[Optional[float], Optional[float], Optional[float]]:
        return self.numbers.get(key, (None, None, None))


# Feng, Ueno and Kawahara (Interspeech 2020), Tables 1, 4 and 5.
_TABLES = {
    ("all", "speaker_independent"): PaperTable(
        1,
        "all utterances up to 20 s, leave one session out",
        {
            "audio": (55.7, 57.0, None),
            "text": (63.7, 63.6, None),
            "text_asr": (51.0, 50.7, 40.7),
            "combined": (68.9, 69.4, None),
            "combined_asr": (60.1, 60.7, 40.7),
            "asrser": (68.6, 69.7, 35.7),
        },
    ),
    ("improvised", "speaker_independent"): PaperTable(
        4,
        "improvised utterances only, leave one session out; the paper gives only the "
        "ASR-SER row",
        {"asrser": (69.7, 63.1, 54.5)},
    ),
    ("all", "speaker_dependent"): PaperTable(
        5,
        "all utterances, speaker-dependent random split",
        {
            "audio": (66.8, 67.0, None),
            "text": (66.5, 66.6, None),
            "text_asr": (52.4, 52.1, 40.7),
            "combined": (73.2, 73.6, None),
            "combined_asr": (65.6, 66.0, 40.7),
            "asrser": (75.5, 76.4, 29.8),
        },
    ),
}


def paper_table(subset: str, protocol: str) -> Optional[PaperTable]:
    """The paper's table for a run's subset and protocol, or None where it has none
    (e.g. improvised utterances with a speaker-dependent split)."""
    return _TABLES.get((subset, protocol))
