#!/usr/bin/env python3
"""Usage: local/make_results.py --results_dir exp/ser_results --folds 1 2 3 4 5 \
           --data data/iemocap_all --fold_data 'data/iemocap_fold{k}_{part}' \
           --oov data/token_list/word/oov_rate.json \
           --asr_config exp/asr_train_a2w/config.yaml \
           --asr_model exp/asr_train_a2w/valid.acc.ave.pth \
           --asr_decode_dir exp/asr_train_a2w/decode_decode_asr_valid.acc.ave \
           --decode_config conf/decode_asr.yaml \
           --ser_exp 'audio=exp/ser_fold{k}_train_audio' ... (text, combined, asrser) \
           --ser_model valid.acc_ser.best.pth --mini false --out RESULTS.md

Stage 12 of the recipe: RESULTS.md from the score files of stages 7 and 11, nothing else.

* Table 1 of the paper (rows Audio-based ... ASR-SER; WA, UA, WER), pooled over the
  folds (all test hypotheses scored together) and per fold, beside the paper's numbers;
* the ASR-SER confusion matrix (the paper's Table 3: rows are the reference, columns
  the prediction, counts);
* the ASR results (LibriSpeech test sets, IEMOCAP zero-shot) and the IEMOCAP OOV rate;
* how the numbers were obtained: label set, data selection, protocol and folds, model
  selection (validation set only), configs, and the software that ran (Python, torch,
  ESPnet versions, the git commit of espnet_asrser).

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
from typing import Dict, List, Optional

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
SER_MODES = ("audio", "text", "combined", "asrser")


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


# ----------------------------------------------------------------------------- sections
def table1(results: Path, folds: List[str]) -> List[str]:
    pooled = {key: load_json(results / key / "pooled.json") for key, *_ in ROWS}
    n = pooled["audio"]["n"]
    lines = [
        f"## Table 1: SER results, pooled over folds {' '.join(folds)} (n = {n})",
        "",
        "| Model | WA (%) | UA (%) | WER (%) | paper WA | paper UA | paper WER |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, row, p_wa, p_ua, p_wer in ROWS:
        s = pooled[key]
        lines.append(
            f"| {row} | {pct(s['wa'])} | {pct(s['ua'])} | {pct(wer_of(s))} | "
            f"{paper(p_wa)} | {paper(p_ua)} | {paper(p_wer)} |"
        )
    lines += [
        "",
        "WA: overall accuracy; UA: mean of the per-class recalls. Pooled: the hypotheses of",
        "all test sessions are scored together (not the mean of the fold scores). WER is",
        "that of the transcripts the model used: the pretrained A2W model's (zero-shot) for",
        "the ASR-transcript rows, the jointly fine-tuned model's own beam search (width 4,",
        "audio only) for ASR-SER. The text and combined models are trained on reference",
        "transcripts in both cases. The paper columns are its Table 1 (all utterances up to",
        "20 s, leave one session out).",
        "",
    ]
    return lines


def per_fold(
    results: Path, folds: List[str], exps: Dict[str, str], ser_model: str, protocol: str
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
    for key, row, *_ in ROWS:
        mode = key[: -len("_asr")] if key.endswith("_asr") else key
        for k in folds:
            s = load_json(results / key / f"fold{k}.json")
            model = Path(exps[mode].format(k=k)) / ser_model
            # ESPnet's best-model files are links to the epoch they selected.
            epoch = os.readlink(model).split("epoch")[0] if model.is_symlink() else "?"
            lines.append(
                f"| {row} | {k} | {s['n']} | {pct(s['wa'])} | {pct(s['ua'])} | "
                f"{pct(wer_of(s))} | {epoch} |"
            )
    lines.append("")
    return lines


def confusion(results: Path, folds: List[str]) -> List[str]:
    s = load_json(results / "asrser" / "pooled.json")
    classes = s["classes"]
    order = [c for c in PAPER_ORDER if c in classes] + [c for c in classes if c not in PAPER_ORDER]
    cm = s["confusion_matrix"]
    names = [CLASS_NAMES.get(c, c) for c in order]
    lines = [
        f"## Table 3: ASR-SER confusion matrix, pooled over folds {' '.join(folds)} "
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


def asr_section(decode_dir: Path, folds: List[str], data_name: str, oov: dict) -> List[str]:
    lines = [
        f"## ASR: word error rates of the pretrained A2W model ({decode_dir})",
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
        f"Word token list: {oov['vocab_entries']} entries ({oov['token_list']}). IEMOCAP "
        f"OOV rate: {pct(oov['oov_rate'])} % of {oov['running_words']} running words "
        f"({oov['oov_distinct_words']} of {oov['distinct_words']} distinct words); these "
        "become `<unk>`.",
        "",
    ]
    return lines


def setup_section(args: argparse.Namespace) -> List[str]:
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
    asr = load_yaml(Path(args.asr_config))
    lines.append(
        f"- A2W ASR: `{args.asr_model}`; epochs ranked by {criteria(asr)} (the LibriSpeech "
        f"validation set), the best {asr.get('keep_nbest_models')} kept (`.ave` files "
        f"average them); decoding `{args.decode_config}`: {decode_summary(args.decode_config)}."
    )
    for mode in SER_MODES:
        exp = Path(args.ser_exp[mode].format(k=args.folds[0]))
        config = load_yaml(exp / "config.yaml")
        optim = config.get("optim_conf", {})
        lines.append(
            f"- {mode}: `{args.ser_exp[mode]}/{args.ser_model}`, the epoch with the "
            f"{criteria(config)} (the fold's validation set); max_epoch "
            f"{config.get('max_epoch')}, batch {config.get('batch_size')}, "
            f"{config.get('optim')} lr {optim.get('lr')}, weight decay "
            f"{optim.get('weight_decay', 0)}, grad clip {config.get('grad_clip')}."
        )
    lines.append("")
    return lines


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
    parser.add_argument("--asr_config", required=True)
    parser.add_argument("--asr_model", required=True)
    parser.add_argument("--asr_decode_dir", required=True)
    parser.add_argument("--decode_config", required=True)
    parser.add_argument(
        "--ser_exp", action="append", required=True, metavar="MODE=PATTERN",
        help="experiment directory of MODE, {k} standing for the fold",
    )
    parser.add_argument("--ser_model", required=True)
    parser.add_argument("--mini", choices=("true", "false"), required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    args.ser_exp = dict(item.split("=", 1) for item in args.ser_exp)
    missing = [m for m in SER_MODES if m not in args.ser_exp]
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
        lines += [
            f"Written by stage 12 of `asrser.sh` from `{results}` (stage 11) and "
            f"`{args.asr_decode_dir}` (stage 7). Paper: Feng, Ueno, Kawahara, Interspeech "
            "2020, whose epochs were selected on the test fold; ours are selected on "
            "validation data only.",
            "",
        ]
        lines += table1(results, args.folds)
        protocol = load_json(Path(args.data) / ".done").get("options", {}).get("protocol")
        lines += per_fold(results, args.folds, args.ser_exp, args.ser_model, protocol)
        lines += confusion(results, args.folds)
        oov = load_json(Path(args.oov))
        lines += asr_section(Path(args.asr_decode_dir), args.folds, data_name, oov)
        lines += setup_section(args)
        lines += environment()
    except (ResultsError, KeyError, IndexError, TypeError) as e:
        print(f"{parser.prog}: error: {e!r}", file=sys.stderr)
        return 1
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
