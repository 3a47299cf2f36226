#!/usr/bin/env python3
"""Usage:
    local/make_token_list.py --train_text data/train_960/text --vocab_size 47465 \
        --oov_text data/iemocap_all/text --out data/token_list/word
    local/make_token_list.py --from_config exp/pretrained/config.yaml \
        --oov_text data/iemocap_all/text --out data/token_list/word

The word-unit token list shared by A2W pre-training (LibriSpeech)
and every IEMOCAP model (ASR-SER fine-tuning and the text baselines' word embeddings).

``<out>/tokens.txt`` is ``<blank>``, ``<unk>``, the words, ``<sos/eos>`` (ESPnet's layout;
``<blank>`` is unused by the attention-only A2W model but keeps ids compatible with
ESPnet's CTC convention). The words are the most frequent words of ``--train_text``
(ties broken alphabetically, so the list is reproducible), as many as make the list
``--vocab_size`` entries long; a smaller training text simply gives all its words.
``--from_config`` instead takes the ``token_list`` of a pretrained ESPnet ASR model's
config, since fine-tuning must keep that model's output layer.

Both corpora's transcripts are already in one convention (upper case, no punctuation,
inner apostrophes kept; data preparation applies
:func:`espnet_asrser.corpora.text_norm.normalize_transcript`). The out-of-vocabulary rate
of ``--oov_text`` (IEMOCAP) against the list is printed and written to
``<oov_out>/oov_rate.txt`` (and ``oov_rate.json`` for scripts): running words that map to
``<unk>``, distinct words, and the most frequent OOV words.
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import List, Optional

import yaml

from espnet_asrser.utils.kaldi_table import KaldiTableError, read_table

SPECIALS_HEAD = ("<blank>", "<unk>")
SPECIAL_TAIL = "<sos/eos>"


def word_counts(path: Path) -> Counter:
    counts: Counter = Counter()
    table = read_table(path, allow_empty_value=True, check_sorted=False, check_final_newline=False)
    for transcript in table.values():
        counts.update(transcript.split())
    return counts


def build_token_list(counts: Counter, vocab_size: int) -> List[str]:
    n_words = vocab_size - len(SPECIALS_HEAD) - 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    words = [w for w, _ in ranked if w not in SPECIALS_HEAD and w != SPECIAL_TAIL]
    return [*SPECIALS_HEAD, *words[:n_words], SPECIAL_TAIL]


def token_list_from_config(path: Path) -> List[str]:
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    tokens = config.get("token_list") if isinstance(config, dict) else None
    if isinstance(tokens, str):
        tokens = Path(tokens).read_text(encoding="utf-8").splitlines()
    if not tokens:
        raise ValueError(f"{path} has no token_list")
    if config.get("token_type") != "word":
        raise ValueError(
            f"{path}: token_type is {config.get('token_type')!r}; this recipe's text "
            "pipeline (IEMOCAP transcripts, text baselines, WER) needs a word-unit model"
        )
    return list(tokens)


def oov_report(tokens: List[str], counts: Counter, source: str, top: int = 20) -> dict:
    vocab = set(tokens)
    oov = Counter({w: c for w, c in counts.items() if w not in vocab})
    ranked = sorted(oov.items(), key=lambda kv: (-kv[1], kv[0]))
    running = sum(counts.values())
    return {
        "text": source,
        "vocab_entries": len(tokens),
        "running_words": running,
        "oov_running_words": sum(oov.values()),
        "oov_rate": sum(oov.values()) / running if running else None,
        "distinct_words": len(counts),
        "oov_distinct_words": len(oov),
        "most_frequent_oov": [[w, c] for w, c in ranked[:top]],
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Word token list and OOV rate.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--train_text", help="Kaldi text file the words are counted on")
    source.add_argument("--from_config", help="take the token_list of this ESPnet config")
    parser.add_argument("--vocab_size", type=int, help="entries in the list, specials included")
    parser.add_argument("--oov_text", required=True, help="text whose OOV rate is reported")
    parser.add_argument("--out", required=True, help="directory for tokens.txt")
    parser.add_argument(
        "--oov_out", help="directory for oov_rate.txt and oov_rate.json (default: --out); "
        "one per IEMOCAP selection, which share the token list",
    )
    args = parser.parse_args(argv)
    if args.train_text is not None and (args.vocab_size is None or args.vocab_size < 4):
        parser.error("--train_text needs --vocab_size of at least 4")

    try:
        if args.train_text is not None:
            counts = word_counts(Path(args.train_text))
            tokens = build_token_list(counts, args.vocab_size)
            origin = f"{len(tokens) - 3} most frequent of {len(counts)} words of {args.train_text}"
        else:
            tokens = token_list_from_config(Path(args.from_config))
            origin = f"token_list of {args.from_config}"
        report = oov_report(tokens, word_counts(Path(args.oov_text)), args.oov_text)
    except (OSError, ValueError, KaldiTableError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{t}\n" for t in tokens)
    # Unchanged, it is not rewritten: the IEMOCAP selections share it.
    if not (out / "tokens.txt").is_file() or (out / "tokens.txt").read_text(encoding="utf-8") != text:
        (out / "tokens.txt").write_text(text, encoding="utf-8")
    report["token_list"] = origin
    out = Path(args.oov_out or args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "oov_rate.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    rate = "n/a" if report["oov_rate"] is None else f"{100 * report['oov_rate']:.2f}%"
    summary = (
        f"token list: {len(tokens)} entries ({origin})\n"
        f"OOV rate of {args.oov_text}: {rate} of {report['running_words']} running words "
        f"({report['oov_distinct_words']} of {report['distinct_words']} distinct words)\n"
        f"most frequent OOV words: "
        + " ".join(f"{w}({c})" for w, c in report["most_frequent_oov"][:10])
    )
    (out / "oov_rate.txt").write_text(summary + "\n", encoding="utf-8")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
