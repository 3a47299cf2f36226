#!/usr/bin/env python3
"""Usage: python benchmarks/bench_data_prep.py [--tmpdir DIR] [--nj 2] [--slice 10000] [--keep]

Data preparation at full corpus size, on CPU (not run in CI). Writes, under a new
directory in ``--tmpdir`` (default: the system's temporary directory), two corpora in the
real release layouts with the recipe's own writers (``espnet_asrser.corpora.iemocap`` /
``.librispeech``, as ``local/make_mini_corpora.py`` uses them):

* ``IEMOCAP_full_release``: 151 dialogs in 5 sessions, 10,039 turns with the release's
  label counts (5,531 in the four classes with ``exc`` merged), transcripts from the mini
  corpus' grammar;
* ``LibriSpeech``: the 7 subsets with their real utterance counts (281,241 training
  utterances in train-clean-100/360 and train-other-500, 292,367 in all), in
  ``<subset>/<speaker>/<chapter>/`` with ``.trans.txt`` files.

The recipe reads only audio headers before stage 3, so the audio is a pool of 64 files
per corpus with realistic lengths (IEMOCAP about 4.5 s, LibriSpeech training about 12 s,
dev/test about 7 s), each utterance a hard link to one of them: 300,000 files cost a few
MB and seconds to write, and stage 3 decodes audio of real length.

It then runs the programs of the recipe's stages with the arguments ``asrser.sh`` gives
them (``--nj`` for its ``nj``), each timed with the peak resident memory of its largest
process (``os.wait4``):

* stage 1: ``local/prepare_iemocap.py`` (data/iemocap_all and the 15 fold directories);
* stage 2: ``local/prepare_librispeech.py`` (the 7 subsets and train_960);
* stage 3: ``local/dump_feats.py compute`` (``--nj`` jobs side by side) then ``merge``,
  on the first ``--slice`` utterances of train_960.

Prints each figure with its target (2 cores: stage 1 <= 60 s, stage 2 <= 10 min, peak
memory <= 2 GB, stage 3 >= 100x real time per core) and the projected size of the full
dump (bytes per frame of the slice's ark files x the frames of the sets stage 3 dumps:
train_960, dev_clean, test_clean, test_other and iemocap_all, at their real durations).
The generated trees are removed at the end unless ``--keep``. Needs about 1 GB of disk.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import soundfile

from espnet_asrser.corpora.iemocap import IemocapUtterance, write_iemocap
from espnet_asrser.corpora.kaldi_dir import read_table, subset_data_dir
from espnet_asrser.corpora.librispeech import SUBSETS, LibriUtterance, write_librispeech

RECIPE = Path(__file__).resolve().parents[1] / "egs2/iemocap_asrser/ser1"
sys.path.insert(0, str(RECIPE / "local"))
import make_mini_corpora as mini  # noqa: E402  (the recipe's sentence grammar)

FS = 16000
POOL = 64  # distinct audio files per corpus; ext4 allows 65,000 links to one file
GB = 1024**3

# IEMOCAP_full_release: dialogs and turns per session, majority-label counts.
IEMOCAP_DIALOGS = (28, 30, 32, 30, 31)
IEMOCAP_TURNS = (1819, 1737, 2136, 2166, 2181)
IEMOCAP_LABELS = {"xxx": 2507, "fru": 1849, "neu": 1708, "ang": 1103, "sad": 1084,
                  "exc": 1041, "hap": 595, "sur": 107, "fea": 40, "oth": 3, "dis": 2}
# LibriSpeech: utterances and speakers per subset (release counts), hours of the sets
# that stage 3 dumps (for the projection), and the mean utterance lengths of the pool.
LIBRI_UTTS = {"train-clean-100": 28539, "train-clean-360": 104014,
              "train-other-500": 148688, "dev-clean": 2703, "dev-other": 2864,
              "test-clean": 2620, "test-other": 2939}
LIBRI_SPEAKERS = {"train-clean-100": 251, "train-clean-360": 921, "train-other-500": 1166,
                  "dev-clean": 40, "dev-other": 33, "test-clean": 40, "test-other": 33}
DUMPED_HOURS = {"train_960": 960.9, "dev_clean": 5.4, "test_clean": 5.4,
                "test_other": 5.3, "iemocap_all": 7.0}
TARGETS = {"stage1_s": 60.0, "stage2_s": 600.0, "peak_gb": 2.0, "stage3_rt_per_core": 100.0}


def audio_pool(folder: Path, mean_s: float, fmt: str, rng: np.random.Generator,
               longest: float = 0.0) -> List[Path]:
    """POOL files of noisy tone, lengths gamma-distributed around ``mean_s`` seconds;
    with ``longest`` the first one is that long (over the recipe's --max_dur)."""
    folder.mkdir(parents=True)
    lengths = np.clip(rng.gamma(2.5, mean_s / 2.5, POOL), 0.6, 30.0)
    if longest:
        lengths[0] = longest
    paths = []
    for i, seconds in enumerate(lengths):
        n = int(seconds * FS)
        t = np.arange(n) / FS
        wave = 0.1 * np.sin(2 * np.pi * 180 * t) + 0.01 * rng.standard_normal(n)
        paths.append(folder / f"{i}.{fmt}")
        soundfile.write(paths[-1], wave.astype(np.float32), FS,
                        format=fmt.upper(), subtype="PCM_16")
    return paths


def link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or a link limit
        shutil.copyfile(src, dst)


def dialog_names(session: int, n: int) -> List[str]:
    names = [f"Ses{session:02d}{g}_impro{i:02d}" for g in "FM" for i in range(1, 9)]
    names += [f"Ses{session:02d}{g}_script0{s}_{t}" for g in "FM"
              for s, t in ((1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (3, 1), (3, 2))]
    names += [f"Ses{session:02d}{g}_impro{i:02d}b" for i in (5, 8) for g in "FM"]
    return names[:n]


def write_iemocap_corpus(root: Path, rng: np.random.Generator) -> int:
    labels = [code for code, n in IEMOCAP_LABELS.items() for _ in range(n)]
    rng.shuffle(labels)
    sentences = [mini.conversational_sentence(mini.CUES[i % len(mini.CUES)], rng)
                 for i in range(2000)]
    utterances, k = [], 0
    for session, (n_dialogs, n_turns) in enumerate(zip(IEMOCAP_DIALOGS, IEMOCAP_TURNS), 1):
        dialogs = dialog_names(session, n_dialogs)
        for d, dialog in enumerate(dialogs):
            turns = n_turns // n_dialogs + (d < n_turns % n_dialogs)
            start = 2.0
            for t in range(turns):
                gender = "FM"[t % 2]
                utterances.append(IemocapUtterance(
                    utt_id=f"{dialog}_{gender}{t // 2:03d}", label=labels[k],
                    transcript=sentences[k % len(sentences)], start=start, end=start + 4.0))
                start += 5.0
                k += 1
    assert k == sum(IEMOCAP_TURNS) == len(labels)
    write_iemocap(root, utterances)  # layout and text files; no audio
    pool = audio_pool(root.parent / "iemocap_pool", 4.5, "wav", rng, longest=22.0)
    for i, u in enumerate(utterances):
        dialog = u.utt_id.rsplit("_", 1)[0]
        folder = root / f"Session{u.utt_id[4]}" / "sentences" / "wav" / dialog
        folder.mkdir(parents=True, exist_ok=True)
        link(pool[i % POOL], folder / f"{u.utt_id}.wav")
    return len(utterances)


def write_librispeech_corpus(root: Path, rng: np.random.Generator) -> int:
    sentences = [re.sub(r"[^A-Z' ]", "", mini.narrative_sentence(rng).upper())
                 for _ in range(4000)]
    train_pool = audio_pool(root.parent / "libri_pool_train", 12.3, "flac", rng)
    eval_pool = audio_pool(root.parent / "libri_pool_eval", 7.0, "flac", rng)
    speaker, n = 100, 0
    for subset in SUBSETS:
        utterances = []
        n_utts, n_speakers = LIBRI_UTTS[subset], LIBRI_SPEAKERS[subset]
        chapters = 2 * n_speakers  # about the release's 2-3 chapters per speaker
        for c in range(chapters):
            per_chapter = n_utts // chapters + (c < n_utts % chapters)
            spk, chapter = speaker + c // 2, 1000 * (speaker + c // 2) + c % 2
            for index in range(per_chapter):
                text = " ".join(sentences[(n + j) % len(sentences)] for j in range(2))
                utterances.append(LibriUtterance(subset, spk, chapter, index, text))
                n += 1
        speaker += n_speakers
        write_librispeech(root, utterances)  # layout and .trans.txt; no audio
        pool = train_pool if subset.startswith("train") else eval_pool
        for i, u in enumerate(utterances):
            link(pool[i % POOL], root / subset / str(u.speaker) / str(u.chapter)
                 / f"{u.utt_id}.flac")
    return n


def run_measured(cmds: Sequence[Sequence[str]], cwd: Path, logs: Sequence[Path]) -> Tuple[float, int]:
    """Run ``cmds`` side by side; (wall seconds, peak RSS in bytes of the largest one).
    Stops with the log's tail when one fails."""
    start = time.perf_counter()
    procs = {}
    for cmd, log in zip(cmds, logs):
        with open(log, "w") as f:
            procs[subprocess.Popen(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT).pid] = log
    peak = 0
    while procs:
        pid, status, usage = os.wait4(-1, 0)
        log = procs.pop(pid, None)
        if log is None:
            continue
        peak = max(peak, usage.ru_maxrss * 1024)  # kilobytes on Linux
        if os.waitstatus_to_exitcode(status) != 0:
            tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
            sys.exit(f"failed, see {log}:\n{tail}")
    return time.perf_counter() - start, peak


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tmpdir", default=None, help="where to create the work directory")
    parser.add_argument("--nj", type=int, default=2, help="jobs (asrser.sh --nj)")
    parser.add_argument("--slice", type=int, default=10000, help="utterances dumped in stage 3")
    parser.add_argument("--keep", action="store_true", help="keep the generated trees")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_data_prep.", dir=args.tmpdir))
    py = sys.executable
    try:
        rng = np.random.default_rng(0)
        t = time.perf_counter()
        n_iemocap = write_iemocap_corpus(work / "IEMOCAP_full_release", rng)
        n_libri = write_librispeech_corpus(work / "LibriSpeech", rng)
        print(f"generated {n_iemocap} IEMOCAP turns and {n_libri} LibriSpeech utterances "
              f"in {time.perf_counter() - t:.0f} s under {work}")
        data, logs = work / "data", work / "log"
        logs.mkdir()
        results: Dict[str, float] = {}

        s1, m1 = run_measured([[py, "local/prepare_iemocap.py", "--iemocap",
                                str(work / "IEMOCAP_full_release"), "--out", str(data),
                                "--name", "iemocap", "--subset", "all", "--protocol",
                                "speaker_independent", "--exc", "merge", "--max_dur", "20",
                                "--resample", "false", "--downmix", "false"]],
                              RECIPE, [logs / "stage1.log"])
        n_all = len(read_table(data / "iemocap_all" / "utt2spk"))
        print(f"stage 1: {s1:.1f} s, peak {m1 / GB:.2f} GB ({n_all} utterances kept): "
              f"{verdict(s1 <= TARGETS['stage1_s'])} <= {TARGETS['stage1_s']:.0f} s")

        s2, m2 = run_measured([[py, "local/prepare_librispeech.py", "--librispeech",
                                str(work / "LibriSpeech"), "--out", str(data), "--nj",
                                str(args.nj), "--resample", "false", "--downmix", "false"]],
                              RECIPE, [logs / "stage2.log"])
        n_train = len(read_table(data / "train_960" / "utt2spk"))
        print(f"stage 2: {s2:.1f} s, peak {m2 / GB:.2f} GB (train_960: {n_train} "
              f"utterances): {verdict(s2 <= TARGETS['stage2_s'])} <= {TARGETS['stage2_s']:.0f} s")

        keys = sorted(read_table(data / "train_960" / "utt2spk"), key=str.encode)[: args.slice]
        subset_data_dir(data / "train_960", data / "slice", keys)
        audio_s = sum(float(v) for v in read_table(data / "slice" / "utt2dur").values())
        dump = work / "dump" / "slice"
        s3c, m3 = run_measured(
            [[py, "local/dump_feats.py", "compute", "--data", str(data / "slice"), "--out",
              str(dump), "--nj", str(args.nj), "--job", str(j), "--resample", "false",
              "--downmix", "false"] for j in range(1, args.nj + 1)],
            RECIPE, [logs / f"dump.{j}.log" for j in range(1, args.nj + 1)])
        s3m, m3m = run_measured([[py, "local/dump_feats.py", "merge", "--data",
                                  str(data / "slice"), "--out", str(dump), "--nj",
                                  str(args.nj), "--drop_incomplete", "false"]],
                                RECIPE, [logs / "merge.log"])
        s3 = s3c + s3m
        rt = audio_s / (s3 * args.nj)
        frames = sum(int(v) for v in read_table(dump / "utt2num_frames").values())
        ark_bytes = sum(p.stat().st_size for p in (dump / f"split{args.nj}").glob("feats.*.ark"))
        print(f"stage 3: {len(keys)} utterances, {audio_s / 3600:.1f} h of audio in {s3:.1f} s "
              f"({s3c:.1f} s for {args.nj} compute jobs, {s3m:.1f} s merge), peak "
              f"{m3 / GB:.2f} GB per job ({args.nj * m3 / GB:.2f} GB for {args.nj} side by "
              f"side): {rt:.0f}x real time per core: "
              f"{verdict(rt >= TARGETS['stage3_rt_per_core'])} >= "
              f"{TARGETS['stage3_rt_per_core']:.0f}x")
        peak = max(m1, m2, args.nj * m3, m3m)
        print(f"peak memory: {peak / GB:.2f} GB: {verdict(peak <= TARGETS['peak_gb'] * GB)} "
              f"<= {TARGETS['peak_gb']:.0f} GB")
        per_frame = ark_bytes / frames
        full_frames = sum(DUMPED_HOURS.values()) * 3600 * 100  # 10 ms shift
        print(f"projected full dump: {per_frame:.1f} bytes per frame x {full_frames / 1e6:.0f} M "
              f"frames ({sum(DUMPED_HOURS.values()):.0f} h: "
              + ", ".join(f"{k} {v:g} h" for k, v in DUMPED_HOURS.items())
              + f") = {per_frame * full_frames / GB:.1f} GB")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
