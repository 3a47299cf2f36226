#!/usr/bin/env python3
"""Usage: local/evaluate.py RUN_OPTIONS --fold K [--ngpu 0]
       local/evaluate.py RUN_OPTIONS --pool
       local/evaluate.py RUN_OPTIONS --fold K --pending     (exit status 0: K has work)

Scores every system of the run (the rows of the paper's table and the ASR-SER
ablations, :mod:`espnet_asrser.recipe.systems`) on the test session of the folds.

``--fold K``: cuts fold K's test session from the ASR model's zero-shot decoding of all
IEMOCAP utterances (``<decode_dir>/<test set>/text``, with its WER), then runs the trained
models of fold K on its test session, all in this one
process (importing ESPnet costs ~10 s, more than a small model needs to classify a
session), and scores each: ``<exp>/decode_<input>/<test set>/`` gets ``emotion``,
``posteriors``, ``text`` (ASR modes) and ``score.json``, copied to
``<results_dir>/<system>/fold<K>.json``. The text and combined models are run twice,
on the reference transcripts and on the ASR model's (``text_asr``, ``combined_asr``);
ASR-SER decodes with the decoding config of the ASR model.

``--pool``: scores the hypotheses of all folds together (not the mean of the fold
scores), like the paper's confusion matrix over all 5515 utterances:
``<results_dir>/<system>/pooled/`` (the per-utterance files) and ``pooled.json``.

RUN_OPTIONS are those of :mod:`espnet_asrser.recipe.layout` (the stage script's
``run_opts``). Each output directory holds a ``.done`` fingerprint of its inputs and is
skipped while they are unchanged. An utterance that cannot be decoded does not stop the
others; the program then exits with status 1 naming the ``failed`` files, before scoring
outputs that lack utterances.
"""

import argparse
import contextlib
import logging
import shutil
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from espnet_asrser.corpora.text_norm import normalize_text_file
from espnet_asrser.recipe.fingerprint import fingerprint, is_done, mark_done
from espnet_asrser.recipe.layout import Layout, LayoutError, add_run_options
from espnet_asrser.recipe.systems import System

log = logging.getLogger("evaluate")


def classes(layout: Layout) -> List[str]:
    """The label set, in output order, as data preparation wrote it."""
    path = Path("data", f"{layout.iemocap}_all", "classes")
    if not path.is_file():
        raise LayoutError(f"{path} does not exist: prepare the IEMOCAP data first")
    return path.read_text(encoding="utf-8").split()


def asr_text(layout: Layout, fold: str) -> Path:
    """The ASR model's transcripts of a fold's test session (zero-shot decoding)."""
    return Path(layout.asr_decode_dir, layout.data_set(fold, "test"), "text")


def cut_signature(layout: Layout, fold: str) -> str:
    """The inputs of a fold's cut of the IEMOCAP decoding: the decoding and the references."""
    decoded = Path(layout.asr_decode_dir, f"{layout.iemocap}_all", "text")
    ref = Path(layout.asr_input[0], layout.data_set(fold, "test"), "text")
    return fingerprint([str(decoded), str(ref)])


def system_signature(layout: Layout, fold: str, args: List[str]) -> str:
    """The inputs of one system's outputs on a fold: its inference options, the labels."""
    return fingerprint([*args, str(Path("dump/fbank", layout.data_set(fold, "test"), "emotion"))])


def cut_asr_text(layout: Layout, fold: str) -> None:
    """Cut a fold's test session from the ASR model's decoding of all IEMOCAP utterances
    (the pipeline baselines' input) and score its WER."""
    test = layout.data_set(fold, "test")
    decoded = Path(layout.asr_decode_dir, f"{layout.iemocap}_all", "text")
    ref = Path(layout.asr_input[0], test)
    out = asr_text(layout, fold).parent
    if not decoded.is_file():
        raise LayoutError(f"no ASR transcripts of the IEMOCAP utterances ({decoded}): decode them first")
    sig = cut_signature(layout, fold)
    if not is_done(out, sig):
        keep = {line.split(maxsplit=1)[0] for line in open(ref / "utt2spk", encoding="utf-8")}
        out.mkdir(parents=True, exist_ok=True)
        with open(decoded, encoding="utf-8") as f:
            lines = [line for line in f if line.split(maxsplit=1)[0] in keep]
        (out / "text").write_text("".join(lines), encoding="utf-8")
        run_score(["--ref_text", str(ref / "text"), "--hyp_text", str(out / "text"),
                   "--output_json", str(out / "score.json")], out / "score.log")
        mark_done(out, sig)
    summary = (out / "score.log").read_text(encoding="utf-8").splitlines()[:1]
    print(f"{test} (zero-shot ASR): {''.join(summary)}", flush=True)


def copy_if_changed(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.is_file() or dst.read_bytes() != src.read_bytes():
        shutil.copyfile(src, dst)


def score(system: System, ref_dir: Path, out_dir: Path, hyp_text: Path, labels: List[str]) -> None:
    """WA, UA and confusion matrix of ``out_dir/emotion``, with the WER of the transcripts
    the system used: ASR-SER's own or the pipeline's input (``hyp_text``)."""
    args = ["--ref_emotion", str(ref_dir / "emotion"), "--hyp_emotion", str(out_dir / "emotion"),
            "--classes", *labels]
    if system.has_asr_text:
        args += ["--ref_text", str(ref_dir / "text"), "--hyp_text", str(hyp_text)]
    args += ["--output_json", str(out_dir / "score.json"), "--output_md", str(out_dir / "score.md")]
    run_score(args, out_dir / "score.log")


def run_score(args: List[str], log_file: Path) -> None:
    """asrser_score ARGS, its summary written to ``log_file``."""
    from espnet_asrser.bin import asrser_score

    with open(log_file, "w", encoding="utf-8") as f, contextlib.redirect_stdout(f):
        rc = asrser_score.main(args)
    if rc:
        raise RuntimeError(f"scoring failed; see {log_file}")


def inference_args(layout: Layout, system: System, fold: str, ngpu: str):
    """The output directory and asrser_inference options of a system on a fold."""
    test = layout.data_set(fold, "test")
    exp = Path(layout.ser_exp(system.model, fold))
    model = exp / layout.opts.ser_model
    if not model.is_file():
        raise LayoutError(f"no {model}: the {system.model} models are not trained")
    speech_dir, speech = layout.ser_input(system.model)
    args = ["--asrser_train_config", str(exp / "config.yaml"), "--asrser_model_file", str(model),
            "--ngpu", ngpu, "--data_path_and_name_and_type", f"{speech_dir}/{test}/{speech}"]
    if system.transcripts == "reference":
        out = exp / "decode_reftext" / test
        args += ["--data_path_and_name_and_type", f"dump/fbank/{test}/text,text,text"]
    elif system.transcripts == "asr":
        text = asr_text(layout, fold)
        if not text.is_file():
            raise LayoutError(f"no ASR transcripts of {test} ({text}): decode it first")
        tag = ("asrtext_" + layout.asr_decode_dir[len("exp/"):]).replace("/", "_")
        out = exp / f"decode_{tag}" / test
        args += ["--data_path_and_name_and_type", f"{text},text,text"]
    elif system.mode == "asrser":
        out = exp / f"decode_{layout.decode_tag}" / test
        args += ["--config", layout.opts.decode_config, *layout.opts.decode_args.split()]
    else:
        out = exp / "decode" / test
    return out, args


def evaluate_fold(layout: Layout, fold: str, ngpu: str) -> int:
    labels = classes(layout)
    cut_asr_text(layout, fold)
    test = layout.data_set(fold, "test")
    ref_dir = Path("dump/fbank", test)
    failed = []
    for i, system in enumerate(layout.scored, start=1):
        out, args = inference_args(layout, system, fold, ngpu)
        sig = system_signature(layout, fold, args)
        if not is_done(out, sig):
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            print(f"# [{i}/{len(layout.scored)}] {system.key}: asrser_inference "
                  f"{' '.join(args)} --output_dir {out}", flush=True)
            # Imported only when needed: ESPnet's import costs ~10 s, a rerun nothing.
            from espnet_asrser.bin import asrser_inference

            if asrser_inference.main([*args, "--output_dir", str(out)]):
                failed.append(str(out / "failed"))
                continue
            if system.mode == "asrser" and layout.pretrained:
                # The pretrained tokenizer's words, in our references' convention.
                (out / "text").rename(out / "text.1best")
                normalize_text_file(out / "text.1best", out / "text")
            # The WER of the transcripts the system read: its own (ASR-SER's beam search)
            # or the ASR model's zero-shot ones (the pipeline systems).
            hyp_text = out / "text" if system.mode == "asrser" else asr_text(layout, fold)
            score(system, ref_dir, out, hyp_text, labels)
            mark_done(out, sig)
        copy_if_changed(out / "score.json", Path(layout.results_dir, system.key, f"fold{fold}.json"))
    if failed:
        print(f"{len(failed)} of {len(layout.scored)} inferences could not decode every "
              f"utterance; see {' '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def fold_pending(layout: Layout, fold: str) -> bool:
    """Whether ``--fold`` has anything to do: a system whose output is not up to date, or a
    score not yet copied into the results directory. Cheap (no ESPnet import), so that a
    rerun of finished stages starts no job and rewrites no log."""
    try:
        if not is_done(asr_text(layout, fold).parent, cut_signature(layout, fold)):
            return True
        for system in layout.scored:
            out, args = inference_args(layout, system, fold, "0")
            copied = Path(layout.results_dir, system.key, f"fold{fold}.json")
            if not is_done(out, system_signature(layout, fold, args)) or not copied.is_file():
                return True
    except LayoutError:
        return True  # the job says what is missing
    return False


def pool(layout: Layout) -> None:
    labels = classes(layout)
    for system in layout.scored:
        key_dir = Path(layout.results_dir, system.key)
        pooled = key_dir / "pooled"
        names = ["emotion", "text"] if system.has_asr_text else ["emotion"]
        files = {}
        for name in names:
            for k in layout.folds:
                ref = Path("dump/fbank", layout.data_set(k, "test"), name)
                if name == "text" and system.transcripts == "asr":
                    hyp = asr_text(layout, k)
                else:
                    hyp = inference_args(layout, system, k, "0")[0] / name
                files.setdefault(name, []).append((ref, hyp))
        sig = fingerprint([str(f) for pairs in files.values() for pair in pairs for f in pair])
        if not is_done(pooled, sig):
            (pooled / "ref").mkdir(parents=True, exist_ok=True)
            for name, pairs in files.items():
                for side, target in ((0, pooled / "ref" / name), (1, pooled / name)):
                    lines = []
                    for pair in pairs:
                        lines += pair[side].read_text(encoding="utf-8").splitlines(keepends=True)
                    # LC_ALL=C sort order: by bytes.
                    lines.sort(key=lambda line: line.encode("utf-8"))
                    target.write_text("".join(lines), encoding="utf-8")
            score(system, pooled / "ref", pooled, pooled / "text", labels)
            mark_done(pooled, sig)
        copy_if_changed(pooled / "score.json", key_dir / "pooled.json")
        summary = (pooled / "score.log").read_text(encoding="utf-8").splitlines()[:1]
        print(f"{system.key}, folds {' '.join(layout.folds)} pooled: {''.join(summary)}", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Score every system of the run on test folds.")
    add_run_options(parser)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--fold", help="run and score the models of this fold on its test session")
    what.add_argument("--pool", action="store_true", help="score all folds' hypotheses together")
    parser.add_argument("--ngpu", default="0", help="GPUs for inference (0 or 1; default 0)")
    parser.add_argument(
        "--pending", action="store_true",
        help="with --fold: only say, by the exit status (0: yes), whether the fold has work",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    try:
        layout = Layout(args)
        if args.pool:
            pool(layout)
            return 0
        if args.pending:
            return 0 if fold_pending(layout, args.fold) else 1
        return evaluate_fold(layout, args.fold, args.ngpu)
    except (LayoutError, RuntimeError, OSError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
