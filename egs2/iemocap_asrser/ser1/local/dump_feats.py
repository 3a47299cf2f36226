#!/usr/bin/env python3
"""Usage:
    local/dump_feats.py compute --data data/X --out dump/fbank/X --nj 4 --job 1
    local/dump_feats.py merge   --data data/X --out dump/fbank/X --nj 4
    local/dump_feats.py subset  --src dump/fbank/X --data data/Y --out dump/fbank/Y

40-dim log-mel features (25 ms window, 10 ms shift, 16 kHz) in
Kaldi ark/scp files, computed by the model's own frontend
(:class:`espnet_asrser.asr.frontend.LogMelFrontend`), so that a model trained on dumped
features gives the same output on raw waveforms.

* ``compute`` does one job of ``--nj``: the ``--job``-th contiguous slice of the sorted
  ``wav.scp`` goes to ``<out>/split<nj>/feats.<job>.{ark,scp}`` and
  ``utt2num_frames.<job>``; progress is logged every tenth of the slice. The jobs are
  independent processes, so the recipe can run them side by side or as cluster jobs.
* ``merge`` joins the job outputs into ``<out>/feats.scp`` and ``<out>/utt2num_frames``,
  checks that every utterance of ``wav.scp`` has features, copies the other tables of
  the data directory (``text``, ``emotion``, ``utt2spk``, ...) and validates the result.
* ``subset`` makes a dump directory for a data directory whose utterances are a subset
  of an already dumped one (the cross-validation folds of ``iemocap_all``), pointing
  into the same ark files instead of computing the features again.

Faults (docs/reliability.md, rows 1, 4, 5, 14): an utterance that a table lacks is an
error naming it, or with ``--drop_incomplete true`` is left out and counted ("kept N of
M", ``<out>/dropped_utts``). Audio that is unreadable, truncated or empty fails the job,
which first goes through its whole slice so that the error lists every such utterance.
Audio at another rate or with several channels is an error unless ``--resample true`` /
``--downmix true`` say to convert it (the conversions are counted in the log). Nothing is
written under its final name before it is complete: a job that fails (disk full, an
unwritable directory, bad audio) leaves no ``feats.<job>.scp`` for merge to take.

Nothing model-specific is done here: the 3-frame stacking of the ASR input is the
model's ``preencoder: stack``, the 7.5 s cut of the SER acoustic input is
``max_audio_frames: 750`` in the SER model, and mean/variance normalisation uses the
statistics of each training set (``--collect_stats``).
"""

import argparse
import errno
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set

import numpy as np

from espnet_asrser.corpora.kaldi_dir import (
    DIR_FILES,
    EMPTY_VALUE_TABLES,
    UTTERANCE_TABLES,
    utt2spk_to_spk2utt,
    validate_data_dir,
)
from espnet_asrser.utils.kaldi_table import KaldiTableError, read_table, write_table
from espnet2.utils.types import str2bool
from espnet_asrser.utils.audio_files import AudioError, read_audio
from espnet_asrser.utils.progress import progress

DUMP_TABLES = ("feats.scp", "utt2num_frames")
#: Written by merge/subset --drop_incomplete true: the utterances left out, and why.
DROPPED = "dropped_utts"
_MAX_LISTED = 10


class DumpError(Exception):
    """The audio or the job outputs cannot give a complete dump directory."""


def _listed(items: List[str]) -> str:
    more = f" ... ({len(items)} in total)" if len(items) > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


def _write_failure(where: Path, e: OSError) -> DumpError:
    hint = " (disk full?)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return DumpError(f"cannot write the dump to {where}: {e.strerror or e}{hint}")


def job_slice(keys: List[str], nj: int, job: int) -> List[str]:
    """The ``job``-th (1-based) of ``nj`` contiguous, near-equal slices of ``keys``."""
    bounds = np.linspace(0, len(keys), nj + 1).round().astype(int)
    return keys[bounds[job - 1] : bounds[job]]


def compute(args: argparse.Namespace) -> None:
    # Imported here: merge and subset need neither, and they cost seconds per process.
    import torch
    from kaldiio import WriteHelper

    from espnet_asrser.asr.frontend import LogMelFrontend

    torch.set_num_threads(1)
    wav_scp = read_table(Path(args.data) / "wav.scp")
    keys = job_slice(list(wav_scp), args.nj, args.job)
    split = Path(args.out) / f"split{args.nj}"
    final_scp = split / f"feats.{args.job}.scp"
    final_frames = split / f"utt2num_frames.{args.job}"
    final_ark = split / f"feats.{args.job}.ark"
    # Written under temporary names and renamed at the end: a killed or failed job leaves
    # no output that merge could take for complete, and none of an earlier run either.
    ark, scp, frames = (split / f".{name}.{args.job}.tmp" for name in ("ark", "scp", "nf"))
    try:
        split.mkdir(parents=True, exist_ok=True)
        for path in (final_scp, final_frames, final_ark):
            path.unlink(missing_ok=True)
    except OSError as e:
        raise _write_failure(split, e) from None
    frontend = LogMelFrontend(fs=args.fs, n_mels=args.n_mels).eval()
    num_frames: Dict[str, str] = {}
    bad: List[str] = []
    converted: Dict[str, int] = {}
    try:
        with torch.no_grad(), WriteHelper(f"ark,scp:{ark},{scp}") as writer:
            for utt in progress(keys, desc=f"job {args.job}/{args.nj}"):
                try:
                    wave, done = read_audio(
                        wav_scp[utt], args.fs, resample=args.resample, downmix=args.downmix
                    )
                except AudioError as e:
                    # Go on: one run names every unusable file, not one per rerun.
                    bad.append(f"{utt}: {e}")
                    continue
                for what in done:
                    converted[what] = converted.get(what, 0) + 1
                wave = torch.from_numpy(wave)
                feats, _ = frontend(wave[None], torch.tensor([wave.numel()]))
                writer(utt, feats[0].numpy())
                num_frames[utt] = str(feats.size(1))
        if bad:
            raise DumpError(
                f"job {args.job}/{args.nj} of {args.data}: {len(bad)} of {len(keys)} "
                f"utterances have unusable audio; nothing of this job was kept:\n  "
                + "\n  ".join(bad[:_MAX_LISTED])
                + (f"\n  ... ({len(bad)} in total)" if len(bad) > _MAX_LISTED else "")
                + "\nReplace or re-extract those files, or remove the utterances from the "
                "data directory (every table), then run the job again. Audio at another "
                "rate or with several channels is converted with --resample true / "
                "--downmix true."
            )
        # The scp names the ark by its final name, which is where readers will find it.
        scp_lines = scp.read_text(encoding="utf-8").replace(str(ark), str(final_ark))
        scp.write_text(scp_lines, encoding="utf-8")
        write_table(frames, num_frames)
        ark.replace(final_ark)
        frames.replace(final_frames)
        # The scp is what merge looks for, so it goes into place last.
        scp.replace(final_scp)
    except OSError as e:
        raise _write_failure(split, e) from None
    finally:
        for path in (ark, scp, frames):
            path.unlink(missing_ok=True)
    for what, count in sorted(converted.items()):
        logging.warning("job %d/%d: %s for %d utterances", args.job, args.nj, what, count)


def _incomplete(
    tables: Dict[str, Dict[str, str]], featured: Set[str]
) -> Dict[str, List[str]]:
    """Utterance -> the tables (and "features") that lack it, for incomplete ones."""
    utts = set().union(*tables.values())
    missing: Dict[str, List[str]] = {}
    for utt in sorted(utts):
        lacking = [name for name, table in tables.items() if utt not in table]
        if utt not in featured:
            lacking.append("features")
        if lacking:
            missing[utt] = lacking
    return missing


def write_dump_dir(
    out: Path,
    data: Path,
    feats: Dict[str, str],
    frames: Dict[str, str],
    drop_incomplete: bool = False,
) -> None:
    """The tables of ``data`` (except ``wav.scp``) next to the features, validated.

    An utterance that some table of ``data`` or the features lack is an error naming it,
    or with ``drop_incomplete`` is left out of every table, logged as "kept N of M" and
    listed in ``<out>/dropped_utts``. The tables are written to a temporary directory and
    moved into place only once all are written and valid.
    """
    names = sorted(
        p.name
        for p in data.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name not in ("wav.scp", "spk2utt")
    )
    others = [n for n in names if n not in UTTERANCE_TABLES]
    tables = {
        n: read_table(data / n, allow_empty_value=n in EMPTY_VALUE_TABLES)
        for n in names
        if n in UTTERANCE_TABLES
    }
    for required in ("wav.scp", "utt2spk"):
        if not (data / required).is_file():
            raise DumpError(f"{data}: {required} is missing")
    tables["wav.scp"] = read_table(data / "wav.scp")
    missing = _incomplete(tables, set(feats) & set(frames))
    total = len(set().union(*tables.values()))
    if missing and not drop_incomplete:
        by_table: Dict[str, List[str]] = {}
        for utt, lacking in missing.items():
            for name in lacking:
                by_table.setdefault(name, []).append(utt)
        raise DumpError(
            f"{data}: {len(missing)} of {total} utterances are not in every table: "
            + "; ".join(f"{name} lacks {_listed(utts)}" for name, utts in sorted(by_table.items()))
            + f". Fix the data directory, or pass --drop_incomplete true to keep the "
            f"{total - len(missing)} complete ones"
        )
    keyed_others = [n for n in others if n not in DIR_FILES]
    if missing and keyed_others:
        raise DumpError(
            f"{data}: cannot drop utterances from {', '.join(keyed_others)}, which are not "
            f"utterance tables; remove them or fix the data directory"
        )
    kept = sorted(set(tables["utt2spk"]) - set(missing))
    if not kept:
        raise DumpError(f"{data}: no utterance is in every table and has features")
    del tables["wav.scp"]
    tables["feats.scp"] = feats
    tables["utt2num_frames"] = frames

    tmp = out / ".tables.tmp"
    try:
        out.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for name, table in tables.items():
            write_table(
                tmp / name,
                {u: table[u] for u in kept},
                allow_empty_value=name in EMPTY_VALUE_TABLES,
            )
        write_table(tmp / "spk2utt", utt2spk_to_spk2utt({u: tables["utt2spk"][u] for u in kept}))
        for name in others:
            shutil.copyfile(data / name, tmp / name)
        if missing:
            (tmp / DROPPED).write_text(
                "".join(f"{u} not in {' '.join(lacking)}\n" for u, lacking in missing.items()),
                encoding="utf-8",
            )
        validate_data_dir(
            tmp,
            required=("feats.scp", "utt2num_frames", "utt2spk", "spk2utt"),
            optional=UTTERANCE_TABLES + DUMP_TABLES,
        )
        (out / DROPPED).unlink(missing_ok=True)
        for path in sorted(tmp.iterdir()):
            os.replace(path, out / path.name)
        tmp.rmdir()
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_failure(out, e) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if missing:
        logging.warning(
            "kept %d of %d utterances of %s in %s; dropped %d (listed in %s): %s",
            len(kept), total, data, out, len(missing), out / DROPPED,
            _listed([f"{u} (not in {' '.join(lacking)})" for u, lacking in missing.items()]),
        )
    logging.info("wrote %s: %d utterances", out, len(kept))


def merge(args: argparse.Namespace) -> None:
    split = Path(args.out) / f"split{args.nj}"
    feats: Dict[str, str] = {}
    frames: Dict[str, str] = {}
    for job in range(1, args.nj + 1):
        scp = split / f"feats.{job}.scp"
        if not scp.is_file():
            raise DumpError(f"{scp} is missing: job {job} of {args.nj} did not finish")
        feats.update(read_table(scp, check_sorted=False))
        frames.update(read_table(split / f"utt2num_frames.{job}"))
    extra = sorted(set(feats) - set(read_table(Path(args.data) / "wav.scp")))
    if extra:
        raise DumpError(f"{split} holds utterances not in {args.data}, e.g. {extra[:5]}")
    write_dump_dir(Path(args.out), Path(args.data), feats, frames, args.drop_incomplete)


def subset(args: argparse.Namespace) -> None:
    src = Path(args.src)
    write_dump_dir(
        Path(args.out),
        Path(args.data),
        read_table(src / "feats.scp"),
        read_table(src / "utt2num_frames"),
        args.drop_incomplete,
    )


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Dump 40-dim log-mel features.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compute", help="compute the features of one job")
    p.add_argument("--data", required=True, help="data directory with wav.scp")
    p.add_argument("--out", required=True, help="dump directory")
    p.add_argument("--nj", type=int, required=True, help="number of jobs")
    p.add_argument("--job", type=int, required=True, help="this job, 1..nj")
    p.add_argument("--fs", type=int, default=16000, help="expected sampling rate")
    p.add_argument("--n_mels", type=int, default=40, help="mel channels")
    p.add_argument(
        "--resample", type=str2bool, default=False,
        help="resample audio at another rate to --fs (default: such audio is an error)",
    )
    p.add_argument(
        "--downmix", type=str2bool, default=False,
        help="average the channels of multi-channel audio (default: an error)",
    )
    drop_help = (
        "leave out utterances that a table of --data or the features lack, listing them in "
        f"<out>/{DROPPED} (default: they are an error)"
    )
    p = sub.add_parser("merge", help="join the job outputs into the dump directory")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--nj", type=int, required=True)
    p.add_argument("--drop_incomplete", type=str2bool, default=False, help=drop_help)
    p = sub.add_parser("subset", help="dump directory of a subset of a dumped set")
    p.add_argument("--src", required=True, help="the dumped superset")
    p.add_argument("--data", required=True, help="data directory of the subset")
    p.add_argument("--out", required=True)
    p.add_argument("--drop_incomplete", type=str2bool, default=False, help=drop_help)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.command != "subset" and args.nj < 1:
        parser.error(f"--nj must be at least 1, got {args.nj}")
    if args.command == "compute" and not 1 <= args.job <= args.nj:
        parser.error(f"--job must be in 1..{args.nj}, got {args.job}")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    try:
        {"compute": compute, "merge": merge, "subset": subset}[args.command](args)
    except (DumpError, KaldiTableError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
