#!/usr/bin/env python3
"""Usage: local/prepare_iemocap.py --iemocap DIR [--out data] [--max_dur 20]
           [--subset all|improvised] [--exc merge|drop]
           [--protocol speaker_independent|speaker_dependent]
           [--valid_rule heldout_speaker|stratified] [--valid_ratio 0.1] [--seed 0]
           [--fs 16000] [--resample false] [--downmix false] [--name iemocap]
           [--db_var IEMOCAP]

IEMOCAP (``IEMOCAP_full_release``) to Kaldi-style data
directories for four-class speech emotion recognition, plus cross-validation folds.

Written under ``--out`` (``<name>`` is ``iemocap`` unless ``--name`` says otherwise):

* ``<name>_all``: every kept utterance, with ``wav.scp``, ``text`` (normalised for
  word-level ASR by :func:`espnet_asrser.corpora.text_norm.normalize_transcript`),
  ``text.orig`` (the transcript as written), ``utt2spk``, ``spk2utt``, ``emotion``
  (``ang``, ``hap``, ``neu`` or ``sad``), ``utt2dur`` (seconds, from the audio header),
  ``utt2session`` (1..5) and ``utt2category`` (``impro`` or ``script``), and ``classes``
  (the label set in model output order: ``ang hap neu sad``; later steps read it);
* ``<name>_fold{k}_{train,valid,test}`` for k = 1..5.

Labels: ``exc`` is merged into ``hap`` (``--exc merge``, the paper's main setting) or
dropped (``--exc drop``); every other code (fru, sur, fea, dis, oth, xxx) is dropped.
Utterances longer than ``--max_dur`` seconds are dropped, as in the paper (5531 -> 5515
on the real corpus). ``--subset improvised`` keeps only improvised dialogs (paper
Table 4: 2274 utterances; the usual improvised four-class set *without* ``exc`` has 2280,
so that table most likely used ``--exc drop``). Counts per class and per drop reason are
printed.

Protocols and the validation rule (printed by every run):

* ``speaker_independent`` (default; paper Tables 1-4): fold k tests on session k.
  ``--valid_rule heldout_speaker`` (default): valid is every utterance of one speaker of
  the next session, ``(k mod 5) + 1``, female for odd k and male for even k; train is the
  remaining seven speakers. Validation then mirrors the test condition, speakers never
  seen in training, so checkpoint selection does not reward memorising training speakers
  (a real risk with a joint ASR model that can overfit voices and the repeated scripted
  lines). It costs one of eight training speakers (about 12 %), close to what a 10 %
  random split costs anyway; genders alternate over the folds so the five valid sets are
  not all one gender. ``--valid_rule stratified`` instead holds out ``--valid_ratio`` of
  each (speaker, emotion) cell of the four training sessions, seeded: all eight speakers
  train, but validation scores are optimistic (seen speakers).
* ``speaker_dependent`` (paper Table 5): every utterance is assigned to one of five folds
  at random (seeded), stratified by (emotion, speaker) so each fold has each class and
  each speaker in proportion (counts differ by at most one); valid is a stratified
  ``--valid_ratio`` of each fold's training part. Only ``stratified`` applies here.

Every kept utterance must have a complete, readable mono ``--fs`` Hz audio file (other
rates and channel counts are accepted with ``--resample true`` / ``--downmix true``, for
``local/dump_feats.py`` to convert), a transcript and a label; anything else is an error
naming the file or utterance. A ``--iemocap`` that is not IEMOCAP_full_release is an error
naming the db.sh variable (``--db_var``, default ``IEMOCAP``) and what it must hold. The
run is idempotent: it writes ``<name>_all/.done`` holding the options, a rerun with the
same options does nothing and says so, and a run with other options rebuilds everything.
"""

import argparse
import json
import logging
import math
import os
import random
import shutil
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_asrser.corpora.corpus_path import CorpusPathError, check_iemocap_path
from espnet_asrser.corpora.iemocap import (
    FOUR_CLASSES,
    IemocapFormatError,
    IemocapRecord,
    read_iemocap,
)
from espnet_asrser.corpora.kaldi_dir import subset_data_dir, write_data_dir
from espnet_asrser.utils.kaldi_table import KaldiTableError
from espnet_asrser.corpora.text_norm import normalize_transcript
from espnet_asrser.utils.audio_files import (
    AudioError,
    add_accept_format_options,
    format_problems,
    read_header,
)

EMOTIONS = FOUR_CLASSES
N_FOLDS = 5
SESSIONS = tuple(range(1, 6))
SPLITS = ("train", "valid", "test")
# Bump when the output of the same options changes, so old outputs are rebuilt.
_FORMAT_VERSION = 1


class PrepareError(Exception):
    """The corpus or the options cannot give the requested data directories."""


@dataclass(frozen=True)
class Kept:
    """An utterance that passed every filter."""

    record: IemocapRecord
    emotion: str
    duration: float


# ----------------------------------------------------------------------------- selection
def four_class_label(code: str, exc: str) -> Optional[str]:
    """The four-class emotion of a label code, or None if the code is dropped."""
    if code == "exc":
        return "hap" if exc == "merge" else None
    return code if code in EMOTIONS else None


def audio_duration(
    wav: Path, utt_id: str, fs: int, *, resample: bool = False, downmix: bool = False
) -> float:
    """Duration in seconds from the header of ``wav``, which must be complete and mono at
    ``fs`` Hz unless ``resample``/``downmix`` say that the dump stage converts it."""
    if not wav.is_file():
        raise PrepareError(f"missing audio file {wav} for utterance {utt_id}")
    try:
        header = read_header(wav)
    except AudioError as e:
        raise PrepareError(f"{e} (utterance {utt_id})") from None
    if format_problems(header, fs, resample=resample, downmix=downmix):
        raise PrepareError(
            f"audio file {wav} is {header.channels} channel(s) at {header.samplerate} Hz; "
            f"expected mono at {fs} Hz (or pass --resample true / --downmix true here and "
            f"to local/dump_feats.py compute, which then converts it)"
        )
    return header.frames / header.samplerate


def select(
    records: Sequence[IemocapRecord],
    *,
    exc: str,
    subset: str,
    max_dur: float,
    fs: int,
    resample: bool = False,
    downmix: bool = False,
) -> Tuple[List[Kept], Counter]:
    """Apply the label, subset and duration filters; return kept and drop counts."""
    kept: List[Kept] = []
    dropped: Counter = Counter()
    for record in records:
        emotion = four_class_label(record.label, exc)
        if emotion is None:
            dropped[f"label {record.label}"] += 1
            continue
        if subset == "improvised" and record.category != "impro":
            dropped["scripted dialog (--subset improvised)"] += 1
            continue
        duration = audio_duration(
            record.wav, record.utt_id, fs, resample=resample, downmix=downmix
        )
        if duration > max_dur:
            dropped[f"longer than {max_dur:g} s"] += 1
            continue
        kept.append(Kept(record, emotion, duration))
    return kept, dropped


# ----------------------------------------------------------------------------- splitting
def stratified_sample(utts: Sequence[Kept], ratio: float, rng: random.Random) -> List[str]:
    """Draw ``ratio`` of each (speaker, emotion) cell, rounded half up, seeded."""
    cells: Dict[Tuple[str, str], List[str]] = defaultdict(list)
    for u in utts:
        cells[(u.record.speaker, u.emotion)].append(u.record.utt_id)
    chosen: List[str] = []
    for cell in sorted(cells):
        ids = sorted(cells[cell])
        rng.shuffle(ids)
        chosen += ids[: math.floor(ratio * len(ids) + 0.5)]
    return chosen


def speaker_independent_folds(
    kept: Sequence[Kept], valid_rule: str, ratio: float, seed: int
) -> Tuple[List[Dict[str, List[str]]], List[str]]:
    """Leave-one-session-out folds; returns the folds and one description per fold."""
    sessions = sorted({u.record.session for u in kept})
    if sessions != list(SESSIONS):
        raise PrepareError(
            f"speaker_independent folds need kept utterances in sessions 1-5; found "
            f"sessions {sessions}"
        )
    folds, notes = [], []
    for k in SESSIONS:
        test = [u for u in kept if u.record.session == k]
        pool = [u for u in kept if u.record.session != k]
        if valid_rule == "heldout_speaker":
            speaker = f"Ses{k % N_FOLDS + 1:02d}_{'F' if k % 2 else 'M'}"
            valid = {u.record.utt_id for u in pool if u.record.speaker == speaker}
            if not valid:
                raise PrepareError(f"fold {k}: validation speaker {speaker} has no utterances")
            note = f"valid = speaker {speaker}"
        else:
            valid = set(stratified_sample(pool, ratio, random.Random(1000 * seed + k)))
            note = f"valid = {ratio:g} of each (speaker, emotion) cell of sessions != {k}"
        folds.append(
            {
                "train": [u.record.utt_id for u in pool if u.record.utt_id not in valid],
                "valid": sorted(valid),
                "test": [u.record.utt_id for u in test],
            }
        )
        notes.append(f"test = session {k}; {note}")
    return folds, notes


def speaker_dependent_folds(
    kept: Sequence[Kept], ratio: float, seed: int
) -> Tuple[List[Dict[str, List[str]]], List[str]]:
    """Random five-fold split stratified by (emotion, speaker), seeded."""
    rng = random.Random(seed)
    cells: Dict[Tuple[str, str], List[str]] = defaultdict(list)
    for u in kept:
        cells[(u.emotion, u.record.speaker)].append(u.record.utt_id)
    # Dealing round-robin with one counter over cells ordered emotion-major keeps every
    # cell, every emotion and every fold within one utterance of an even share.
    fold_of: Dict[str, int] = {}
    position = 0
    for cell in sorted(cells):
        ids = sorted(cells[cell])
        rng.shuffle(ids)
        for utt_id in ids:
            fold_of[utt_id] = position % N_FOLDS
            position += 1
    folds, notes = [], []
    for k in range(1, N_FOLDS + 1):
        pool = [u for u in kept if fold_of[u.record.utt_id] != k - 1]
        valid = set(stratified_sample(pool, ratio, random.Random(1000 * seed + k)))
        folds.append(
            {
                "train": [u.record.utt_id for u in pool if u.record.utt_id not in valid],
                "valid": sorted(valid),
                "test": [u.record.utt_id for u in kept if fold_of[u.record.utt_id] == k - 1],
            }
        )
        notes.append(
            f"test = random fold {k} of 5 (seed {seed}); valid = {ratio:g} of each "
            f"(speaker, emotion) cell of the other folds"
        )
    return folds, notes


# ----------------------------------------------------------------------------- output
def tables(kept: Sequence[Kept]) -> Dict[str, Dict[str, str]]:
    """The data-directory tables of the kept utterances."""
    out: Dict[str, Dict[str, str]] = defaultdict(dict)
    for u in kept:
        r = u.record
        out["wav.scp"][r.utt_id] = os.path.abspath(r.wav)
        out["text"][r.utt_id] = normalize_transcript(r.transcript)
        # White-space runs carry nothing and would not survive the table format.
        out["text.orig"][r.utt_id] = " ".join(r.transcript.split())
        out["utt2spk"][r.utt_id] = r.speaker
        out["emotion"][r.utt_id] = u.emotion
        out["utt2dur"][r.utt_id] = f"{u.duration:.4f}"
        out["utt2session"][r.utt_id] = str(r.session)
        out["utt2category"][r.utt_id] = r.category
    return dict(out)


def _read_marker(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _log_counts(kept: Sequence[Kept], dropped: Counter, n_records: int) -> None:
    logging.info("read %d labelled utterances", n_records)
    by_emotion = Counter(u.emotion for u in kept)
    exc = sum(1 for u in kept if u.record.label == "exc")
    parts = []
    for emotion in EMOTIONS:
        part = f"{emotion} {by_emotion[emotion]}"
        if emotion == "hap" and exc:
            part += f" (hap {by_emotion['hap'] - exc} + exc {exc})"
        parts.append(part)
    logging.info("kept %d utterances: %s", len(kept), ", ".join(parts))
    for reason, count in sorted(dropped.items()):
        logging.info("dropped %d: %s", count, reason)
    empty = sorted(u.record.utt_id for u in kept if not normalize_transcript(u.record.transcript))
    if empty:
        logging.warning(
            "%d kept utterances have an empty normalised transcript (non-speech only), "
            "e.g. %s; they stay, since their emotion label is valid",
            len(empty),
            " ".join(empty[:5]),
        )


def _rule_text(args: argparse.Namespace) -> str:
    if args.valid_rule == "heldout_speaker":
        return (
            "valid = every utterance of one speaker of session (k mod 5) + 1, female for "
            "odd k and male for even k; train = the other seven speakers of the training "
            "sessions"
        )
    return (
        f"valid = {args.valid_ratio:g} of each (speaker, emotion) cell of the training "
        f"part, rounded half up, seed {args.seed}"
    )


def run(args: argparse.Namespace) -> None:
    """Prepare the data directories; raises on any problem."""
    check_iemocap_path(args.iemocap, args.db_var)
    out = Path(args.out)
    all_dir = out / f"{args.name}_all"
    marker = all_dir / ".done"
    options = {
        "format": _FORMAT_VERSION,
        "iemocap": os.path.abspath(args.iemocap),
        "max_dur": args.max_dur,
        "subset": args.subset,
        "exc": args.exc,
        "protocol": args.protocol,
        "valid_rule": args.valid_rule,
        # The ratio only matters to the stratified rule; leaving it out of the other
        # keeps a changed but unused --valid_ratio from forcing a rebuild.
        "valid_ratio": args.valid_ratio if args.valid_rule == "stratified" else None,
        "seed": args.seed,
        "fs": args.fs,
    }
    fold_dirs = [
        out / f"{args.name}_fold{k}_{split}" for k in range(1, N_FOLDS + 1) for split in SPLITS
    ]
    previous = _read_marker(marker)
    # A directory prepared before the label set was written (classes) is prepared again.
    if previous is not None and previous.get("options") == options and all(
        (out / d).is_dir() for d in previous.get("dirs", [])
    ) and (all_dir / "classes").is_file():
        logging.info(
            "%s is already prepared with these options; nothing to do (remove %s to "
            "rebuild)",
            all_dir,
            marker,
        )
        return

    logging.info("options: %s", json.dumps(options, sort_keys=True))
    records = read_iemocap(Path(args.iemocap))
    kept, dropped = select(
        records,
        exc=args.exc,
        subset=args.subset,
        max_dur=args.max_dur,
        fs=args.fs,
        resample=args.resample,
        downmix=args.downmix,
    )
    if not kept:
        raise PrepareError(f"no utterance of {args.iemocap} passed the filters")
    _log_counts(kept, dropped, len(records))
    logging.info("protocol %s; validation rule: %s", args.protocol, _rule_text(args))
    if args.protocol == "speaker_independent":
        folds, notes = speaker_independent_folds(
            kept, args.valid_rule, args.valid_ratio, args.seed
        )
    else:
        folds, notes = speaker_dependent_folds(kept, args.valid_ratio, args.seed)

    for k, fold in enumerate(folds, start=1):
        for split in SPLITS:
            if not fold[split]:
                raise PrepareError(
                    f"fold {k}: the {split} set is empty (too few utterances for "
                    f"--valid_ratio {args.valid_ratio:g}?)"
                )

    # Everything is computed; only now replace what an earlier run left.
    if previous is not None:
        for name in previous.get("dirs", []):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
    out.mkdir(parents=True, exist_ok=True)
    write_data_dir(all_dir, tables(kept), {"classes": " ".join(EMOTIONS) + "\n"})
    for k, (fold, note) in enumerate(zip(folds, notes), start=1):
        logging.info("fold %d: %s", k, note)
        for split in SPLITS:
            subset_data_dir(all_dir, out / f"{args.name}_fold{k}_{split}", fold[split])
        logging.info(
            "fold %d: train %d, valid %d, test %d utterances",
            k,
            len(fold["train"]),
            len(fold["valid"]),
            len(fold["test"]),
        )
    dirs = [all_dir.name] + [d.name for d in fold_dirs]
    marker.write_text(
        json.dumps({"options": options, "dirs": dirs}, indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    logging.info("wrote %s and %d fold directories under %s", all_dir.name, len(fold_dirs), out)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Prepare IEMOCAP four-class data directories and cross-validation folds.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--iemocap", required=True, help="the IEMOCAP_full_release directory")
    parser.add_argument("--out", default="data", help="where the data directories go")
    parser.add_argument("--max_dur", type=float, default=20.0, help="drop longer utterances (s)")
    parser.add_argument("--subset", choices=("all", "improvised"), default="all")
    parser.add_argument(
        "--exc", choices=("merge", "drop"), default="merge", help="merge exc into hap or drop it"
    )
    parser.add_argument(
        "--protocol",
        choices=("speaker_independent", "speaker_dependent"),
        default="speaker_independent",
    )
    parser.add_argument(
        "--valid_rule",
        choices=("heldout_speaker", "stratified"),
        default=None,
        help="how valid is taken from the training part (default: heldout_speaker for "
        "speaker_independent, stratified for speaker_dependent)",
    )
    parser.add_argument(
        "--valid_ratio", type=float, default=0.1, help="share held out by --valid_rule stratified"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random split")
    parser.add_argument("--fs", type=int, default=16000, help="expected audio sample rate")
    parser.add_argument("--name", default="iemocap", help="prefix of the output directories")
    add_accept_format_options(parser)
    parser.add_argument(
        "--db_var", default="IEMOCAP", help="the db.sh variable --iemocap comes from, for errors"
    )
    return parser



def main(argv: Optional[List[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.valid_rule is None:
        args.valid_rule = (
            "heldout_speaker" if args.protocol == "speaker_independent" else "stratified"
        )
    if args.protocol == "speaker_dependent" and args.valid_rule == "heldout_speaker":
        parser.error("--valid_rule heldout_speaker applies to speaker_independent only")
    if not args.max_dur > 0:
        parser.error(f"--max_dur must be positive, got {args.max_dur}")
    if not 0 < args.valid_ratio < 0.5:
        parser.error(f"--valid_ratio must be in (0, 0.5), got {args.valid_ratio}")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    try:
        run(args)
    except (PrepareError, IemocapFormatError, KaldiTableError, CorpusPathError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
