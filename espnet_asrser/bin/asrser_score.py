"""Usage: python -m espnet_asrser.bin.asrser_score \\
           --ref_emotion data/test/utt2emo --hyp_emotion exp/.../utt2emo \\
           --classes neu hap sad ang \\
           [--ref_text data/test/text --hyp_text exp/.../text] \\
           --output_json exp/.../scores.json [--output_md exp/.../scores.md]
       python -m espnet_asrser.bin.asrser_score \\
           --ref_text data/test/text --hyp_text exp/.../text --output_json exp/.../scores.json

Score emotion predictions (WA, UA, per-class recall, confusion matrix) and, when
transcripts are given, the ASR word error rate. With transcripts only (an ASR model's
decoding), only the WER is scored: the emotion fields of the JSON are then null.

Inputs are Kaldi-style ``<utt-id> <value>`` files: one label per emotion line, a
whitespace-separated transcript per text line (an id alone is an empty transcript). Both
sides must list exactly the same utterances; a missing or extra id is an error, never
skipped. The JSON holds fractions; the printed summary and Markdown show percentages.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from espnet_asrser.metrics import (
    SERScores,
    format_confusion_matrix,
    score_emotions,
    score_transcripts,
)
from espnet_asrser.utils.kaldi_table import read_table


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asrser_score",
        description="Score emotion recognition (WA, UA, confusion matrix) and optionally WER.",
    )
    parser.add_argument(
        "--ref_emotion",
        help="reference utt2emo file; needs --hyp_emotion and --classes (default: none, "
        "emotions are not scored)",
    )
    parser.add_argument(
        "--hyp_emotion",
        help="predicted utt2emo file; needs --ref_emotion (default: none)",
    )
    parser.add_argument(
        "--classes",
        nargs="+",
        help="emotion labels, in the order of the confusion matrix rows and columns; "
        "required with --ref_emotion (default: none)",
    )
    parser.add_argument(
        "--ref_text",
        help="reference transcripts; needs --hyp_text (default: none, no WER is scored)",
    )
    parser.add_argument(
        "--hyp_text", help="recognised transcripts; needs --ref_text (default: none)"
    )
    parser.add_argument(
        "--output_json", required=True, help="where to write the scores (required)"
    )
    parser.add_argument(
        "--output_md", help="where to write a Markdown report (default: none, not written)"
    )
    return parser


def _read(path: str, allow_empty_value: bool) -> Dict[str, str]:
    # Hypotheses come in decoding order, and either side may be written by hand.
    return read_table(
        path, allow_empty_value=allow_empty_value, check_sorted=False, check_final_newline=False
    )


def _percent(rate: Optional[float]) -> str:
    return "n/a" if rate is None else f"{100 * rate:.2f}"


def scores_to_json(
    ser: Optional[SERScores], wer: Optional[Dict[str, Any]], n: Optional[int] = None
) -> Dict[str, Any]:
    if ser is None:
        # WER only: the same keys, so that readers need not tell the two kinds apart.
        return {
            "n": n,
            "wa": None,
            "ua": None,
            "confusion_matrix": None,
            "classes": None,
            "per_class_recall": None,
            "wer": wer,
        }
    return {
        "n": ser.n,
        "wa": ser.wa,
        "ua": ser.ua,
        "confusion_matrix": ser.confusion_matrix.tolist(),
        "classes": ser.classes,
        "per_class_recall": ser.per_class_recall,
        "wer": wer,
    }


def wer_to_markdown(n: int, wer: Dict[str, Any]) -> str:
    return "\n".join(
        [
            "| n | WER (%) | sub | ins | del | ref words |",
            "|---|---|---|---|---|---|",
            f"| {n} | {_percent(wer['wer'])} | {wer['sub']} | {wer['ins']} | {wer['del']}"
            f" | {wer['ref_words']} |",
            "",
        ]
    )


def scores_to_markdown(ser: SERScores, wer: Optional[Dict[str, Any]]) -> str:
    header = "| n | WA (%) | UA (%) |"
    row = f"| {ser.n} | {_percent(ser.wa)} | {_percent(ser.ua)} |"
    if wer is not None:
        header += " WER (%) | sub | ins | del | ref words |"
        row += (
            f" {_percent(wer['wer'])} | {wer['sub']} | {wer['ins']} | {wer['del']}"
            f" | {wer['ref_words']} |"
        )
    separator = "|---" * (header.count("|") - 1) + "|"
    recall = " ".join(f"{c}={_percent(r)}" for c, r in ser.per_class_recall.items())
    return "\n".join(
        [
            header,
            separator,
            row,
            "",
            f"Per-class recall (%): {recall}",
            "",
            format_confusion_matrix(ser.confusion_matrix, ser.classes),
            "",
        ]
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if (args.ref_text is None) != (args.hyp_text is None):
        parser.error("--ref_text and --hyp_text must be given together")
    if (args.ref_emotion is None) != (args.hyp_emotion is None):
        parser.error("--ref_emotion and --hyp_emotion must be given together")
    if args.ref_emotion is None and args.ref_text is None:
        parser.error("give --ref_emotion/--hyp_emotion, --ref_text/--hyp_text, or both")
    if args.ref_emotion is not None and not args.classes:
        parser.error("--ref_emotion needs --classes")
    if args.ref_emotion is None and args.classes:
        parser.error("--classes applies to emotion scoring; give --ref_emotion/--hyp_emotion")

    try:
        ser = None
        if args.ref_emotion is not None:
            ser = score_emotions(
                _read(args.ref_emotion, allow_empty_value=False),
                _read(args.hyp_emotion, allow_empty_value=False),
                args.classes,
            )
        wer = n_text = None
        if args.ref_text is not None:
            ref_text = _read(args.ref_text, allow_empty_value=True)
            wer = score_transcripts(ref_text, _read(args.hyp_text, allow_empty_value=True))
            n_text = len(ref_text)
    except (OSError, ValueError) as e:
        # Input problems (unreadable or malformed files, mismatched ids, unknown labels)
        # are the user's to fix: a one-line message serves better than a traceback.
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1

    output_json = Path(args.output_json)
    output_json.parent.mkdir(parents=True, exist_ok=True)
    output_json.write_text(
        json.dumps(scores_to_json(ser, wer, n_text), indent=2) + "\n", encoding="utf-8"
    )
    if args.output_md is not None:
        output_md = Path(args.output_md)
        output_md.parent.mkdir(parents=True, exist_ok=True)
        markdown = wer_to_markdown(n_text, wer) if ser is None else scores_to_markdown(ser, wer)
        output_md.write_text(markdown, encoding="utf-8")

    if ser is None:
        print(
            f"n={n_text} WER={_percent(wer['wer'])}% (sub {wer['sub']}, ins {wer['ins']}, "
            f"del {wer['del']}, ref words {wer['ref_words']})"
        )
        return 0
    summary: List[str] = [
        f"n={ser.n} WA={_percent(ser.wa)}% UA={_percent(ser.ua)}%"
        + ("" if wer is None else f" WER={_percent(wer['wer'])}%")
        + f" classes: {' '.join(ser.classes)}",
        format_confusion_matrix(ser.confusion_matrix, ser.classes),
    ]
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
