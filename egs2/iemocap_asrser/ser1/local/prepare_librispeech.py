#!/usr/bin/env python3
"""Usage: local/prepare_librispeech.py --librispeech DIR [--out data] [--nj 4] [--fs 16000]
           [--resample false] [--downmix false] [--db_var LIBRISPEECH]

LibriSpeech to Kaldi-style data directories for pre-training the
acoustic-to-word ASR model.

For each subset found under ``--librispeech`` (train-clean-100, train-clean-360,
train-other-500, dev-clean, dev-other, test-clean, test-other) it writes
``<out>/<subset with "_" for "-">`` (``data/dev_clean``, ...) with ``wav.scp`` (the flac
path: soundfile, ESPnet's audio reader, decodes FLAC directly, so nothing is converted),
``text`` (normalised by :func:`espnet_asrser.corpora.text_norm.normalize_transcript`,
the convention IEMOCAP is mapped to as well; LibriSpeech is nearly in it already),
``text.orig`` (as written), ``utt2spk`` (the LibriSpeech speaker number), ``spk2utt`` and
``utt2dur`` (seconds, from the flac header).

The training subsets are also joined into one directory: ``train_960`` when all three
are present (the paper's 960 h), otherwise ``train_libri`` holding the ones present, so
that a partial download never passes for the full set under its name. The log says which
training subsets are missing and which name was written; the marker file records it too.

Every flac must be complete, readable and mono at ``--fs`` Hz (other rates and channel
counts are accepted with ``--resample true`` / ``--downmix true``, for
``local/dump_feats.py`` to convert); a ``--librispeech`` that holds no subset is an error
naming the db.sh variable (``--db_var``, default ``LIBRISPEECH``).

The run is idempotent: ``<out>/.librispeech.done`` holds the options and the subsets
found; a rerun with the same options and subsets does nothing and says so, anything else
rebuilds.
"""

import argparse
import json
import logging
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_asrser.corpora.corpus_path import CorpusPathError, check_librispeech_path
from espnet_asrser.corpora.kaldi_dir import write_data_dir
from espnet_asrser.utils.kaldi_table import KaldiTableError
from espnet_asrser.corpora.librispeech import (
    SUBSETS,
    TRAIN_SUBSETS,
    LibriRecord,
    LibriSpeechFormatError,
    read_librispeech,
)
from espnet_asrser.corpora.text_norm import normalize_transcript
from espnet_asrser.utils.audio_files import (
    AudioError,
    add_accept_format_options,
    format_problems,
    read_header,
)

FULL_TRAIN_NAME = "train_960"
PARTIAL_TRAIN_NAME = "train_libri"
# Bump when the output of the same options changes, so old outputs are rebuilt.
_FORMAT_VERSION = 1


class PrepareError(Exception):
    """The corpus cannot give the requested data directories."""


def data_dir_name(subset: str) -> str:
    """``train-clean-100`` -> ``train_clean_100``."""
    return subset.replace("-", "_")


def _duration(flac: Path, fs: int, resample: bool, downmix: bool) -> float:
    try:
        header = read_header(flac)
    except AudioError as e:
        raise PrepareError(str(e)) from None
    problems = format_problems(header, fs, resample=resample, downmix=downmix)
    if problems:
        raise PrepareError(
            f"audio file {flac} has {' and '.join(problems)}; pass --resample true / "
            f"--downmix true here and to local/dump_feats.py compute to convert it"
        )
    return header.frames / header.samplerate


def tables(
    records: Sequence[LibriRecord],
    nj: int,
    fs: int = 16000,
    resample: bool = False,
    downmix: bool = False,
) -> Dict[str, Dict[str, str]]:
    """The data-directory tables of one set of utterances."""
    # Header reads are I/O bound; threads overlap them on network file systems.
    with ThreadPoolExecutor(max_workers=nj) as pool:
        durations = list(
            pool.map(lambda r: _duration(r.flac, fs, resample, downmix), records)
        )
    out: Dict[str, Dict[str, str]] = {
        name: {} for name in ("wav.scp", "text", "text.orig", "utt2spk", "utt2dur")
    }
    for record, duration in zip(records, durations):
        out["wav.scp"][record.utt_id] = os.path.abspath(record.flac)
        out["text"][record.utt_id] = normalize_transcript(record.transcript)
        out["text.orig"][record.utt_id] = record.transcript
        out["utt2spk"][record.utt_id] = str(record.speaker)
        out["utt2dur"][record.utt_id] = f"{duration:.4f}"
    return out


def run(args: argparse.Namespace) -> None:
    """Prepare the data directories; raises on any problem."""
    root = check_librispeech_path(args.librispeech, SUBSETS, args.db_var)
    out = Path(args.out)
    present = [s for s in SUBSETS if (root / s).is_dir()]
    train_present = [s for s in TRAIN_SUBSETS if s in present]
    train_name = (
        FULL_TRAIN_NAME if len(train_present) == len(TRAIN_SUBSETS) else PARTIAL_TRAIN_NAME
    )
    dirs = [data_dir_name(s) for s in present] + ([train_name] if train_present else [])
    options = {
        "format": _FORMAT_VERSION,
        "librispeech": os.path.abspath(root),
        "subsets": present,
    }
    marker = out / ".librispeech.done"
    try:
        previous = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = None
    if previous is not None and previous.get("options") == options and all(
        (out / d).is_dir() for d in previous.get("dirs", [])
    ):
        logging.info(
            "LibriSpeech data directories are already prepared with these options; "
            "nothing to do (remove %s to rebuild)",
            marker,
        )
        return

    logging.info("subsets found: %s", ", ".join(present))
    missing = [s for s in SUBSETS if s not in present]
    if missing:
        logging.info("subsets missing: %s", ", ".join(missing))
    # Read everything before writing anything, so a damaged subset leaves no half output.
    records = {subset: read_librispeech(root, subset) for subset in present}

    if marker.exists():
        marker.unlink()
    if previous is not None:
        for name in previous.get("dirs", []):
            if name not in dirs and (out / name).is_dir():
                shutil.rmtree(out / name)
    out.mkdir(parents=True, exist_ok=True)
    subset_tables = {}
    for subset in present:
        subset_tables[subset] = tables(
            records[subset], args.nj, args.fs, args.resample, args.downmix
        )
        utts = write_data_dir(out / data_dir_name(subset), subset_tables[subset])
        changed = sum(
            1
            for utt, text in subset_tables[subset]["text"].items()
            if text != subset_tables[subset]["text.orig"][utt]
        )
        hours = sum(float(d) for d in subset_tables[subset]["utt2dur"].values()) / 3600
        logging.info(
            "%s: %d utterances, %.1f h, %d transcripts changed by normalisation",
            data_dir_name(subset),
            len(utts),
            hours,
            changed,
        )

    if train_present:
        union: Dict[str, Dict[str, str]] = {}
        for subset in train_present:
            for name, table in subset_tables[subset].items():
                target = union.setdefault(name, {})
                clash = target.keys() & table.keys()
                if clash:
                    raise PrepareError(
                        f"utterance ids occur in more than one training subset, e.g. "
                        f"{sorted(clash)[0]} in {subset}"
                    )
                target.update(table)
        write_data_dir(out / train_name, union)
        missing_train = [s for s in TRAIN_SUBSETS if s not in train_present]
        if missing_train:
            logging.warning(
                "training subsets missing: %s; wrote the union of %s as %s, not %s",
                ", ".join(missing_train),
                ", ".join(train_present),
                train_name,
                FULL_TRAIN_NAME,
            )
        else:
            logging.info(
                "%s: union of %s (%d utterances)",
                train_name,
                ", ".join(train_present),
                len(union["utt2spk"]),
            )
    else:
        logging.warning("no training subset present; no training directory written")

    summary = {
        "options": options,
        "dirs": dirs,
        "train_set": train_name if train_present else None,
    }
    marker.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Prepare LibriSpeech data directories for A2W ASR pre-training.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--librispeech", required=True, help="the LibriSpeech directory")
    parser.add_argument("--out", default="data", help="where the data directories go")
    parser.add_argument("--nj", type=int, default=4, help="threads reading audio headers")
    parser.add_argument("--fs", type=int, default=16000, help="expected audio sample rate")
    add_accept_format_options(parser)
    parser.add_argument(
        "--db_var", default="LIBRISPEECH",
        help="the db.sh variable --librispeech comes from, for errors",
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.nj < 1:
        parser.error(f"--nj must be at least 1, got {args.nj}")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    try:
        run(args)
    except (PrepareError, LibriSpeechFormatError, KaldiTableError, CorpusPathError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
