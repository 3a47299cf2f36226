"""Paired significance tests: McNemar, paired bootstrap, the chance guard and the verdicts."""

import math
from fractions import Fraction

import numpy as np
import pytest

from espnet_asrser.significance import (
    ChanceTest,
    Difference,
    McNemar,
    approaches_verdict,
    beats_verdict,
    binomial_sf,
    chance_test,
    format_p,
    lower_verdict,
    mcnemar_exact,
    paired_bootstrap_accuracy,
    paired_bootstrap_wer,
)

CLASSES = ["ang", "hap", "neu", "sad"]


def correctness(both: int, only_a: int, only_b: int, neither: int):
    a = [1] * both + [1] * only_a + [0] * only_b + [0] * neither
    b = [1] * both + [0] * only_a + [1] * only_b + [0] * neither
    return a, b


# ----------------------------------------------------------------------------- McNemar
def test_mcnemar_known_value():
    # b = 10, c = 2: 2 * (C(12,0) + C(12,1) + C(12,2)) / 2**12 = 2 * 79 / 4096.
    result = mcnemar_exact(*correctness(30, 10, 2, 5))
    assert (result.only_a, result.only_b) == (10, 2)
    assert result.p == pytest.approx(0.0386, abs=5e-5)
    assert result.p == 2 * 79 / 4096
    # Symmetric in the two systems.
    assert mcnemar_exact(*correctness(30, 2, 10, 5)).p == result.p


@pytest.mark.parametrize("b", [0, 1, 7, 40])
def test_mcnemar_equal_discordant_counts_give_one(b):
    assert mcnemar_exact(*correctness(20, b, b, 3)).p == 1.0


def test_mcnemar_no_discordant_pair():
    result = mcnemar_exact([1, 1, 0], [1, 1, 0])
    assert result == McNemar(0, 0, 1.0)


def test_mcnemar_one_sided_extreme_and_large_n():
    assert mcnemar_exact(*correctness(0, 5, 0, 0)).p == 2 / 32
    # 3000 discordant pairs: 2**3000 overflows a float; the integer sum does not.
    b, c = 1560, 1440
    exact = Fraction(2 * sum(math.comb(b + c, i) for i in range(c + 1)), 2 ** (b + c))
    assert mcnemar_exact(*correctness(100, b, c, 10)).p == pytest.approx(float(exact), rel=1e-12)


def test_mcnemar_rejects_unequal_lengths():
    with pytest.raises(ValueError):
        mcnemar_exact([1, 0], [1])


@pytest.mark.parametrize("k,n,p", [(7, 10, 0.5), (20, 50, 0.3), (0, 5, 0.2), (6, 5, 0.2),
                                   (300, 1119, 0.25)])
def test_binomial_sf_matches_exact_sum(k, n, p):
    q = Fraction(p)
    exact = sum(math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(max(k, 0), n + 1))
    assert binomial_sf(k, n, p) == pytest.approx(float(exact), rel=1e-9, abs=1e-300)


# ----------------------------------------------------------------------------- bootstrap
def simulated(n: int, p_a: float, p_b: float, seed: int = 1):
    """Balanced references; A right with probability p_a, B with p_b, independently."""
    rng = np.random.default_rng(seed)
    refs = [CLASSES[i % 4] for i in range(n)]
    wrong = [CLASSES[(i + 1) % 4] for i in range(n)]

    def system(p):
        right = rng.random(n) < p
        return [r if ok else w for r, w, ok in zip(refs, wrong, right)]

    return refs, system(p_a), system(p_b)


def test_bootstrap_is_deterministic_and_seeded():
    refs, a, b = simulated(300, 0.6, 0.55)
    first = paired_bootstrap_accuracy(refs, a, b)
    assert paired_bootstrap_accuracy(refs, a, b) == first
    assert paired_bootstrap_accuracy(refs, a, b, seed=1)["ua"].low != first["ua"].low
    wer = paired_bootstrap_wer([1, 2, 0, 3] * 20, [2, 2, 1, 3] * 20, [4, 5, 3, 6] * 20)
    assert paired_bootstrap_wer([1, 2, 0, 3] * 20, [2, 2, 1, 3] * 20, [4, 5, 3, 6] * 20) == wer


def test_bootstrap_interval_contains_the_true_difference():
    # Population difference 0.10 in WA and (classes balanced, same rate in each) in UA.
    refs, a, b = simulated(2000, 0.7, 0.6)
    d = paired_bootstrap_accuracy(refs, a, b)
    for metric in ("wa", "ua"):
        assert d[metric].low < 0.10 < d[metric].high
        assert d[metric].low < d[metric].diff < d[metric].high
        assert d[metric].p < 0.05
    correct_a = np.array([x == r for x, r in zip(a, refs)])
    correct_b = np.array([x == r for x, r in zip(b, refs)])
    assert d["wa"].a == correct_a.mean() and d["wa"].b == correct_b.mean()


def test_bootstrap_matches_resampling_utterances():
    """The cell-count shortcut has the distribution of the plain utterance bootstrap."""
    refs, a, b = simulated(200, 0.6, 0.5, seed=3)
    d = paired_bootstrap_accuracy(refs, a, b, n_resamples=4000)
    rng = np.random.default_rng(7)
    ref = np.array([CLASSES.index(r) for r in refs])
    ca = np.array([x == r for x, r in zip(a, refs)])
    cb = np.array([x == r for x, r in zip(b, refs)])

    def ua(correct, idx):
        return np.mean([correct[idx][ref[idx] == c].mean() for c in range(4)])

    diffs = []
    for _ in range(4000):
        idx = rng.integers(0, len(refs), len(refs))
        diffs.append(ua(ca, idx) - ua(cb, idx))
    low, high = np.quantile(diffs, [0.025, 0.975])
    assert d["ua"].low == pytest.approx(low, abs=0.01)
    assert d["ua"].high == pytest.approx(high, abs=0.01)


def test_wer_bootstrap_matches_resampling_utterances():
    rng = np.random.default_rng(5)
    errors_a, errors_b = rng.integers(0, 4, 300), rng.integers(0, 5, 300)
    words = rng.integers(1, 12, 300)
    d = paired_bootstrap_wer(errors_a, errors_b, words, n_resamples=4000)
    idx = rng.integers(0, 300, size=(4000, 300))
    diffs = (errors_a[idx].sum(1) - errors_b[idx].sum(1)) / words[idx].sum(1)
    low, high = np.quantile(diffs, [0.025, 0.975])
    assert d.diff == pytest.approx((errors_a.sum() - errors_b.sum()) / words.sum())
    assert (d.low, d.high) == pytest.approx((low, high), abs=0.01)


def test_identical_systems_differ_by_nothing():
    refs, a, _ = simulated(100, 0.6, 0.6)
    d = paired_bootstrap_accuracy(refs, a, a)
    assert d["ua"] == Difference(d["ua"].a, d["ua"].a, 0.0, 0.0, 0.0, 1.0)
    assert beats_verdict(mcnemar_exact([1] * 100, [1] * 100), d["ua"]) == "not significant"


def test_bootstrap_wer():
    words = [10] * 100
    better = paired_bootstrap_wer([1] * 100, [3] * 100, words)
    assert better.diff == pytest.approx(-0.2) and better.p < 0.001
    assert lower_verdict(better) == "holds"
    same = paired_bootstrap_wer([2, 0] * 50, [2, 0] * 50, words)
    assert (same.diff, same.p) == (0.0, 1.0)
    assert lower_verdict(same) == "not significant"
    assert lower_verdict(paired_bootstrap_wer([3] * 100, [1] * 100, words)) == "fails"


# ----------------------------------------------------------------------------- chance
def test_one_class_predictor_is_at_chance():
    refs, _, _ = simulated(400, 0.5, 0.5)
    c = chance_test(refs, ["neu"] * len(refs))
    assert c.wa == 0.25 and c.majority_rate == 0.25 and c.ua == 0.25
    assert c.p_wa > 0.05 and c.p_ua > 0.05
    assert c.at_chance()
    # Unbalanced references, one class absent: always predicting the majority class is
    # still chance (UA, like metrics.py's, averages over the classes that occur).
    refs = ["neu"] * 60 + ["ang"] * 20 + ["hap"] * 20
    c = chance_test(refs, ["neu"] * 100)
    assert c.wa == 0.6 and c.majority_rate == 0.6
    assert c.ua == pytest.approx(1 / 3) and c.chance_ua == pytest.approx(1 / 3)
    assert c.at_chance()
    # A real model is not at chance.
    refs, a, _ = simulated(400, 0.6, 0.5)
    c = chance_test(refs, a)
    assert c.p_wa < 1e-10 and c.p_ua < 0.001 and not c.at_chance()


def test_at_chance_needs_both_metrics_at_chance():
    c = ChanceTest(wa=0.3, majority_rate=0.3, p_wa=0.5, ua=0.4, chance_ua=0.25, p_ua=0.001)
    assert not c.at_chance()
    assert ChanceTest(0.3, 0.3, 0.5, 0.26, 0.25, 0.3).at_chance()


# ----------------------------------------------------------------------------- verdicts
def diff(d: float, p: float) -> Difference:
    return Difference(0.5 + d, 0.5, d, d - 0.02, d + 0.02, p)


@pytest.mark.parametrize(
    "wa,ua,expected",
    [
        (McNemar(30, 10, 0.001), diff(0.05, 0.002), "holds"),
        (McNemar(10, 30, 0.001), diff(-0.05, 0.002), "fails"),
        (McNemar(12, 10, 0.8), diff(0.01, 0.6), "not significant"),
        (McNemar(30, 10, 0.001), diff(0.01, 0.6), "mixed (WA: holds, UA: not significant)"),
        (McNemar(12, 10, 0.8), diff(-0.05, 0.01), "mixed (WA: not significant, UA: fails)"),
        (McNemar(30, 10, 0.001), diff(-0.05, 0.01), "mixed (WA: holds, UA: fails)"),
    ],
)
def test_beats_verdict(wa, ua, expected):
    assert beats_verdict(wa, ua) == expected


def test_approaches_verdict():
    close = Difference(0.55, 0.56, -0.01, -0.04, 0.02, 0.5)
    wide = Difference(0.55, 0.56, -0.01, -0.07, 0.05, 0.6)
    ns = McNemar(10, 12, 0.83)
    assert approaches_verdict(ns, close, diff(0.0, 0.9)) == "holds"
    assert approaches_verdict(ns, wide, diff(0.0, 0.9)) == "inconclusive"
    # B (combined) significantly better in WA, or in UA: fails.
    assert approaches_verdict(McNemar(5, 30, 0.001), close, diff(0.0, 0.9)) == "fails"
    assert approaches_verdict(ns, close, diff(-0.03, 0.01)) == "fails"
    # A significantly better: it does not merely approach; inconclusive.
    assert approaches_verdict(McNemar(30, 5, 0.001), close, diff(0.0, 0.9)) == "inconclusive"


def test_format_p():
    assert format_p(0.0002) == "p < 0.001"
    assert format_p(0.03857) == "p = 0.039"
    assert format_p(1.0) == "p = 1.000"
