"""Scores for speech emotion recognition and the ASR side: WA, UA, confusion matrix, WER.

Definitions (as in Feng et al. 2020 and the SER literature):

- confusion matrix: rows are the reference (ground-truth) class, columns the predicted class.
- WA, weighted accuracy: overall accuracy, correct / total; frequent classes weigh more.
- UA, unweighted accuracy: the mean of per-class recalls, so every class weighs the same.
  A class with no reference utterance has no recall; it is left out of the mean (rather than
  counted as 0 or 1), e.g. when scoring a subset that lacks a class.
- WER: word-level Levenshtein distance summed over utterances, divided by the number of
  reference words. Special tokens (``<sos/eos>``, ``<blank>``, ...) are removed from both
  sides first.

All rates are fractions in [0, 1] (WER may exceed 1); formatting as percent is the caller's.
This module imports only numpy so that scoring scripts start fast and need no torch.
"""

from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

DEFAULT_IGNORED_TOKENS: Tuple[str, ...] = ("<sos/eos>", "<blank>", "<sos>", "<eos>")


def confusion_matrix(
    refs: Sequence[str], hyps: Sequence[str], classes: Sequence[str]
) -> np.ndarray:
    """Count (reference, prediction) pairs: ``cm[i, j]`` = utterances of class i predicted as j.

    Raises:
        ValueError: on lists of different lengths, repeated classes, or a label (on either
            side) that is not one of ``classes``.
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    index = {label: i for i, label in enumerate(classes)}
    if len(index) != len(classes):
        raise ValueError(f"classes must be distinct, got {list(classes)}")
    cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for side, labels in (("reference", refs), ("hypothesis", hyps)):
        unknown = sorted(set(labels) - index.keys())
        if unknown:
            raise ValueError(
                f"{side} label(s) {unknown} not in classes {list(classes)}"
            )
    for ref, hyp in zip(refs, hyps):
        cm[index[ref], index[hyp]] += 1
    return cm


def _check_square(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {cm.shape}")
    if cm.sum() == 0:
        raise ValueError("the confusion matrix is empty: nothing to score")
    return cm


def weighted_accuracy(cm: np.ndarray) -> float:
    """Overall accuracy: trace / total."""
    cm = _check_square(cm)
    return float(np.trace(cm) / cm.sum())


def per_class_recall(cm: np.ndarray) -> List[Optional[float]]:
    """Recall of each class (row); ``None`` for a class with no reference utterance."""
    cm = _check_square(cm)
    return [
        float(cm[i, i] / row_total) if row_total > 0 else None
        for i, row_total in enumerate(cm.sum(axis=1))
    ]


def unweighted_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes that have at least one reference utterance."""
    recalls = [r for r in per_class_recall(cm) if r is not None]
    return float(np.mean(recalls))


def format_confusion_matrix(cm: np.ndarray, classes: Sequence[str]) -> str:
    """Render a confusion matrix as a Markdown table, one row per ground-truth class."""
    cm = np.asarray(cm)
    if cm.shape != (len(classes), len(classes)):
        raise ValueError(f"a {cm.shape} matrix does not fit {len(classes)} classes")
    lines = [
        "| ref \\ hyp | " + " | ".join(classes) + " |",
        "|---" * (len(classes) + 1) + "|",
    ]
    for label, row in zip(classes, cm):
        lines.append(f"| {label} | " + " | ".join(str(int(v)) for v in row) + " |")
    return "\n".join(lines)


def _edit_operations(ref: Sequence[str], hyp: Sequence[str]) -> Tuple[int, int, int]:
    """Substitutions, insertions and deletions of one minimum-cost alignment of hyp to ref.

    Where several alignments have the same cost, the backtrace prefers match/substitution,
    then deletion, then insertion, so the split into S/I/D is deterministic.
    """
    # dist[i][j]: edit distance between ref[:i] and hyp[:j].
    dist = [[0] * (len(hyp) + 1) for _ in range(len(ref) + 1)]
    for i in range(len(ref) + 1):
        dist[i][0] = i
    for j in range(len(hyp) + 1):
        dist[0][j] = j
    for i in range(1, len(ref) + 1):
        for j in range(1, len(hyp) + 1):
            dist[i][j] = min(
                dist[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]),
                dist[i - 1][j] + 1,
                dist[i][j - 1] + 1,
            )

    sub = ins = dele = 0
    i, j = len(ref), len(hyp)
    while i > 0 or j > 0:
        if i > 0 and j > 0 and dist[i][j] == dist[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            sub += ref[i - 1] != hyp[j - 1]
            i, j = i - 1, j - 1
        elif i > 0 and dist[i][j] == dist[i - 1][j] + 1:
            dele += 1
            i -= 1
        else:
            ins += 1
            j -= 1
    return sub, ins, dele


def word_error_rate(
    refs: Sequence[Sequence[str]],
    hyps: Sequence[Sequence[str]],
    ignore: Iterable[str] = DEFAULT_IGNORED_TOKENS,
) -> Dict[str, Optional[float]]:
    """Corpus WER over pairs of tokenised utterances.

    Returns:
        ``{"errors", "ref_words", "wer", "sub", "ins", "del"}``. An empty reference is
        allowed: its hypothesis words count as insertions. ``wer`` is ``None`` when the
        whole corpus has no reference word, since the rate is then undefined.

    Raises:
        ValueError: on lists of different lengths.
        TypeError: when an utterance is a plain string (split it into words first; a string
            would otherwise be scored character by character).
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    ignored = frozenset(ignore)
    sub = ins = dele = ref_words = 0
    for k, (ref, hyp) in enumerate(zip(refs, hyps)):
        if isinstance(ref, str) or isinstance(hyp, str):
            raise TypeError(f"utterance {k} is a string; pass a sequence of words")
        ref = [w for w in ref if w not in ignored]
        hyp = [w for w in hyp if w not in ignored]
        s, i, d = _edit_operations(ref, hyp)
        sub, ins, dele = sub + s, ins + i, dele + d
        ref_words += len(ref)
    errors = sub + ins + dele
    return {
        "errors": errors,
        "ref_words": ref_words,
        "wer": errors / ref_words if ref_words > 0 else None,
        "sub": sub,
        "ins": ins,
        "del": dele,
    }


def _check_same_ids(ref: Mapping[str, str], hyp: Mapping[str, str], what: str) -> None:
    """Refuse to score unless both sides cover exactly the same utterances."""
    missing = sorted(ref.keys() - hyp.keys())
    extra = sorted(hyp.keys() - ref.keys())
    if not missing and not extra:
        return

    def some(ids: List[str]) -> str:
        shown = ", ".join(ids[:10])
        return shown + (f", ... ({len(ids)} in all)" if len(ids) > 10 else "")

    problems = []
    if missing:
        problems.append(f"no hypothesis for {some(missing)}")
    if extra:
        problems.append(f"no reference for {some(extra)}")
    raise ValueError(f"{what}: " + "; ".join(problems))


@dataclass
class SERScores:
    """Emotion scores of one set of utterances (rates are fractions)."""

    n: int
    wa: float
    ua: float
    confusion_matrix: np.ndarray
    classes: List[str]
    per_class_recall: Dict[str, Optional[float]]


def score_emotions(
    ref: Mapping[str, str], hyp: Mapping[str, str], classes: Sequence[str]
) -> SERScores:
    """Score utterance-id -> label maps; both must hold exactly the same ids."""
    _check_same_ids(ref, hyp, "emotion")
    ids = sorted(ref)
    cm = confusion_matrix([ref[u] for u in ids], [hyp[u] for u in ids], classes)
    return SERScores(
        n=len(ids),
        wa=weighted_accuracy(cm),
        ua=unweighted_accuracy(cm),
        confusion_matrix=cm,
        classes=list(classes),
        per_class_recall=dict(zip(classes, per_class_recall(cm))),
    )


def score_transcripts(
    ref: Mapping[str, str],
    hyp: Mapping[str, str],
    ignore: Iterable[str] = DEFAULT_IGNORED_TOKENS,
) -> Dict[str, Optional[float]]:
    """WER of utterance-id -> transcript maps (words split on whitespace); same ids required."""
    _check_same_ids(ref, hyp, "transcript")
    ids = sorted(ref)
    return word_error_rate([ref[u].split() for u in ids], [hyp[u].split() for u in ids], ignore)
