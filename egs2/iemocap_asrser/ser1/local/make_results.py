#!/usr/bin/env python3
"""Usage: local/make_results.py RUN_OPTIONS [--oracle DIR/oracle.json] [--out FILE]

RESULTS.md of one run (one IEMOCAP setting, one ASR model) from the score files of the
ASR decoding and of ``local/evaluate.py`` and the training records of the experiments,
nothing else. RUN_OPTIONS are those of :mod:`espnet_asrser.recipe.layout` (the stage
script's run_opts), which names every directory read; ``--out`` defaults to
``<results_dir>/RESULTS.md``.

* the paper's table for the run's setting (:func:`espnet_asrser.recipe.systems.paper_table`:
  Table 1 for all utterances with leave-one-session-out, Table 4 for the improvised
  subset, Table 5 for the speaker-dependent split), pooled over the folds (all test
  hypotheses scored together) and per fold, beside the paper's numbers;
* the paper's qualitative claims (combined beats each modality alone, ASR transcripts
  hurt, ASR-SER recovers, joint fine-tuning lowers the WER), each decided by paired tests
  over the pooled test utterances (``espnet_asrser.significance``: McNemar for WA, paired
  bootstrap for UA and WER) after checking that each model is above chance, and, for
  generated corpora (``--oracle``), the oracle accuracies they were designed with;
* the ASR-SER ablations of the run, shown and tested beside the ASR-SER row;
* the best train and valid accuracy of every model and fold, from ESPnet's reporter
  record in ``checkpoint.pth``, so that underfitting shows;
* the ASR-SER confusion matrix (the paper's Table 3: rows are the reference, columns
  the prediction, counts);
* links to the pictures that ``local/plot_results.py`` writes into the results directory:
  the pooled confusion matrix of every system and WA/UA bars per fold;
* the ASR results (LibriSpeech test sets, IEMOCAP zero-shot), the IEMOCAP OOV rate, and
  the listening check of an ASR model (``<decode_dir>/listening.json``, optional: its
  word accuracy with each utterance's own audio and with shuffled audio);
* how the numbers were obtained: label set, data selection, protocol and folds (counted
  on the tables that were scored), model selection (validation set only), configs, and
  the software that ran (Python, torch, ESPnet versions, the git commit of espnet_asrser
  and whether the tree differed from it).

A result directory ``<results_dir>/<system>`` holds ``fold<k>.json`` and ``pooled.json``
(written by ``espnet_asrser.bin.asrser_score``) and the pooled per-utterance files they
were scored from: ``pooled/emotion`` and ``pooled/ref/emotion`` (and ``pooled/text``,
``pooled/ref/text`` where the system has transcripts). Every number is read from these
files; a missing file is an error, and so are per-utterance files that do not reproduce
their ``pooled.json``, so a table never shows a number that was not computed. Only the
training records and the listening check may be absent; the report then says so.
"""

import argparse
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

import espnet_asrser
from espnet_asrser import significance as sig
from espnet_asrser.metrics import score_emotions, word_error_rate
from espnet_asrser.recipe.layout import IEMOCAP_PREFIX, Layout, LayoutError, add_run_options
from espnet_asrser.recipe.systems import TABLE_SYSTEMS, PaperTable, paper_table
from espnet_asrser.utils.kaldi_table import read_table

# local/plot_results.py, beside this program (on sys.path already when it runs as a script).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from plot_results import PlotError, write_figures  # noqa: E402

ROW_NAMES = {system.key: system.row for system in TABLE_SYSTEMS}
# Table 3 of the paper orders the classes so; names for the confusion matrix.
PAPER_ORDER = ["hap", "sad", "neu", "ang"]
CLASS_NAMES = {"hap": "Happy", "sad": "Sad", "neu": "Neutral", "ang": "Angry"}
BASELINE_MODES = ("audio", "text", "combined")
# Our own A2W model's key; its rows keep the paper's names.
A2W_KEY = "a2w"
# "ASR-SER approaches combined": the 95 % interval of the WA difference must lie within
# this many (fractional) points of 0. Our choice; the paper states no margin.
EQUIVALENCE_MARGIN = 0.05
# Fields of an ASR model's optional listening check, <decode_dir>/listening.json.
LISTENING_FIELDS = {
    "valid_set": str, "n": int, "acc_own_audio": float, "acc_shuffled_audio": float,
    "seed": int, "note": str,
}


class ResultsError(Exception):
    """An expected score file or experiment output is missing or malformed."""


def load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise ResultsError(f"{path} is missing: run the stage that writes it") from None
    except ValueError as e:
        raise ResultsError(f"{path} is not valid JSON: {e}") from None


def load_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    except OSError:
        raise ResultsError(f"{path} is missing") from None


def pct(x: Optional[float]) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def paper_value(x: Optional[float]) -> str:
    return "–" if x is None else f"{x:.1f}"


def wer_of(score: dict) -> Optional[float]:
    return None if score.get("wer") is None else score["wer"]["wer"]


def read_ids(path: Path) -> List[str]:
    return [line.split(maxsplit=1)[0] for line in path.read_text(encoding="utf-8").splitlines()]


def read_values(path: Path) -> List[str]:
    return [
        (line.split(maxsplit=1) + [""])[1]
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


def points(x: float) -> float:
    """A rate in points, rounded as printed, without a sign on zero ("-0.0")."""
    return round(100 * x, 1) + 0.0


def signed(x: float) -> str:
    """A difference of rates in points, with its sign."""
    return f"{points(x):+.1f}"


def interval(d: sig.Difference) -> str:
    return f"[{points(d.low):.1f}, {points(d.high):.1f}]"


def p_value(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


# ----------------------------------------------------------------------------- evidence
@dataclass
class Pooled:
    """One system's pooled test utterances, in utterance-id order."""

    score: dict  # its pooled.json
    ids: List[str]
    refs: List[str]
    hyps: List[str]
    ref_texts: Optional[List[str]]  # None when the system has no transcripts
    errors: Optional[List[int]]  # word errors per utterance
    ref_words: Optional[List[int]]


class Evidence:
    """The per-utterance pooled results of the result directories, each read once and
    checked against its ``pooled.json``, and the paired tests between them."""

    def __init__(self, results: Path):
        self.results = results
        self._pooled: Dict[str, Pooled] = {}
        self._chance: Dict[str, sig.ChanceTest] = {}
        self._compared: Dict[
            Tuple[str, str], Tuple[sig.McNemar, Dict[str, sig.Difference]]
        ] = {}

    def _read(self, path: Path) -> Dict[str, str]:
        try:
            return read_table(
                path, allow_empty_value=True, check_sorted=False, check_final_newline=False
            )
        except OSError:
            raise ResultsError(
                f"{path} is missing: the stage that scores the pooled results writes it"
            ) from None
        except ValueError as e:
            raise ResultsError(str(e)) from None

    def pooled(self, key: str) -> Pooled:
        if key in self._pooled:
            return self._pooled[key]
        score = load_json(self.results / key / "pooled.json")
        directory = self.results / key / "pooled"
        ref, hyp = self._read(directory / "ref" / "emotion"), self._read(directory / "emotion")
        try:
            scores = score_emotions(ref, hyp, score["classes"])
        except ValueError as e:
            raise ResultsError(f"{directory}: {e}") from None
        if scores.n != score["n"] or max(
            abs(scores.wa - score["wa"]), abs(scores.ua - score["ua"])
        ) > 1e-9:
            raise ResultsError(
                f"{directory}/emotion gives n={scores.n}, WA {pct(scores.wa)}, UA "
                f"{pct(scores.ua)}, but {key}/pooled.json says n={score['n']}, WA "
                f"{pct(score['wa'])}, UA {pct(score['ua'])}: one of them is stale; score "
                "the pooled results again"
            )
        ids = sorted(ref)
        pooled = Pooled(score, ids, [ref[u] for u in ids], [hyp[u] for u in ids], None, None,
                        None)
        if (directory / "text").is_file() and (directory / "ref" / "text").is_file():
            self._add_transcripts(key, pooled, directory)
        self._pooled[key] = pooled
        return pooled

    def _add_transcripts(self, key: str, pooled: Pooled, directory: Path) -> None:
        ref, hyp = self._read(directory / "ref" / "text"), self._read(directory / "text")
        if ref.keys() != set(pooled.ids) or hyp.keys() != set(pooled.ids):
            raise ResultsError(f"{directory}: text, ref/text and emotion list different ids")
        # The WER of metrics.py (that of pooled.json), one utterance at a time.
        per_utt = [word_error_rate([ref[u].split()], [hyp[u].split()]) for u in pooled.ids]
        pooled.ref_texts = [ref[u] for u in pooled.ids]
        pooled.errors = [w["errors"] for w in per_utt]
        pooled.ref_words = [w["ref_words"] for w in per_utt]
        wer = pooled.score.get("wer")
        if wer is None or wer["errors"] != sum(pooled.errors):
            raise ResultsError(
                f"{directory}/text gives {sum(pooled.errors)} word errors but "
                f"{key}/pooled.json says {None if wer is None else wer['errors']}: one of "
                "them is stale; score the pooled results again"
            )

    def chance(self, key: str) -> sig.ChanceTest:
        if key not in self._chance:
            p = self.pooled(key)
            self._chance[key] = sig.chance_test(p.refs, p.hyps)
        return self._chance[key]

    def _paired(self, a: str, b: str) -> Tuple[Pooled, Pooled]:
        pa, pb = self.pooled(a), self.pooled(b)
        if pa.ids != pb.ids or pa.refs != pb.refs:
            raise ResultsError(
                f"{a} and {b} were not scored on the same utterances with the same "
                "references: a paired test needs both"
            )
        return pa, pb

    def compare(self, a: str, b: str) -> Tuple[sig.McNemar, Dict[str, sig.Difference]]:
        """McNemar on WA, and the paired bootstrap of WA and UA, of ``a`` minus ``b``."""
        if (a, b) not in self._compared:
            pa, pb = self._paired(a, b)
            mcnemar = sig.mcnemar_exact(
                [h == r for h, r in zip(pa.hyps, pa.refs)],
                [h == r for h, r in zip(pb.hyps, pb.refs)],
            )
            self._compared[a, b] = mcnemar, sig.paired_bootstrap_accuracy(
                pa.refs, pa.hyps, pb.hyps
            )
        return self._compared[a, b]

    def wer_difference(self, a: str, b: str) -> Optional[sig.Difference]:
        """Paired bootstrap of the corpus WER of ``a`` minus that of ``b``, or None when
        either lacks per-utterance transcripts."""
        pa, pb = self._paired(a, b)
        if pa.errors is None or pb.errors is None:
            return None
        if pa.ref_texts != pb.ref_texts:
            raise ResultsError(f"{a} and {b} were scored against different reference texts")
        return sig.paired_bootstrap_wer(pa.errors, pb.errors, pa.ref_words)

    def untestable(self, names: Dict[str, str], *keys: str) -> Optional[str]:
        """"not testable: <model> at chance" when a model in a claim is at chance."""
        at_chance = [names[k] for k in keys if self.chance(k).at_chance()]
        return f"not testable: {' and '.join(at_chance)} at chance" if at_chance else None

    def beats(self, a: str, b: str, names: Dict[str, str]) -> Tuple[str, str]:
        """Verdict and numbers for "a beats b"."""
        mcnemar, d = self.compare(a, b)
        wa, ua = d["wa"], d["ua"]
        guard = self.untestable(names, a, b)
        if guard:
            return guard, f"WA {pct(wa.a)} vs {pct(wa.b)}; UA {pct(ua.a)} vs {pct(ua.b)}"
        return sig.beats_verdict(mcnemar, ua), (
            f"WA {pct(wa.a)} vs {pct(wa.b)}, McNemar {sig.format_p(mcnemar.p)}; UA "
            f"{pct(ua.a)} vs {pct(ua.b)}, diff {signed(ua.diff)} {interval(ua)}, "
            f"{sig.format_p(ua.p)}"
        )


# ----------------------------------------------------------------------------- ASR models
def run_asr_model(layout: Layout) -> dict:
    """The run's ASR model, as the sections below describe it."""
    return {
        "key": layout.asr_key,
        "label": layout.asr_label,
        "suffix": "",
        "folds": " ".join(layout.folds),
        "source": layout.pretrained.spec if layout.pretrained else "",
        "asr_exp": layout.asr_exp,
        "asr_config": f"{layout.asr_exp}/config.yaml",
        "asr_model": layout.asr_model_file,
        "decode_dir": layout.asr_decode_dir,
        "decode_config": layout.opts.decode_config,
        "asrser_exp": layout.ser_exp("asrser", "{k}"),
    }


def labelled(models: List[dict]) -> bool:
    """Rows name their ASR model unless our A2W model is the only one."""
    return not (len(models) == 1 and models[0]["key"] == A2W_KEY)


def table_rows(
    models: List[dict], paper: Optional[PaperTable]
) -> List[Tuple[str, str, str, dict, tuple]]:
    """(result key, row name, SER mode, ASR model or {}, paper numbers) in the paper's
    order: the rows that depend on the ASR model once per model."""
    rows = []
    for system in TABLE_SYSTEMS:
        key, row, mode = system.key, system.row, system.mode
        numbers = paper.row(key) if paper else (None, None, None)
        if key in BASELINE_MODES:
            rows.append((key, row, mode, {}, tuple(numbers)))
            continue
        for model in models:
            name = f"{row} [{model['label']}]" if labelled(models) else row
            rows.append((key + model["suffix"], name, mode, model, tuple(numbers)))
    return rows


# ----------------------------------------------------------------------------- sections
def results_table(
    results: Path, folds: List[str], models: List[dict], paper: Optional[PaperTable]
) -> List[str]:
    rows = table_rows(models, paper)
    pooled = {key: load_json(results / key / "pooled.json") for key, *_ in rows}
    n = pooled["audio"]["n"]
    title = f"Table {paper.number}" if paper else "SER results"
    lines = [
        f"## {title}: SER results, pooled over folds {' '.join(folds)} (n = {n})",
        "",
        "| Model | WA (%) | UA (%) | WER (%) | paper WA | paper UA | paper WER |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, row, _, _, (p_wa, p_ua, p_wer) in rows:
        s = pooled[key]
        lines.append(
            f"| {row} | {pct(s['wa'])} | {pct(s['ua'])} | {pct(wer_of(s))} | "
            f"{paper_value(p_wa)} | {paper_value(p_ua)} | {paper_value(p_wer)} |"
        )
    asr = "the row's ASR model's" if labelled(models) else "the pretrained A2W model's"
    lines += [
        "",
        "WA: overall accuracy; UA: mean of the per-class recalls. Pooled: the hypotheses of",
        "all test sessions are scored together (not the mean of the fold scores). WER is",
        f"that of the transcripts the model used: {asr} (zero-shot) for",
        "the ASR-transcript rows, the jointly fine-tuned model's own beam search (width 4,",
        "audio only) for ASR-SER. The text and combined models are trained on reference",
        "transcripts in both cases. "
        + (f"The paper columns are its Table {paper.number} ({paper.title})."
           if paper else "The paper reports no table for this setting."),
        "",
    ]
    if labelled(models):
        lines += [
            "Rows in brackets differ only in the ASR model they use: "
            + "; ".join(describe_model(m) for m in models)
            + ". A pretrained model's hypotheses are its detokenised words, normalised like "
            "the references (upper case, no punctuation) before scoring and before the "
            "text models read them; its ASR-SER model reads waveforms, its ASR part with "
            "the pretrained frontend and tokenizer, its acoustic branch with the same log-mel "
            "as the audio baseline. The paper's columns are for its A2W model.",
            "",
        ]
    return lines


def chance_section(evidence: Evidence, rows: List[Tuple[str, str]]) -> List[str]:
    """The chance check of every (key, row name): WA against the majority class, UA
    against 1 / the number of classes."""
    lines = [
        "| Model | WA (%) | majority class (%) | p (WA) | UA (%) | 1/classes (%) | p (UA) | "
        "above chance |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, name in rows:
        c = evidence.chance(key)
        above = "no (at chance)" if c.at_chance() else ", ".join(
            m for m, p in (("WA", c.p_wa), ("UA", c.p_ua)) if p < sig.ALPHA
        )
        lines.append(
            f"| {name} | {pct(c.wa)} | {pct(c.majority_rate)} | {p_value(c.p_wa)} | "
            f"{pct(c.ua)} | {pct(c.chance_ua)} | {p_value(c.p_ua)} | {above} |"
        )
    return lines + [""]


def paper_pair(paper: Optional[PaperTable], a: str, b: str) -> str:
    """The paper's WA/UA of systems a and b, as "WA/UA vs WA/UA" ("–" where it has none)."""

    def one(key: str) -> str:
        wa, ua, _ = paper.row(key) if paper else (None, None, None)
        return "–" if wa is None else f"{wa:.1f}/{ua:.1f}"

    return f"{one(a)} vs {one(b)}"


def claims_section(
    results: Path, models: List[dict], oracle: Optional[dict], evidence: Evidence,
    paper: Optional[PaperTable],
) -> List[str]:
    """The paper's qualitative claims, each decided by paired tests over the pooled test
    utterances (``espnet_asrser.significance``; the rules are in the text printed here)."""
    rows = table_rows(models, paper)
    names = {key: row for key, row, *_ in rows}
    n = load_json(results / "audio" / "pooled.json")["n"]
    alpha = f"{sig.ALPHA:g}"
    lines = [
        "## The paper's claims on these data",
        "",
        f"Each model against chance first, on the pooled test utterances (n = {n}): WA by a "
        "one-sided exact binomial test against the rate of the most frequent reference "
        "class, UA by a one-sided bootstrap over utterances against 1/number of classes "
        f"(the UA of any prediction that ignores the input; {sig.N_RESAMPLES:,} resamples, "
        f"p = share of resamples at or below it). A model above chance on neither (α = "
        f"{alpha}) makes every claim it is in \"not testable\".",
        "",
    ]
    lines += chance_section(evidence, [(key, row) for key, row, *_ in rows])
    lines += [
        f"Claims are decided by paired tests on the same utterances (α = {alpha}): WA by an "
        "exact two-sided McNemar test on the utterances one model gets right and the other "
        "wrong, UA by a paired bootstrap over utterances (difference in points, 95 % "
        f"percentile interval, {sig.N_RESAMPLES:,} resamples, seed {sig.SEED}). \"A beats "
        "B\" holds when A is significantly better in both, fails when B is, is \"not "
        "significant\" when neither difference is, and \"mixed\" otherwise. \"Approaches\" "
        "holds when neither difference is significant and the 95 % interval of the WA "
        f"difference lies within ±{100 * EQUIVALENCE_MARGIN:g} points (an equivalence margin "
        "of our choosing; the paper states none), fails when combined is significantly "
        "better in WA or UA, and is inconclusive otherwise. The WER claim is tested by a "
        "paired bootstrap of the corpus WER over utterances.",
        "",
        "| claim | verdict | numbers (ours) | paper (WA, UA) |",
        "|---|---|---|---|",
    ]
    claims = [
        ("combined beats audio-only", "combined", "audio", paper_pair(paper, "combined", "audio")),
        ("combined beats text-only", "combined", "text", paper_pair(paper, "combined", "text")),
    ]
    for model in models:
        tag = f" [{model['label']}]" if labelled(models) else ""
        sfx = model["suffix"]
        claims += [
            (f"reference transcripts beat ASR transcripts, text{tag}", "text",
             "text_asr" + sfx, paper_pair(paper, "text", "text_asr")),
            (f"reference transcripts beat ASR transcripts, combined{tag}", "combined",
             "combined_asr" + sfx, paper_pair(paper, "combined", "combined_asr")),
            (f"ASR-SER beats combined with ASR transcripts{tag}", "asrser" + sfx,
             "combined_asr" + sfx, paper_pair(paper, "asrser", "combined_asr")),
            (f"ASR-SER beats audio-only{tag}", "asrser" + sfx, "audio",
             paper_pair(paper, "asrser", "audio")),
        ]
    for claim, a, b, paper_numbers in claims:
        verdict, numbers = evidence.beats(a, b, names)
        lines.append(f"| {claim} | {verdict} | {numbers} | {paper_numbers} |")
    for model in models:
        tag = f" [{model['label']}]" if labelled(models) else ""
        lines.append(approaches_row(evidence, names, model["suffix"], tag, paper))
        lines += wer_row(evidence, model["suffix"], tag, paper)
    lines.append("")
    if oracle:
        realised = oracle.get("realised", {})
        names = [
            ("majority_class", "majority class"),
            ("prosody_speaker_independent", "prosody, speaker-independent (audio ceiling "
             "from prosody alone)"),
            ("words", "words of the reference transcript (text ceiling)"),
            ("both_speaker_independent", "prosody and words (ceiling of every model here)"),
        ]
        lines += [
            "Oracle accuracies of these corpora (`oracle.json`, the Bayes decision from the",
            "generative parameters, computed before any model was trained; "
            "`local/MINI_CORPORA.md`):",
            "",
            "| evidence | WA (%) | UA (%) |",
            "|---|---|---|",
        ]
        for key, name in names:
            if key in realised:
                lines.append(f"| {name} | {pct(realised[key]['wa'])} | "
                             f"{pct(realised[key]['ua'])} |")
        lines.append("")
    return lines


def approaches_row(
    evidence: Evidence, names: Dict[str, str], sfx: str, tag: str, paper: Optional[PaperTable]
) -> str:
    """The claim "ASR-SER approaches combined with reference transcripts", with the share
    of the WA that ASR transcripts lose which ASR-SER recovers."""
    asrser, combined_asr = "asrser" + sfx, "combined_asr" + sfx
    mcnemar, d = evidence.compare(asrser, "combined")
    wa, ua = d["wa"], d["ua"]
    lost_test, lost = evidence.compare("combined", combined_asr)
    if lost_test.p < sig.ALPHA and lost["wa"].diff > 0:
        gained = evidence.compare(asrser, combined_asr)[1]["wa"].diff
        recovered = (
            f"; it recovers {100 * gained / lost['wa'].diff:.0f} % of the "
            f"{100 * lost['wa'].diff:.1f} WA points that ASR transcripts lose"
        )
    else:
        recovered = (
            "; ASR transcripts lose no significant WA here (McNemar "
            f"{sig.format_p(lost_test.p)}), so there is nothing to recover"
        )
    verdict = evidence.untestable(names, asrser, "combined") or sig.approaches_verdict(
        mcnemar, wa, ua, EQUIVALENCE_MARGIN
    )
    return (
        f"| ASR-SER approaches combined with reference transcripts{tag} (WA within "
        f"±{100 * EQUIVALENCE_MARGIN:g} points) | {verdict} | WA {pct(wa.a)} vs "
        f"{pct(wa.b)}, diff {signed(wa.diff)} {interval(wa)}, McNemar "
        f"{sig.format_p(mcnemar.p)}; UA {pct(ua.a)} vs {pct(ua.b)}, diff "
        f"{signed(ua.diff)} {interval(ua)}, {sig.format_p(ua.p)}{recovered} | "
        f"{paper_approaches(paper)} |"
    )


def paper_approaches(paper: Optional[PaperTable]) -> str:
    """The paper's ASR-SER vs combined WA, and the share of the combined model's loss to
    ASR transcripts that ASR-SER recovers."""
    (asrser, *_), (combined, *_), (combined_asr, *_) = (
        paper.row(k) if paper else (None,) for k in ("asrser", "combined", "combined_asr")
    )
    if None in (asrser, combined):
        return "–"
    text = f"{asrser:.1f} vs {combined:.1f}"
    if combined_asr is not None and combined != combined_asr:
        lost = combined - combined_asr
        text += f"; recovers {100 * (asrser - combined_asr) / lost:.0f} % of {lost:.1f} points"
    return text


def wer_row(
    evidence: Evidence, sfx: str, tag: str, paper: Optional[PaperTable]
) -> List[str]:
    """The claim "joint fine-tuning lowers the IEMOCAP WER": ASR-SER's own transcripts
    against the zero-shot ones the pipeline baselines read."""
    tuned_key, zero_shot_key = "asrser" + sfx, "text_asr" + sfx
    tuned = wer_of(evidence.pooled(tuned_key).score)
    zero_shot = wer_of(evidence.pooled(zero_shot_key).score)
    if tuned is None or zero_shot is None:
        return []
    d = evidence.wer_difference(tuned_key, zero_shot_key)
    numbers = f"WER {pct(tuned)} after vs {pct(zero_shot)} zero-shot"
    if d is None:
        verdict = "holds" if tuned < zero_shot else "fails"
        numbers += (
            f" (no paired test: {tuned_key}/pooled or {zero_shot_key}/pooled has no "
            "per-utterance transcripts)"
        )
    else:
        verdict = sig.lower_verdict(d)
        numbers += f", diff {signed(d.diff)} {interval(d)}, {sig.format_p(d.p)}"
    paper_wers = [paper.row(k)[2] if paper else None for k in ("asrser", "text_asr")]
    paper_text = "–" if None in paper_wers else f"{paper_wers[0]:.1f} vs {paper_wers[1]:.1f}"
    return [f"| joint fine-tuning lowers the IEMOCAP WER{tag} | {verdict} | {numbers} | "
            f"{paper_text} |"]


def describe_model(model: dict) -> str:
    if model["key"] == A2W_KEY:
        return f"[{model['label']}] is our A2W model (`{model['asr_exp']}`)"
    return f"[{model['label']}] is `{model['source']}` (`{model['asr_exp']}`)"


def per_fold(
    results: Path,
    folds: List[str],
    exps: Dict[str, str],
    ser_model: str,
    protocol: str,
    models: List[dict],
    paper: Optional[PaperTable],
) -> List[str]:
    tests = (
        "fold k tests on session k"
        if protocol == "speaker_independent"
        else "fold k tests on the k-th of five random parts; see Setup"
    )
    lines = [
        f"## Per fold ({tests})",
        "",
        "| Model | Fold | n | WA (%) | UA (%) | WER (%) | selected epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, row, mode, asr, _ in table_rows(models, paper):
        pattern = asr["asrser_exp"] if mode == "asrser" else exps[mode]
        for k in folds:
            s = load_json(results / key / f"fold{k}.json")
            epoch = selected_epoch(Path(pattern.format(k=k)) / ser_model)
            lines.append(
                f"| {row} | {k} | {s['n']} | {pct(s['wa'])} | {pct(s['ua'])} | "
                f"{pct(wer_of(s))} | {epoch} |"
            )
    lines.append("")
    return lines


def selected_epoch(model: Path) -> str:
    """The epoch of a best-model file: ESPnet's are links to the epoch they selected."""
    return os.readlink(model).split("epoch")[0] if model.is_symlink() else "?"


def ablation_section(
    results: Path, folds: List[str], models: List[dict], ablations: Dict[str, str],
    evidence: Evidence,
) -> List[str]:
    """The ablation result directories beside the ASR-SER row of our A2W model (of the
    first ASR model when ours is not registered), each tested against it."""
    base_model = next((m for m in models if m["key"] == A2W_KEY), models[0])
    base = "asrser" + base_model["suffix"]
    base_name = f"ASR-SER [{base_model['label']}]" if labelled(models) else "ASR-SER"
    names = {base: base_name, **ablations}
    lines = [
        f"## Ablation (beside {base_name})",
        "",
        f"Result directories named by `--ablation KEY=LABEL`, scored like the rows above; "
        f"each is compared with {base_name} on the same pooled test utterances by the tests "
        f"of the claims (α = {sig.ALPHA:g}): differences are the row minus {base_name}, in "
        "points, with their 95 % interval; the verdict is that on "
        f"\"{base_name} beats the row\".",
        "",
        "| Model | WA (%) | UA (%) | WER (%) | difference (row minus base) | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for key, name in names.items():
        score = evidence.pooled(key).score
        test = verdict = "–"
        if key != base:
            mcnemar, d = evidence.compare(key, base)
            test = (
                f"WA {signed(d['wa'].diff)} {interval(d['wa'])}, McNemar "
                f"{sig.format_p(mcnemar.p)}; UA {signed(d['ua'].diff)} {interval(d['ua'])}, "
                f"{sig.format_p(d['ua'].p)}"
            )
            wer = evidence.wer_difference(key, base)
            if wer is not None:
                test += f"; WER {signed(wer.diff)} {interval(wer)}, {sig.format_p(wer.p)}"
            verdict = evidence.beats(base, key, names)[0]
        lines.append(
            f"| {name} | {pct(score['wa'])} | {pct(score['ua'])} | {pct(wer_of(score))} | "
            f"{test} | {verdict} |"
        )
    lines += ["", "| Model | Fold | n | WA (%) | UA (%) | WER (%) |", "|---|---|---|---|---|---|"]
    for key, name in names.items():
        for k in folds:
            s = load_json(results / key / f"fold{k}.json")
            lines.append(
                f"| {name} | {k} | {s['n']} | {pct(s['wa'])} | {pct(s['ua'])} | "
                f"{pct(wer_of(s))} |"
            )
    lines.append("")
    return lines


def reporter_stats(exp: Path) -> Optional[Dict[int, Dict[str, Dict[str, Any]]]]:
    """ESPnet's per-epoch record, ``stats[epoch][phase][name]``, from the experiment's
    ``checkpoint.pth`` (rewritten after every epoch), or None when there is none.

    The structured record rather than train.log: the log is ESPnet's free-text rendering
    of the same numbers, whose format is not an interface and which a resumed run appends
    to; the checkpoint holds the reporter's state as the trainer uses it to select epochs.
    """
    path = exp / "checkpoint.pth"
    if not path.is_file():
        return None
    import torch  # only here: the rest of this program needs no torch

    # weights_only=False because the reporter's record holds datetime.timedelta and
    # numpy scalars, which the weights-only unpickler refuses. Acceptable here: this is
    # the checkpoint the recipe's own training run wrote, not a downloaded file. mmap
    # avoids reading the model and optimizer states, which are not used.
    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:  # torch raises many kinds on a truncated or foreign file
        raise ResultsError(f"{path} cannot be read: {e}") from None
    try:
        return state["reporter"]["stats"]
    except (KeyError, TypeError):
        raise ResultsError(f"{path} holds no ESPnet reporter record") from None


def best_of(
    stats: Dict[int, Dict[str, Dict[str, Any]]], phase: str, name: str
) -> Optional[Tuple[float, int]]:
    """The highest value of ``phase.name`` over the epochs, and its (first) epoch."""
    values = [
        (float(record[phase][name]), epoch)
        for epoch, record in sorted(stats.items())
        if name in record.get(phase, {}) and math.isfinite(float(record[phase][name]))
    ]
    return max(values, key=lambda v: (v[0], -v[1])) if values else None


def training_section(args: argparse.Namespace, models: List[dict]) -> List[str]:
    """Best train and valid accuracy over the epochs of every model and fold."""

    def best(stats: Optional[dict], phase: str, name: str) -> str:
        value = best_of(stats, phase, name) if stats else None
        return "–" if value is None else f"{pct(value[0])} (epoch {value[1]})"

    lines = [
        "## Training: best train and valid accuracy",
        "",
        "As ESPnet's reporter recorded them (`checkpoint.pth` of each experiment): the train "
        "accuracy is the mean over an epoch's training batches (dropout on, weights "
        "changing), the valid accuracy is measured after the epoch; each is the best over "
        "the epochs run, with its epoch. A best train accuracy near chance means the model "
        "underfits; a selected epoch at max_epoch, that training may have stopped early.",
        "",
        "| Model | Fold | best train acc_ser (%) | best valid acc_ser (%) | selected epoch | "
        "epochs run | max_epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    exps = [(ROW_NAMES[mode], args.ser_exp[mode]) for mode in BASELINE_MODES] + [
        (f"ASR-SER [{m['label']}]" if labelled(models) else "ASR-SER", m["asrser_exp"])
        for m in models
    ]
    missing = []
    for name, pattern in exps:
        for k in args.folds:
            exp = Path(pattern.format(k=k))
            stats = reporter_stats(exp)
            if stats is None:
                missing.append(str(exp))
            config = load_yaml(exp / "config.yaml")
            lines.append(
                f"| {name} | {k} | {best(stats, 'train', 'acc_ser')} | "
                f"{best(stats, 'valid', 'acc_ser')} | "
                f"{selected_epoch(exp / args.ser_model)} | {len(stats) if stats else '–'} | "
                f"{config.get('max_epoch')} |"
            )
    ours = [m for m in models if m["key"] == A2W_KEY]
    if ours:
        lines += [
            "",
            "| A2W model | best train acc (%) | best valid acc (%) | used | epochs run | "
            "max_epoch |",
            "|---|---|---|---|---|---|",
        ]
    for model in ours:
        exp = Path(model["asr_exp"])
        stats = reporter_stats(exp)
        if stats is None:
            missing.append(str(exp))
        config = load_yaml(Path(model["asr_config"]))
        lines.append(
            f"| `{exp}` | {best(stats, 'train', 'acc')} | {best(stats, 'valid', 'acc')} | "
            f"`{Path(model['asr_model']).name}` | {len(stats) if stats else '–'} | "
            f"{config.get('max_epoch')} |"
        )
    lines.append("")
    if missing:
        lines += [f"No `checkpoint.pth` (no training record) in: {', '.join(missing)}.", ""]
    return lines


def confusion(results: Path, folds: List[str], model: dict, label: bool) -> List[str]:
    s = load_json(results / f"asrser{model['suffix']}" / "pooled.json")
    classes = s["classes"]
    order = [c for c in PAPER_ORDER if c in classes] + [c for c in classes if c not in PAPER_ORDER]
    cm = s["confusion_matrix"]
    names = [CLASS_NAMES.get(c, c) for c in order]
    name = f"ASR-SER [{model['label']}]" if label else "ASR-SER"
    lines = [
        f"## Table 3: {name} confusion matrix, pooled over folds {' '.join(folds)} "
        f"(n = {s['n']})",
        "",
        "Rows: reference; columns: prediction; counts.",
        "",
        "| Reference \\ Prediction | " + " | ".join(names) + " | Recall (%) |",
        "|---" * (len(order) + 2) + "|",
    ]
    for c in order:
        i = classes.index(c)
        counts = [cm[i][classes.index(p)] for p in order]
        lines.append(
            f"| {CLASS_NAMES.get(c, c)} | " + " | ".join(str(x) for x in counts)
            + f" | {pct(s['per_class_recall'][c])} |"
        )
    lines.append("")
    return lines


def figures_section(
    results: Path, systems: List[Tuple[str, str]], folds: List[str], out: Path
) -> List[str]:
    """Write the PNGs of ``local/plot_results.py`` into ``results``; link them from
    ``out`` (relative links)."""
    try:
        written = write_figures(results, systems, folds, order=PAPER_ORDER)
    except PlotError as e:
        raise ResultsError(str(e)) from None
    links = [
        f"[{caption}]({Path(os.path.relpath(path, out.parent)).as_posix()})"
        for caption, path in written
    ]
    n = len(systems)
    return [
        "## Figures",
        "",
        f"Written by `local/plot_results.py` into `{results}`: the pooled confusion matrix "
        "of each system (rows: reference; columns: prediction; counts) and the test WA and "
        "UA of each fold.",
        "",
        "- Confusion matrices: " + ", ".join(links[:n]),
        "- Per fold: " + ", ".join(links[n:]),
        "",
    ]


def asr_section(
    model: dict, folds: List[str], data_name: str, oov: dict, with_oov: bool
) -> List[str]:
    decode_dir = Path(model["decode_dir"])
    if model["key"] == A2W_KEY:
        title = f"## ASR: word error rates of the pretrained A2W model ({decode_dir})"
    else:
        title = f"## ASR: word error rates of the ASR model [{model['label']}] ({decode_dir})"
    lines = [
        title,
        "",
        "| Test set | n | WER (%) | sub | ins | del | ref words |",
        "|---|---|---|---|---|---|---|",
    ]
    # The LibriSpeech sets, then this run's IEMOCAP sets (the decoding directory also holds
    # those of other selections).
    sets = sorted(
        p.name for p in decode_dir.iterdir() if (p / "score.json").is_file() and
        not p.name.startswith(IEMOCAP_PREFIX)
    )
    sets += [f"{data_name}_all"] + [f"{data_name}_fold{k}_test" for k in folds]
    for name in sets:
        s = load_json(decode_dir / name / "score.json")
        w = s["wer"]
        lines.append(
            f"| {name} | {s['n']} | {pct(w['wer'])} | {w['sub']} | {w['ins']} | {w['del']} | "
            f"{w['ref_words']} |"
        )
    lines += [
        "",
        f"Paper: 14.9 % on LibriSpeech test, 40.7 % zero-shot on IEMOCAP. {data_name}_all is "
        "the zero-shot WER on every selected IEMOCAP utterance; the fold rows are the "
        "transcripts given to the pipeline baselines.",
        "",
    ]
    if model["key"] != A2W_KEY:
        info = load_json(Path(model["asr_exp"]) / "info.json")
        lines += [
            f"Model: `{model['source']}`, not trained here: {info['encoder']} encoder, "
            f"{info['decoder']} decoder ({info['decoder_state_size']}-dim states feed the "
            f"SER model), {info['token_type']} units ({info['vocab_size']} tokens, its own "
            f"tokenizer), {info['frontend']} frontend on waveforms, "
            f"{info['parameters']:,} parameters. Hypotheses are its detokenised words, "
            "normalised like the references (upper case, no punctuation).",
            "",
        ]
    if with_oov:
        lines += [
            f"Word token list: {oov['vocab_entries']} entries ({oov['token_list']}). IEMOCAP "
            f"OOV rate: {pct(oov['oov_rate'])} % of {oov['running_words']} running words "
            f"({oov['oov_distinct_words']} of {oov['distinct_words']} distinct words); these "
            "become `<unk>`.",
            "",
        ]
    return lines


def listening_section(model: dict) -> List[str]:
    """The listening check of an ASR model (``<decode_dir>/listening.json``, optional): its
    teacher-forced word accuracy with each utterance's own audio and with shuffled audio."""
    path = Path(model["decode_dir"]) / "listening.json"
    name = "the A2W model" if model["key"] == A2W_KEY else f"[{model['label']}]"
    lines = [f"### Listening check of {name}: own audio against shuffled audio", ""]
    if not path.is_file():
        return lines + [f"Not measured: there is no `{path}`.", ""]
    check = load_json(path)
    for field, kind in LISTENING_FIELDS.items():
        value = check.get(field)
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
                0.0 <= value <= 1.0
            )
        if not ok:
            raise ResultsError(
                f"{path}: field {field} should be "
                + ("a fraction in [0, 1]" if kind is float else f"a {kind.__name__}")
                + f", not {value!r}"
            )
    own, shuffled = check["acc_own_audio"], check["acc_shuffled_audio"]
    return lines + [
        f"Word accuracy with teacher forcing on `{check['valid_set']}` ({check['n']} "
        f"utterances; `{path}`): a decoder that listens loses accuracy when each "
        "utterance gets another one's audio (shuffled with seed "
        f"{check['seed']}); one that only models the transcripts does not.",
        "",
        "| audio | word accuracy (%) |",
        "|---|---|",
        f"| own | {pct(own)} |",
        f"| shuffled | {pct(shuffled)} |",
        f"| own minus shuffled | {signed(own - shuffled)} |",
        "",
    ] + ([f"Note: {check['note']}", ""] if check["note"] else [])


def setup_section(args: argparse.Namespace, models: List[dict]) -> List[str]:
    marker = load_json(Path(args.data_options))
    options = marker.get("options", {})
    emotions = Counter(read_values(Path(args.data) / "emotion"))
    classes = load_json(Path(args.results_dir) / "audio" / "pooled.json")["classes"]
    lines = [
        "## Setup",
        "",
        f"- Label set (model output order): {' '.join(classes)}. `exc` is "
        f"{'merged into hap' if options.get('exc') == 'merge' else 'dropped'}; every other "
        f"label is dropped. Utterances longer than {options.get('max_dur')} s are dropped; "
        f"subset: {options.get('subset')}.",
        f"- Corpus: `{options.get('iemocap')}`, {sum(emotions.values())} utterances: "
        + ", ".join(f"{c} {emotions[c]}" for c in classes) + ".",
        f"- Protocol: {options.get('protocol')} cross-validation; validation rule: "
        f"{options.get('valid_rule')}"
        + (f" (ratio {options.get('valid_ratio')}, seed {options.get('seed')})"
           if options.get("valid_rule") == "stratified" else "")
        + ".",
        "",
        "| Fold | test speakers | validation speakers | train | valid | test |",
        "|---|---|---|---|---|---|",
    ]
    for k in args.folds:
        parts = {p: Path(args.fold_data.format(k=k, part=p)) for p in ("train", "valid", "test")}
        counts = {p: len(read_ids(d / "utt2spk")) for p, d in parts.items()}
        spk = {p: " ".join(read_ids(parts[p] / "spk2utt")) for p in ("valid", "test")}
        lines.append(
            f"| {k} | {spk['test']} | {spk['valid']} | {counts['train']} | "
            f"{counts['valid']} | {counts['test']} |"
        )
    lines += ["", "Model selection (validation data only; test sessions are read once, "
              "for scoring):", ""]
    for model in models:
        decoding = (
            f"decoding `{model['decode_config']}`: {decode_summary(model['decode_config'])}"
        )
        if model["key"] == A2W_KEY:
            asr = load_yaml(Path(model["asr_config"]))
            lines.append(
                f"- A2W ASR: `{model['asr_model']}`; epochs ranked by {criteria(asr)} (the "
                f"LibriSpeech validation set), the best {asr.get('keep_nbest_models')} kept "
                f"(`.ave` files average them); {decoding}. {a2w_training(asr)}"
            )
        else:
            lines.append(
                f"- ASR [{model['label']}]: `{model['source']}` as given "
                f"(`{model['asr_model']}`), no selection here; {decoding}."
            )
    ser_exps = [(mode, args.ser_exp[mode]) for mode in BASELINE_MODES]
    ser_exps += [
        (f"asrser [{m['label']}]" if labelled(models) else "asrser", m["asrser_exp"])
        for m in models
    ]
    for mode, pattern in ser_exps:
        exp = Path(pattern.format(k=args.folds[0]))
        config = load_yaml(exp / "config.yaml")
        optim = config.get("optim_conf", {})
        lines.append(
            f"- {mode}: `{pattern}/{args.ser_model}`, the epoch with the "
            f"{criteria(config)} (the fold's validation set); max_epoch "
            f"{config.get('max_epoch')}, batch {config.get('batch_size')}, "
            f"{config.get('optim')} lr {optim.get('lr')}, weight decay "
            f"{optim.get('weight_decay', 0)}, grad clip {config.get('grad_clip')}"
            + ser_sizes(config) + asr_features(config) + "."
        )
    lines.append("")
    return lines


def a2w_training(config: dict) -> str:
    """How our A2W model was built and trained, read from the config.yaml ESPnet wrote:
    the sizes, and an encoder pre-training and freezing where the config has them (the
    mini recipe's deviations from the paper)."""
    enc, dec = config.get("encoder_conf", {}), config.get("decoder_conf", {})
    text = (
        f"Architecture: `{config.get('encoder')}` encoder of {enc.get('num_layers')} x "
        f"{enc.get('hidden_size')} cells per direction, `{config.get('decoder')}` decoder of "
        f"{dec.get('hidden_size')} (attention kernel {dec.get('attention_conv_kernel')}), "
        f"{len(config.get('token_list') or [])} word tokens, {config.get('max_epoch')} "
        f"epochs, {config.get('optim')} lr {config.get('optim_conf', {}).get('lr')}."
    )
    for init in config.get("init_param") or []:
        source, _, rest = str(init).partition(":")
        pre_config = Path(source).parent / "config.yaml"
        pre = load_yaml(pre_config) if pre_config.is_file() else {}
        pre_text = (
            f" ({pre.get('token_type')} CTC, ctc_weight "
            f"{pre.get('model_conf', {}).get('ctc_weight')}, {pre.get('max_epoch')} epochs, "
            f"selected by {criteria(pre)} on the same validation set)" if pre else ""
        )
        text += f" Initialised from `{source}` (`{rest}`){pre_text}."
    frozen = config.get("freeze_param") or []
    if frozen:
        text += f" Frozen during this training: {', '.join(f'`{p}`' for p in frozen)}."
    return text


def ser_sizes(config: dict) -> str:
    """The SER part's sizes (the paper: BiLSTM 2 x 256, attention 512 x 8 heads, FC 2048)."""
    conf = config.get("model_conf", {})
    return (
        f"; BiLSTM branches {conf.get('ser_num_layers', 2)} x {conf.get('ser_hidden_size', 256)}"
        f" per direction, self-attention {conf.get('attention_size', 512)} x "
        f"{conf.get('attention_heads', 8)} heads, FC {conf.get('classifier_size', 2048)}"
    )


def asr_features(config: dict) -> str:
    """Where an ASR-SER model's ASR features came from in training and in validation."""
    if config.get("mode") not in ("asr", "asrser"):
        return ""
    conf = config.get("model_conf", {})
    return (
        f"; L = {conf.get('asr_weight', 0.2)} L_ASR + {1 - conf.get('asr_weight', 0.2):g} "
        f"L_SER with L_ASR normalised per "
        f"`{conf.get('asr_loss_normalization', 'token')}`"
        f"; ASR features (`asr_feature_source`): "
        f"`{conf.get('asr_feature_source', 'teacher_forcing')}` in training, "
        f"`{conf.get('valid_asr_feature_source', 'greedy')}` in validation, beam search "
        "at test"
    )


def criteria(config: dict) -> str:
    """ESPnet's best_model_criterion as words: [[valid, acc, max]] -> highest valid.acc."""
    return " then ".join(
        f"{'highest' if c[2] == 'max' else 'lowest'} `{c[0]}.{c[1]}`"
        for c in config.get("best_model_criterion", [])
    )


def decode_summary(path: str) -> str:
    config = load_yaml(Path(path))
    return ", ".join(f"{k} {v}" for k, v in config.items())


def some(paths: List[str], limit: int = 5) -> str:
    return ", ".join(paths[:limit]) + (f", ... ({len(paths)} in all)" if len(paths) > limit
                                      else "")


def git_state(package_dir: Path, recipe_dir: Path, outputs: Tuple[Path, ...] = ()) -> str:
    """The commit of the checkout that holds ``package_dir``, and what differs from it:
    changed tracked files anywhere, untracked (not ignored) files in ``package_dir`` or
    ``recipe_dir``. ``outputs`` (RESULTS.md, which this program rewrites) do not count.
    "unknown" where the code is not a git checkout's (a copy without .git, an installed
    package) or git cannot tell."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(package_dir), *args], capture_output=True, text=True, check=True
        ).stdout

    try:
        top = Path(git("rev-parse", "--show-toplevel").strip()).resolve()
        # A copy without .git that sits inside some other checkout is not that one's.
        git("ls-files", "--error-unmatch", "__init__.py")
        commit = git("rev-parse", "HEAD").strip()
        # Porcelain paths are relative to the top of the checkout.
        skip = set()
        for out in outputs:
            try:
                skip.add(out.resolve().relative_to(top).as_posix())
            except ValueError:
                pass
        changed = [
            line[3:] for line in git("status", "--porcelain", "--untracked-files=no")
            .splitlines() if line[3:] not in skip
        ]
        untracked = [
            line[3:] for line in git(
                "status", "--porcelain", "--untracked-files=all", "--", str(package_dir),
                str(recipe_dir),
            ).splitlines() if line.startswith("?? ") and line[3:] not in skip
        ]
    except (OSError, subprocess.CalledProcessError):
        return f"unknown ({package_dir} is not in a git checkout)"
    differences = []
    if changed:
        differences.append(f"uncommitted changes to {some(changed)}")
    if untracked:
        differences.append(f"untracked files {some(untracked)}")
    return commit + (f" (with {'; '.join(differences)})" if differences else "")


def cpu() -> str:
    """The processor and its widest vector instructions (they decide which of torch's and
    MKL's kernels run, hence the rounding of every training)."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown"
    fields: Dict[str, str] = {}
    for line in info.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    name = " ".join(fields.get("model name", "unknown").split())
    flags = set(fields.get("flags", "").split())
    widest = next((isa for flag, isa in (("avx512f", "AVX-512"), ("avx2", "AVX2"),
                                          ("avx", "AVX")) if flag in flags), None)
    return f"{name}, {os.cpu_count()} cores" + (f", {widest}" if widest else "")


def environment(outputs: Tuple[Path, ...] = ()) -> List[str]:
    package_dir = Path(espnet_asrser.__file__).resolve().parent
    recipe_dir = Path(__file__).resolve().parent.parent
    commit = git_state(package_dir, recipe_dir, outputs)

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return [
        "## Environment",
        "",
        f"- Python {platform.python_version()}, torch {version('torch')}, "
        f"ESPnet {version('espnet')}, on {platform.platform()}",
        f"- CPU: {cpu()}. The same command on the same machine gives the same numbers; a CPU "
        "with other vector instructions (AVX-512, AVX2) rounds differently in torch's and "
        "MKL's kernels, and training turns that into other numbers.",
        f"- espnet_asrser commit: {commit}",
        f"- Generated on {datetime.now().astimezone().isoformat(timespec='seconds')}",
        "",
    ]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write the RESULTS.md of a run.")
    add_run_options(parser)
    parser.add_argument(
        "--oracle", default="",
        help="oracle.json of generated corpora: their numbers are then marked as not about "
        "real speech, with the oracle accuracies (default: none)",
    )
    parser.add_argument("--out", default="", help="default: <results_dir>/RESULTS.md")
    args = parser.parse_args(argv)
    try:
        layout = Layout(args)
    except LayoutError as e:
        parser.error(str(e))
    # The sections read these from args.
    args.results_dir = layout.results_dir
    args.folds = layout.folds
    # Counts come from the tables that were scored (dump/, after --drop_incomplete).
    args.data = f"dump/fbank/{layout.iemocap}_all"
    args.data_options = f"data/{layout.iemocap}_all/.done"
    args.fold_data = f"dump/fbank/{layout.iemocap}_fold{{k}}_{{part}}"
    args.oov = f"{layout.oov_dir}/oov_rate.json"
    args.ser_exp = {mode: layout.ser_exp(mode, "{k}") for mode in BASELINE_MODES}
    args.ablation = {key: system.row for key, system in layout.ablations.items()}
    out = Path(args.out or f"{layout.results_dir}/RESULTS.md")
    paper = paper_table(args.subset, args.protocol)

    results = Path(args.results_dir)
    data_name = layout.iemocap
    try:
        lines = ["# Results: IEMOCAP four-class SER combined with acoustic-to-word ASR", ""]
        if args.oracle:
            lines += [
                "**These numbers come from the synthetic mini corpora** "
                "(`local/make_mini_corpora.py`, eSpeak speech): they show that the recipe "
                "runs end to end and let its findings be checked against the oracle "
                "accuracies of `local/MINI_CORPORA.md`; they say nothing about real IEMOCAP.",
                "",
            ]
        models = [run_asr_model(layout)]
        lines += [
            f"Setting: subset `{args.subset}`, protocol `{args.protocol}`, exc `{args.exc}`, "
            f"utterances up to {args.max_dur} s; ASR model: {layout.asr_label}. Written by "
            f"`local/make_results.py` from `{results}` and `{layout.asr_decode_dir}`. Paper: "
            "Feng, Ueno, Kawahara, Interspeech 2020, whose epochs were selected on the test "
            "fold; ours are selected on validation data only.",
            "",
        ]
        lines += results_table(results, args.folds, models, paper)
        evidence = Evidence(results)
        lines += claims_section(
            results, models, load_json(Path(args.oracle)) if args.oracle else None, evidence,
            paper,
        )
        lines += per_fold(
            results, args.folds, args.ser_exp, args.ser_model, args.protocol, models, paper
        )
        if args.ablation:
            lines += ablation_section(results, args.folds, models, args.ablation, evidence)
        lines += training_section(args, models)
        for model in models:
            lines += confusion(results, args.folds, model, labelled(models))
        lines += figures_section(
            results, [(system.key, system.row) for system in layout.scored], args.folds, out
        )
        oov = load_json(Path(args.oov))
        for model in models:
            lines += asr_section(model, args.folds, data_name, oov, True)
            lines += listening_section(model)
        lines += setup_section(args, models)
        lines += environment((out,))
    except (ResultsError, KeyError, IndexError, TypeError) as e:
        print(f"{parser.prog}: error: {e!r}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
