#!/usr/bin/env python3
"""Usage:
    local/dump_feats.py compute --data data/X --out dump/fbank/X --nj 4 --job 1
    local/dump_feats.py merge   --data data/X --out dump/fbank/X --nj 4
    local/dump_feats.py subset  --src dump/fbank/X --data data/Y --out dump/fbank/Y

Stage 3 of the recipe: 40-dim log-mel features (25 ms window, 10 ms shift, 16 kHz) in
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

Nothing model-specific is done here: the 3-frame stacking of the ASR input is the
model's ``preencoder: stack``, the 7.5 s cut of the SER acoustic input is
``max_audio_frames: 750`` in the SER model, and mean/variance normalisation uses the
statistics of each training set (``--collect_stats``, stages 5 and 8).
"""

import argparse
import logging
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import soundfile

from espnet_asrser.corpora.kaldi_dir import (
    UTTERANCE_TABLES,
    DataDirError,
    read_table,
    validate_data_dir,
    write_table,
)

DUMP_TABLES = ("feats.scp", "utt2num_frames")


class DumpError(Exception):
    """The audio or the job outputs cannot give a complete dump directory."""


def job_slice(keys: List[str], nj: int, job: int) -> List[str]:
    """The ``job``-th (1-based) of ``nj`` contiguous, near-equal slices of ``keys``."""
    bounds = np.linspace(0, len(keys), nj + 1).round().astype(int)
    return keys[bounds[job - 1] : bounds[job]]


def read_audio(path: str, utt: str, fs: int) -> np.ndarray:
    try:
        wave, rate = soundfile.read(path, dtype="float32")
    except (RuntimeError, OSError) as e:  # soundfile.LibsndfileError is a RuntimeError
        raise DumpError(f"cannot read audio {path} of {utt}: {e}") from None
    if rate != fs or wave.ndim != 1:
        raise DumpError(
            f"audio {path} of {utt} is {'mono' if wave.ndim == 1 else 'multi-channel'} at "
            f"{rate} Hz; expected mono at {fs} Hz"
        )
    if wave.size == 0:
        raise DumpError(f"audio {path} of {utt} is empty")
    return wave


def compute(args: argparse.Namespace) -> None:
    # Imported here: merge and subset need neither, and they cost seconds per process.
    import torch
    from kaldiio import WriteHelper

    from espnet_asrser.asr.frontend import LogMelFrontend

    torch.set_num_threads(1)
    wav_scp = read_table(Path(args.data) / "wav.scp")
    keys = job_slice(list(wav_scp), args.nj, args.job)
    split = Path(args.out) / f"split{args.nj}"
    split.mkdir(parents=True, exist_ok=True)
    frontend = LogMelFrontend(fs=args.fs, n_mels=args.n_mels).eval()
    # Written under temporary names and renamed at the end: a killed job leaves no
    # output that merge could take for complete.
    ark, scp, frames = (split / f".{name}.{args.job}.tmp" for name in ("ark", "scp", "nf"))
    every = max(1, len(keys) // 10)
    num_frames: Dict[str, str] = {}
    with torch.no_grad(), WriteHelper(f"ark,scp:{ark},{scp}") as writer:
        for i, utt in enumerate(keys, start=1):
            wave = torch.from_numpy(read_audio(wav_scp[utt], utt, args.fs))
            feats, _ = frontend(wave[None], torch.tensor([wave.numel()]))
            writer(utt, feats[0].numpy())
            num_frames[utt] = str(feats.size(1))
            if i % every == 0 or i == len(keys):
                logging.info(
                    "job %d/%d: %d/%d utterances (%d%%)",
                    args.job, args.nj, i, len(keys), 100 * i // len(keys),
                )
    # The scp names the ark by its final name, which is where readers will find it.
    final_ark = split / f"feats.{args.job}.ark"
    scp_lines = scp.read_text(encoding="utf-8").replace(str(ark), str(final_ark))
    scp.write_text(scp_lines, encoding="utf-8")
    write_table(frames, num_frames)
    ark.replace(final_ark)
    frames.replace(split / f"utt2num_frames.{args.job}")
    scp.replace(split / f"feats.{args.job}.scp")


def write_dump_dir(out: Path, data: Path, feats: Dict[str, str], frames: Dict[str, str]) -> None:
    """Copy the tables of ``data`` (except ``wav.scp``) next to the features; validate."""
    wanted = read_table(data / "utt2spk")
    missing = sorted(set(wanted) - set(feats))
    if missing:
        raise DumpError(
            f"{len(missing)} utterances of {data} have no features, e.g. {missing[:5]}"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / "feats.scp", {u: feats[u] for u in wanted})
    write_table(out / "utt2num_frames", {u: frames[u] for u in wanted})
    for table in data.iterdir():
        if table.is_file() and not table.name.startswith(".") and table.name != "wav.scp":
            shutil.copyfile(table, out / table.name)
    validate_data_dir(
        out,
        required=("feats.scp", "utt2num_frames", "utt2spk", "spk2utt"),
        optional=UTTERANCE_TABLES + DUMP_TABLES,
    )
    logging.info("wrote %s: %d utterances", out, len(wanted))


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
    write_dump_dir(Path(args.out), Path(args.data), feats, frames)


def subset(args: argparse.Namespace) -> None:
    src = Path(args.src)
    write_dump_dir(
        Path(args.out),
        Path(args.data),
        read_table(src / "feats.scp"),
        read_table(src / "utt2num_frames"),
    )


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Dump 40-dim log-mel features (stage 3).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compute", help="compute the features of one job")
    p.add_argument("--data", required=True, help="data directory with wav.scp")
    p.add_argument("--out", required=True, help="dump directory")
    p.add_argument("--nj", type=int, required=True, help="number of jobs")
    p.add_argument("--job", type=int, required=True, help="this job, 1..nj")
    p.add_argument("--fs", type=int, default=16000, help="expected sampling rate")
    p.add_argument("--n_mels", type=int, default=40, help="mel channels")
    p = sub.add_parser("merge", help="join the job outputs into the dump directory")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--nj", type=int, required=True)
    p = sub.add_parser("subset", help="dump directory of a subset of a dumped set")
    p.add_argument("--src", required=True, help="the dumped superset")
    p.add_argument("--data", required=True, help="data directory of the subset")
    p.add_argument("--out", required=True)
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
    except (DumpError, DataDirError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
