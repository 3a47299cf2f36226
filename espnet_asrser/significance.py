"""Paired significance tests for comparing two systems on the same utterances.

Two SER systems scored on the same test utterances are compared utterance by utterance,
not as two independent proportions: most utterances are right (or wrong) for both, and
only the ones where they disagree carry evidence about which is better.

- WA: exact two-sided McNemar test, a binomial test on the discordant utterances (right
  for one system, wrong for the other) with success probability 1/2.
- UA (and WA, WER): paired bootstrap over utterances. Each resample draws n utterances
  with replacement and scores both systems on the same draw; the 95 % percentile interval
  of the difference and a two-sided p-value (twice the smaller share of resamples on
  either side of 0, with the +1 correction of Davison and Hinkley) are reported.
- Chance: WA against the majority-class rate of the references (one-sided exact
  binomial test) and UA against 1 / the number of reference classes, the UA of any
  prediction that ignores the input (one-sided bootstrap: the share of resamples whose UA
  is not above it).

The bootstrap has a fixed seed and a fixed number of resamples, so a report computed
twice from the same files is the same. numpy only: no torch, no scipy.
"""

import math
from dataclasses import dataclass
from typing import Dict, Sequence

import numpy as np

ALPHA = 0.05
N_RESAMPLES = 10_000
SEED = 0
# A UA equal to chance up to float rounding counts as "at chance".
_TOLERANCE = 1e-12


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test of two systems' per-utterance correctness."""

    only_a: int  # utterances system A gets right and B wrong
    only_b: int  # utterances system B gets right and A wrong
    p: float  # two-sided


@dataclass(frozen=True)
class Difference:
    """A paired-bootstrap comparison: ``diff = a - b`` with its 95 % percentile interval."""

    a: float
    b: float
    diff: float
    low: float
    high: float
    p: float  # two-sided, H0: no difference


@dataclass(frozen=True)
class ChanceTest:
    """Whether one system's WA and UA are above what ignoring the input gives."""

    wa: float
    majority_rate: float  # WA of always predicting the most frequent reference class
    p_wa: float  # one-sided exact binomial, H0: WA = majority_rate
    ua: float
    chance_ua: float  # 1 / the number of reference classes
    p_ua: float  # one-sided bootstrap, H0: UA = chance_ua

    def at_chance(self, alpha: float = ALPHA) -> bool:
        """Not significantly above chance on either metric."""
        return self.p_wa >= alpha and self.p_ua >= alpha


# ----------------------------------------------------------------------------- binomial
def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (exact up to rounding)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    log_n = math.lgamma(n + 1)
    terms = [
        log_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> McNemar:
    """Exact two-sided McNemar test: with b utterances right only for A and c right only
    for B, p = min(1, 2 P(X <= min(b, c))), X ~ Binomial(b + c, 1/2); p = 1 when the
    systems never disagree. Computed with integers, so exact for any n."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"correctness vectors of shapes {a.shape} and {b.shape}")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = only_a + only_b
    if discordant == 0:
        return McNemar(0, 0, 1.0)
    tail = sum(math.comb(discordant, i) for i in range(min(only_a, only_b) + 1))
    # Integer true division is correctly rounded even where 2**n overflows a float.
    return McNemar(only_a, only_b, min(1.0, 2 * tail / 2**discordant))


# ----------------------------------------------------------------------------- bootstrap
def _codes(refs: Sequence[str], *hyps: Sequence[str]):
    """Reference class indices and per-system correctness, checked for equal lengths."""
    refs = list(refs)
    for h in hyps:
        if len(h) != len(refs):
            raise ValueError(f"{len(refs)} references but {len(h)} hypotheses")
    if not refs:
        raise ValueError("no utterances to compare")
    classes = sorted(set(refs))
    index = {c: i for i, c in enumerate(classes)}
    ref_idx = np.array([index[r] for r in refs], dtype=np.int64)
    correct = [np.array([x == y for x, y in zip(refs, h)], dtype=bool) for h in hyps]
    return ref_idx, len(classes), correct


def _resampled_cell_counts(
    cells: np.ndarray, n_cells: int, n_resamples: int, seed: int
) -> np.ndarray:
    """Bootstrap counts of each cell (a category of utterance), shape (n_resamples, n_cells).

    Drawing n utterances with replacement gives each utterance a Multinomial(n, 1/n)
    count; summed over the utterances of a cell, the cell counts are Multinomial(n,
    share of each cell). A statistic that depends only on the cell counts (WA, UA, a
    corpus WER) so has exactly the distribution of the utterance bootstrap, at the cost
    of n_cells binomial draws per resample instead of n.
    """
    observed = np.bincount(cells, minlength=n_cells)
    rng = np.random.default_rng(seed)
    return rng.multinomial(len(cells), observed / observed.sum(), size=n_resamples)


def _wa_ua(correct: np.ndarray, totals: np.ndarray):
    """WA and UA of resampled per-class counts (rows: resamples, columns: classes);
    a class with no utterance in a resample is left out of its UA, as in metrics.py."""
    wa = correct.sum(axis=1) / totals.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(totals > 0, correct / np.maximum(totals, 1), np.nan)
    present = totals > 0
    ua = np.nansum(recall, axis=1) / present.sum(axis=1)
    return wa, ua


def _difference(a: float, b: float, resampled: np.ndarray) -> Difference:
    low, high = np.quantile(resampled, [0.025, 0.975])
    n = len(resampled)
    below = (1 + int(np.sum(resampled <= 0))) / (n + 1)
    above = (1 + int(np.sum(resampled >= 0))) / (n + 1)
    return Difference(a, b, a - b, float(low), float(high), min(1.0, 2 * min(below, above)))


def paired_bootstrap_accuracy(
    refs: Sequence[str],
    hyps_a: Sequence[str],
    hyps_b: Sequence[str],
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Dict[str, Difference]:
    """``{"wa": Difference, "ua": Difference}`` of system A minus system B on the same
    utterances (label sequences in the same utterance order)."""
    ref_idx, n_classes, (ca, cb) = _codes(refs, hyps_a, hyps_b)
    # Cell of an utterance: (reference class, A right, B right).
    cells = ref_idx * 4 + 2 * ca + cb
    counts = _resampled_cell_counts(cells, 4 * n_classes, n_resamples, seed)
    counts = counts.reshape(n_resamples, n_classes, 4)  # last axis: (A, B) = 00 01 10 11
    totals = counts.sum(axis=2)
    wa_a, ua_a = _wa_ua(counts[:, :, 2] + counts[:, :, 3], totals)
    wa_b, ua_b = _wa_ua(counts[:, :, 1] + counts[:, :, 3], totals)
    observed = np.bincount(cells, minlength=4 * n_classes).reshape(1, n_classes, 4)
    (oa_wa,), (oa_ua,) = _wa_ua(observed[:, :, 2] + observed[:, :, 3], observed.sum(axis=2))
    (ob_wa,), (ob_ua,) = _wa_ua(observed[:, :, 1] + observed[:, :, 3], observed.sum(axis=2))
    return {
        "wa": _difference(float(oa_wa), float(ob_wa), wa_a - wa_b),
        "ua": _difference(float(oa_ua), float(ob_ua), ua_a - ua_b),
    }


def paired_bootstrap_wer(
    errors_a: Sequence[int],
    errors_b: Sequence[int],
    ref_words: Sequence[int],
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Difference:
    """Corpus WER of A minus that of B (sum of errors / sum of reference words), both
    scored against the same references; resamples utterances."""
    table = np.stack(
        [np.asarray(errors_a), np.asarray(errors_b), np.asarray(ref_words)], axis=1
    ).astype(np.int64)
    if table.ndim != 2 or len(table) == 0:
        raise ValueError("per-utterance errors and reference words of equal length needed")
    if table[:, 2].sum() == 0:
        raise ValueError("no reference words: the WER is undefined")
    # Utterances with the same (errors of A, errors of B, words) are one cell: the sums
    # depend only on the cell counts (see _resampled_cell_counts).
    values, cells = np.unique(table, axis=0, return_inverse=True)
    counts = _resampled_cell_counts(cells.ravel(), len(values), n_resamples, seed)
    sums = counts @ values
    with np.errstate(invalid="ignore", divide="ignore"):
        resampled = (sums[:, 0] - sums[:, 1]) / sums[:, 2]
    # A resample with no reference word (only possible for tiny n) has no WER.
    resampled = resampled[np.isfinite(resampled)]
    words = float(table[:, 2].sum())
    return _difference(
        float(table[:, 0].sum()) / words, float(table[:, 1].sum()) / words, resampled
    )


# ----------------------------------------------------------------------------- chance
def chance_test(
    refs: Sequence[str],
    hyps: Sequence[str],
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> ChanceTest:
    """Test one system against chance.

    WA against the majority-class rate of ``refs``: one-sided exact binomial test of the
    number of correct utterances, H0 success probability = that rate. UA against
    1 / the number of classes in ``refs`` (UA's own denominator, metrics.py), which is
    the UA of any prediction independent of the input: one-sided bootstrap over
    utterances, p = share of resamples (with +1 correction) whose UA is at most that.
    """
    ref_idx, present, (correct,) = _codes(refs, hyps)
    n = len(ref_idx)
    majority = float(np.bincount(ref_idx).max() / n)
    cells = ref_idx * 2 + correct
    counts = _resampled_cell_counts(cells, 2 * present, n_resamples, seed)
    counts = counts.reshape(n_resamples, present, 2)
    _, ua_resampled = _wa_ua(counts[:, :, 1], counts.sum(axis=2))
    observed = np.bincount(cells, minlength=2 * present).reshape(1, present, 2)
    (wa,), (ua,) = _wa_ua(observed[:, :, 1], observed.sum(axis=2))
    chance = 1.0 / present
    p_ua = (1 + int(np.sum(ua_resampled <= chance + _TOLERANCE))) / (n_resamples + 1)
    return ChanceTest(
        wa=float(wa),
        majority_rate=majority,
        p_wa=binomial_sf(int(correct.sum()), n, majority),
        ua=float(ua),
        chance_ua=chance,
        p_ua=p_ua,
    )


# ----------------------------------------------------------------------------- verdicts
def _direction(sign: float, p: float, alpha: float) -> str:
    if p >= alpha or sign == 0:
        return "not significant"
    return "holds" if sign > 0 else "fails"


def beats_verdict(wa: McNemar, ua: Difference, alpha: float = ALPHA) -> str:
    """Verdict on "A beats B": "holds" when A is significantly better in WA (McNemar) and
    in UA (bootstrap), "fails" when B is in both, "not significant" when neither
    difference is significant, else "mixed (WA: ..., UA: ...)" with each metric's word."""
    on_wa = _direction(wa.only_a - wa.only_b, wa.p, alpha)
    on_ua = _direction(ua.diff, ua.p, alpha)
    return on_wa if on_wa == on_ua else f"mixed (WA: {on_wa}, UA: {on_ua})"


def approaches_verdict(
    wa: McNemar,
    wa_diff: Difference,
    ua: Difference,
    margin: float = 0.05,
    alpha: float = ALPHA,
) -> str:
    """Verdict on "A approaches B" (A is the challenger): "holds" when neither the WA
    (McNemar) nor the UA (bootstrap) difference is significant and the 95 % interval of
    the WA difference lies within +-``margin`` (an equivalence margin); "fails" when B is
    significantly better in WA or in UA; otherwise "inconclusive"."""
    on_wa = _direction(wa.only_a - wa.only_b, wa.p, alpha)
    on_ua = _direction(ua.diff, ua.p, alpha)
    if "fails" in (on_wa, on_ua):
        return "fails"
    if (on_wa, on_ua) == ("not significant",) * 2 and (
        -margin <= wa_diff.low and wa_diff.high <= margin
    ):
        return "holds"
    return "inconclusive"


def lower_verdict(diff: Difference, alpha: float = ALPHA) -> str:
    """Verdict on "A is lower than B" (e.g. a WER): "holds", "fails" or "not significant"."""
    return _direction(-diff.diff, diff.p, alpha)


def format_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
