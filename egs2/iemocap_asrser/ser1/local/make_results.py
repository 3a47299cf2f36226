#!/usr/bin/env python3
"""Usage: local/make_results.py --results_dir exp/ser_results --folds 1 2 3 4 5 \
           --data data/iemocap_all --fold_data 'data/iemocap_fold{k}_{part}' \
           --oov data/token_list/word/oov_rate.json \
           --ser_exp 'audio=exp/ser_fold{k}_train_audio' ... (text, combined) \
           --ser_model valid.acc_ser.best.pth --mini false [--oracle DIR/oracle.json] \
           --out RESULTS.md

Stage 12 of the recipe: RESULTS.md from the score files of stages 7 and 11, nothing else.

* Table 1 of the paper (rows Audio-based ... ASR-SER; WA, UA, WER), pooled over the
  folds (all test hypotheses scored together) and per fold, beside the paper's numbers;
* the paper's qualitative claims (combined beats each modality alone, ASR transcripts
  hurt, ASR-SER recovers, joint fine-tuning lowers the WER), each checked on these numbers
  with its sampling error, and, for generated corpora (``--oracle``), the oracle
  accuracies they were designed with;
* the ASR-SER confusion matrix (the paper's Table 3: rows are the reference, columns
  the prediction, counts);
* the ASR results (LibriSpeech test sets, IEMOCAP zero-shot) and the IEMOCAP OOV rate;
* how the numbers were obtained: label set, data selection, protocol and folds, model
  selection (validation set only), configs, and the software that ran (Python, torch,
  ESPnet versions, the git commit of espnet_asrser).

The ASR models are those registered in ``<results_dir>/asr_models/<key>.json`` (stage 12
writes the entry of its run's ASR model: ``a2w`` for ours, ``pretrained_<name>`` for a
``--pretrained_asr`` one), with string fields ``label``, ``suffix`` (of the result
directories of its rows: ``asrser<suffix>``, ``text_asr<suffix>``, ``combined_asr<suffix>``),
``folds``, ``source``, ``asr_exp``, ``asr_config``, ``asr_model``, ``decode_dir``,
``decode_config`` and ``asrser_exp`` (``{k}`` for the fold). Every model scored on the
same folds gets its rows (the ASR-transcript rows and ASR-SER), so runs with our A2W model
and with pretrained ones show side by side; the rows carry the model's label in brackets
unless our A2W model is the only one, which keeps the paper's row names. A model scored
on other folds is named in a note instead.

Every number is read from a JSON written by ``espnet_asrser.bin.asrser_score``; a
missing file is an error, so a table never shows a number that was not computed.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml

import espnet_asrser

# (system key in the results directory, Table 1 row, paper WA, UA, WER); paper values
# are Feng et al. 2020, Table 1.
ROWS = [
    ("audio", "Audio-based", 55.7, 57.0, None),
    ("text", "Text-based", 63.7, 63.6, None),
    ("text_asr", "Text-based (ASR transcripts)", 51.0, 50.7, 40.7),
    ("combined", "Combined", 68.9, 69.4, None),
    ("combined_asr", "Combined (ASR transcripts)", 60.1, 60.7, 40.7),
    ("asrser", "ASR-SER", 68.6, 69.7, 35.7),
]
# Table 3 of the paper orders the classes so; names for the confusion matrix.
PAPER_ORDER = ["hap", "sad", "neu", "ang"]
CLASS_NAMES = {"hap": "Happy", "sad": "Sad", "neu": "Neutral", "ang": "Angry"}
BASELINE_MODES = ("audio", "text", "combined")
# Our own A2W model's entry; the one whose rows keep the paper's names when alone.
A2W_KEY = "a2w"
ASR_MODEL_FIELDS = (
    "label", "suffix", "folds", "source", "asr_exp", "asr_config", "asr_model",
    "decode_dir", "decode_config", "asrser_exp",
)


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


def paper(x: Optional[float]) -> str:
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


# ----------------------------------------------------------------------------- ASR models
def load_asr_models(results: Path, folds: List[str]) -> Tuple[List[dict], List[str]]:
    """The registered ASR models scored on ``folds`` (ours first, then by key), and a note
    for each one scored on other folds."""
    directory = results / "asr_models"
    paths = sorted(directory.glob("*.json"), key=lambda p: (p.stem != A2W_KEY, p.stem))
    if not paths:
        raise ResultsError(
            f"no ASR model is registered in {directory}: stage 12 of asrser.sh writes "
            "its run's entry there"
        )
    models, notes = [], []
    for path in paths:
        model = load_json(path)
        missing = [f for f in ASR_MODEL_FIELDS if not isinstance(model.get(f), str)]
        if missing:
            raise ResultsError(f"{path} lacks {', '.join(missing)}")
        model["key"] = path.stem
        if model["folds"].split() != folds:
            notes.append(
                f"ASR model {model['label']} ({model['asr_exp']}) was scored on folds "
                f"{model['folds']}, not {' '.join(folds)}: run the recipe with its options "
                f"and --folds \"{' '.join(folds)}\" to add its rows (or remove {path})."
            )
            continue
        models.append(model)
    if not models:
        raise ResultsError(f"no ASR model in {directory} was scored on folds {' '.join(folds)}")
    return models, notes


def labelled(models: List[dict]) -> bool:
    """Rows name their ASR model unless our A2W model is the only one."""
    return not (len(models) == 1 and models[0]["key"] == A2W_KEY)


def table_rows(models: List[dict]) -> List[Tuple[str, str, str, dict, tuple]]:
    """(result key, row name, SER mode, ASR model or {}, paper numbers) in Table 1 order:
    the rows that depend on the ASR model once per model."""
    rows = []
    for key, row, *numbers in ROWS:
        mode = key[: -len("_asr")] if key.endswith("_asr") else key
        if key in BASELINE_MODES:
            rows.append((key, row, mode, {}, tuple(numbers)))
            continue
        for model in models:
            name = f"{row} [{model['label']}]" if labelled(models) else row
            rows.append((key + model["suffix"], name, mode, model, tuple(numbers)))
    return rows


# ----------------------------------------------------------------------------- sections
def table1(results: Path, folds: List[str], models: List[dict]) -> List[str]:
    rows = table_rows(models)
    pooled = {key: load_json(results / key / "pooled.json") for key, *_ in rows}
    n = pooled["audio"]["n"]
    lines = [
        f"## Table 1: SER results, pooled over folds {' '.join(folds)} (n = {n})",
        "",
        "| Model | WA (%) | UA (%) | WER (%) | paper WA | paper UA | paper WER |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, row, _, _, (p_wa, p_ua, p_wer) in rows:
        s = pooled[key]
        lines.append(
            f"| {row} | {pct(s['wa'])} | {pct(s['ua'])} | {pct(wer_of(s))} | "
            f"{paper(p_wa)} | {paper(p_ua)} | {paper(p_wer)} |"
        )
    asr = "the row's ASR model's" if labelled(models) else "the pretrained A2W model's"
    lines += [
        "",
        "WA: overall accuracy; UA: mean of the per-class recalls. Pooled: the hypotheses of",
        "all test sessions are scored together (not the mean of the fold scores). WER is",
        f"that of the transcripts the model used: {asr} (zero-shot) for",
        "the ASR-transcript rows, the jointly fine-tuned model's own beam search (width 4,",
        "audio only) for ASR-SER. The text and combined models are trained on reference",
        "transcripts in both cases. The paper columns are its Table 1 (all utterances up to",
        "20 s, leave one session out).",
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


def _standard_error(p: float, n: int) -> float:
    return (p * (1.0 - p) / n) ** 0.5


def claims_section(results: Path, models: List[dict], oracle: Optional[dict]) -> List[str]:
    """The paper's qualitative claims, each checked on the pooled WA and UA of this run.

    A claim "holds" when it holds for both WA and UA; a difference smaller than two
    standard errors of the larger accuracy (binomial, pooled n) is reported as within
    sampling error rather than as a finding either way.
    """
    pooled = {key: load_json(results / key / "pooled.json") for key, *_ in table_rows(models)}
    n = pooled["audio"]["n"]

    def compare(a: str, b: str) -> Tuple[str, str]:
        """Verdict and numbers for "a beats b"."""
        parts, verdicts = [], []
        for metric in ("wa", "ua"):
            x, y = pooled[a][metric], pooled[b][metric]
            margin = 2 * _standard_error(max(x, y), n)
            verdicts.append("holds" if x - y > margin else "fails" if y - x > margin
                            else "within sampling error")
            parts.append(f"{metric.upper()} {pct(x)} vs {pct(y)}")
        verdict = verdicts[0] if verdicts[0] == verdicts[1] else "mixed (WA: {}, UA: {})".format(
            *verdicts)
        return verdict, "; ".join(parts)

    lines = [
        "## The paper's claims on these data",
        "",
        f"Pooled WA and UA of Table 1 (n = {n}). A claim holds if it holds for both; a",
        "difference within two binomial standard errors of the accuracy (about "
        f"{100 * 2 * _standard_error(0.5, n):.1f} points",
        "here) is reported as within sampling error. Computed by `local/make_results.py` from",
        "the score files, like every number above.",
        "",
        "| claim | verdict | numbers (ours) | paper (WA, UA) |",
        "|---|---|---|---|",
    ]
    rows = [
        ("combined beats audio-only", "combined", "audio", "68.9/69.4 vs 55.7/57.0"),
        ("combined beats text-only", "combined", "text", "68.9/69.4 vs 63.7/63.6"),
    ]
    for model in models:
        tag = f" [{model['label']}]" if labelled(models) else ""
        sfx = model["suffix"]
        rows += [
            (f"reference transcripts beat ASR transcripts, text{tag}", "text",
             "text_asr" + sfx, "63.7/63.6 vs 51.0/50.7"),
            (f"reference transcripts beat ASR transcripts, combined{tag}", "combined",
             "combined_asr" + sfx, "68.9/69.4 vs 60.1/60.7"),
            (f"ASR-SER beats combined with ASR transcripts{tag}", "asrser" + sfx,
             "combined_asr" + sfx, "68.6/69.7 vs 60.1/60.7"),
            (f"ASR-SER beats audio-only{tag}", "asrser" + sfx, "audio",
             "68.6/69.7 vs 55.7/57.0"),
        ]
    for claim, a, b, paper_numbers in rows:
        verdict, numbers = compare(a, b)
        lines.append(f"| {claim} | {verdict} | {numbers} | {paper_numbers} |")
    for model in models:
        tag = f" [{model['label']}]" if labelled(models) else ""
        sfx = model["suffix"]
        combined, combined_asr = pooled["combined"]["wa"], pooled["combined_asr" + sfx]["wa"]
        asrser = pooled["asrser" + sfx]["wa"]
        gap = combined - asrser
        margin = 2 * _standard_error(combined, n)
        verdict = "holds" if gap <= margin else "fails"
        lost = combined - combined_asr
        recovered = (
            f"; it recovers {100 * (asrser - combined_asr) / lost:.0f} % of the "
            f"{100 * lost:.1f} WA points that ASR transcripts lose"
            if lost > margin else ""
        )
        lines.append(
            f"| ASR-SER approaches combined with reference transcripts{tag} (within two "
            f"standard errors) | {verdict} | WA {pct(asrser)} vs {pct(combined)}{recovered} | "
            "68.6 vs 68.9; recovers 97 % of 8.8 points |"
        )
        zero_shot, tuned = wer_of(pooled["text_asr" + sfx]), wer_of(pooled["asrser" + sfx])
        if zero_shot is not None and tuned is not None:
            verdict = "holds" if tuned < zero_shot else "fails"
            lines.append(
                f"| joint fine-tuning lowers the IEMOCAP WER{tag} | {verdict} | WER "
                f"{pct(tuned)} after vs {pct(zero_shot)} zero-shot | 35.7 vs 40.7 |"
            )
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


def describe_model(model: dict) -> str:
    if model["key"] == A2W_KEY:
        return f"[{model['label']}] is our A2W model trained in stage 6 (`{model['asr_exp']}`)"
    return f"[{model['label']}] is `{model['source']}` (`{model['asr_exp']}`)"


def per_fold(
    results: Path,
    folds: List[str],
    exps: Dict[str, str],
    ser_model: str,
    protocol: str,
    models: List[dict],
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
    for key, row, mode, asr, _ in table_rows(models):
        pattern = asr["asrser_exp"] if mode == "asrser" else exps[mode]
        for k in folds:
            s = load_json(results / key / f"fold{k}.json")
            model = Path(pattern.format(k=k)) / ser_model
            # ESPnet's best-model files are links to the epoch they selected.
            epoch = os.readlink(model).split("epoch")[0] if model.is_symlink() else "?"
            lines.append(
                f"| {row} | {k} | {s['n']} | {pct(s['wa'])} | {pct(s['ua'])} | "
                f"{pct(wer_of(s))} | {epoch} |"
            )
    lines.append("")
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
    sets = sorted(
        p.name for p in decode_dir.iterdir() if (p / "score.json").is_file() and
        not p.name.startswith(data_name)
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


def setup_section(args: argparse.Namespace, models: List[dict]) -> List[str]:
    marker = load_json(Path(args.data) / ".done")
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
    lines += ["", "Model selection (validation data only; test sessions are read once, in "
              "stage 11, for scoring):", ""]
    for model in models:
        decoding = (
            f"decoding `{model['decode_config']}`: {decode_summary(model['decode_config'])}"
        )
        if model["key"] == A2W_KEY:
            asr = load_yaml(Path(model["asr_config"]))
            lines.append(
                f"- A2W ASR: `{model['asr_model']}`; epochs ranked by {criteria(asr)} (the "
                f"LibriSpeech validation set), the best {asr.get('keep_nbest_models')} kept "
                f"(`.ave` files average them); {decoding}."
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
            + asr_features(config) + "."
        )
    lines.append("")
    return lines


def asr_features(config: dict) -> str:
    """Where an ASR-SER model's ASR features came from in training and in validation."""
    if config.get("mode") not in ("asr", "asrser"):
        return ""
    conf = config.get("model_conf", {})
    return (
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


def environment() -> List[str]:
    package_dir = Path(espnet_asrser.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(package_dir), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        commit += " (with uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = f"unknown ({package_dir} is not in a git checkout)"

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
        f"- espnet_asrser commit: {commit}",
        f"- Generated on {datetime.now().astimezone().isoformat(timespec='seconds')}",
        "",
    ]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write RESULTS.md (stage 12).")
    parser.add_argument("--results_dir", required=True)
    parser.add_argument("--folds", nargs="+", required=True)
    parser.add_argument("--data", required=True, help="the iemocap_all data directory")
    parser.add_argument("--fold_data", required=True, help="pattern with {k} and {part}")
    parser.add_argument("--oov", required=True, help="oov_rate.json of stage 4")
    parser.add_argument(
        "--ser_exp", action="append", required=True, metavar="MODE=PATTERN",
        help="experiment directory of MODE (audio, text, combined), {k} standing for the "
        "fold; ASR-SER's are in the ASR models' entries",
    )
    parser.add_argument("--ser_model", required=True)
    parser.add_argument("--mini", choices=("true", "false"), required=True)
    parser.add_argument(
        "--oracle", help="oracle.json of generated corpora: oracle accuracies to show"
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    args.ser_exp = dict(item.split("=", 1) for item in args.ser_exp)
    missing = [m for m in BASELINE_MODES if m not in args.ser_exp]
    if missing:
        parser.error(f"--ser_exp is missing for {', '.join(missing)}")

    results = Path(args.results_dir)
    data_name = Path(args.data).name[: -len("_all")]
    try:
        lines = ["# Results: IEMOCAP four-class SER combined with acoustic-to-word ASR", ""]
        if args.mini == "true":
            lines += [
                "**These numbers come from the synthetic mini corpora** "
                "(`local/make_mini_corpora.py`, eSpeak speech): they show that the recipe "
                "runs end to end and let its findings be checked against the oracle "
                "accuracies of `local/MINI_CORPORA.md`; they say nothing about real IEMOCAP.",
                "",
            ]
        models, notes = load_asr_models(results, args.folds)
        decode_dirs = " and ".join(f"`{m['decode_dir']}`" for m in models)
        lines += [
            f"Written by stage 12 of `asrser.sh` from `{results}` (stage 11) and "
            f"{decode_dirs} (stage 7). Paper: Feng, Ueno, Kawahara, Interspeech "
            "2020, whose epochs were selected on the test fold; ours are selected on "
            "validation data only.",
            "",
        ]
        lines += [f"Note: {note}" for note in notes] + ([""] if notes else [])
        lines += table1(results, args.folds, models)
        lines += claims_section(
            results, models, load_json(Path(args.oracle)) if args.oracle else None
        )
        protocol = load_json(Path(args.data) / ".done").get("options", {}).get("protocol")
        lines += per_fold(results, args.folds, args.ser_exp, args.ser_model, protocol, models)
        for model in models:
            lines += confusion(results, args.folds, model, labelled(models))
        oov = load_json(Path(args.oov))
        # The word list is that of the text baselines (and of our A2W model): once.
        with_oov = next((m for m in models if m["key"] == A2W_KEY), models[0])
        for model in models:
            lines += asr_section(model, args.folds, data_name, oov, model is with_oov)
        lines += setup_section(args, models)
        lines += environment()
    except (ResultsError, KeyError, IndexError, TypeError) as e:
        print(f"{parser.prog}: error: {e!r}", file=sys.stderr)
        return 1
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
