"""The recipe started from an ESPnet model-zoo ASR archive: ``./run.sh --pretrained_asr X.zip``.

A tiny ASR in the shape of the model zoo's LibriSpeech models (ESPnet's default STFT
frontend, global MVN, Transformer encoder and decoder, BPE units, CTC) is trained for one
epoch on the tiny mini LibriSpeech with ESPnet's own ``asr_train`` and packed with
ESPnet's own ``espnet2.bin.pack asr``, the way an ESPnet recipe makes the archives the
zoo serves (paths relative to its recipe directory). The recipe then runs stages 1-12 on
the tiny mini corpora, fold 1 only, with the conf/debug configs and that zip, in a copy
of the recipe in a temporary directory (see tests/test_recipe.py). Checked afterwards:

* stages 5 and 6 train nothing and say why; no LibriSpeech features are dumped;
* stage 7 decodes with the archive (WER on words, LibriSpeech and IEMOCAP);
* the ASR-SER models are named after the archive, read waveforms, and have the
  archive's ASR part, tokenizer and decoder size;
* the run's RESULTS.md (exp/results/all_speaker_independent_pretrained_<name>/) has the
  archive's rows with the numbers of the score files;
* the packed ASR-SER model opens with ``Speech2Emotion.from_pretrained``;
* a second run changes nothing, and a model-zoo name fails at once saying what to do.

About 3 minutes on two CPU cores.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sentencepiece
import soundfile
import yaml

from test_pretrained_asr import ESPNET_ASR_CONFIG, train_and_pack_asr
from test_recipe import (
    RECIPE,
    copy_recipe,
    percent,
    read_table,
    run_recipe,
    snapshot,
    table_rows,
)

# One fold keeps the run short; tests/test_recipe.py pools all five.
FOLDS = ("1",)
RUN_ARGS = ["--conf_dir", "conf/debug", "--nj", "2", "--train_jobs", "2", "--folds", "1"]
NAME = "zoo_bpe_transformer"  # the archive's file name, hence its experiments' names
KEY = f"pretrained_{NAME}"

# The zoo models' structure at toy size (tests/test_pretrained_asr.py: ESPnet's default
# frontend, global MVN, Transformer with conv2d subsampling, BPE units, CTC weight 0.3),
# with the recipe's frame rate and a larger batch for the mini LibriSpeech.
ZOO_ASR_CONFIG = {
    **ESPNET_ASR_CONFIG,
    "frontend_conf": {"fs": "16k", "n_fft": 512, "hop_length": 160, "n_mels": 20},
    "batch_size": 8,
    "optim_conf": {"lr": 0.002},
}


def make_zoo_archive(root: Path, librispeech: Path) -> Path:
    """Train and pack a tiny BPE Transformer ASR as an ESPnet recipe does (``root`` plays
    its recipe directory); return the zip."""
    subprocess.run(
        [sys.executable, str(RECIPE / "local" / "prepare_librispeech.py"),
         "--librispeech", str(librispeech), "--out", str(root / "data"), "--nj", "2"],
        check=True, capture_output=True,
    )
    train, valid = "data/train_libri", "data/dev_clean"
    cwd, argv = Path.cwd(), sys.argv
    os.chdir(root)
    sys.argv = ["asr_train"]
    try:
        # BPE on the training transcripts; ESPnet's token list layout around the pieces.
        Path("data/bpe").mkdir()
        lines = Path(f"{train}/text").read_text(encoding="utf-8").splitlines()
        Path("data/bpe/train.txt").write_text(
            "\n".join(line.split(maxsplit=1)[1] for line in lines) + "\n", encoding="utf-8"
        )
        sentencepiece.SentencePieceTrainer.train(
            input="data/bpe/train.txt", model_prefix="data/bpe/bpe", vocab_size=60,
            model_type="bpe", character_coverage=1.0, minloglevel=2,
        )
        sp = sentencepiece.SentencePieceProcessor(model_file="data/bpe/bpe.model")
        pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
                  if not (sp.is_unknown(i) or sp.is_control(i))]
        Path("data/bpe/tokens.txt").write_text(
            "\n".join(["<blank>", "<unk>", *pieces, "<sos/eos>"]) + "\n", encoding="utf-8"
        )
        Path("asr.yaml").write_text(yaml.safe_dump(ZOO_ASR_CONFIG), encoding="utf-8")
        common = ["--config", "asr.yaml", "--token_type", "bpe", "--bpemodel", "data/bpe/bpe.model",
                  "--token_list", "data/bpe/tokens.txt"]
        for split, d in (("train", train), ("valid", valid)):
            common += [f"--{split}_data_path_and_name_and_type={d}/wav.scp,speech,sound",
                       f"--{split}_data_path_and_name_and_type={d}/text,text,text"]
        train_and_pack_asr(common, f"{train}/wav.scp", f"{valid}/wav.scp",
                           ["data/bpe/bpe.model"], f"packed/{NAME}.zip")
    finally:
        os.chdir(cwd)
        sys.argv = argv
    return root / "packed" / f"{NAME}.zip"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe_zoo")
    corpora = root / "corpora"
    subprocess.run(
        [sys.executable, str(RECIPE / "local" / "make_mini_corpora.py"), "--out", str(corpora),
         "--size", "tiny", "--seed", "0", "--nj", "2"],
        check=True, capture_output=True,
    )
    zoo = root / "zoo"
    zoo.mkdir()
    start = time.monotonic()
    archive = make_zoo_archive(zoo, corpora / "LibriSpeech")
    archive_time = time.monotonic() - start
    # The zoo recipe's own files are not needed any more: the archive has them all.
    for name in ("data", "exp"):
        shutil.rmtree(zoo / name)
    work = copy_recipe(root)
    env = dict(
        os.environ,
        IEMOCAP=str(corpora / "IEMOCAP_full_release"),
        LIBRISPEECH=str(corpora / "LibriSpeech"),
        # Nothing may land in the user's cache: the archive is unpacked below exp/.
        ESPNET_ASRSER_CACHE=str(root / "cache"),
    )
    start = time.monotonic()
    rc, log = run_recipe(
        work, env, "--stage", "1", "--stop-stage", "12", *RUN_ARGS,
        "--pretrained_asr", str(archive), log=root / "run1.log",
    )
    assert rc == 0, f"run.sh failed; end of its log:\n{log[-6000:]}"
    print(f"archive: {archive_time:.0f} s, recipe: {time.monotonic() - start:.0f} s")
    return {"work": work, "env": env, "log": log, "archive": archive, "root": root}


def ser_exp(mode: str, k: str) -> str:
    suffix = f"_{KEY}" if mode == "asrser" else ""
    return f"exp/ser_fold{k}_debug_train_{mode}{suffix}"


def test_stages_that_are_not_needed_say_why(recipe):
    log, work = recipe["log"], recipe["work"]
    for stage in range(1, 13):
        assert f"Stage {stage} finished" in log, stage
    assert "skipped: the ASR model is given (--pretrained_asr)" in log
    assert "no pre-training: the ASR model is given" in log
    assert "LibriSpeech features are not dumped: the pretrained ASR reads waveforms" in log
    assert not (work / "dump" / "fbank" / "test_clean").exists()
    assert not list((work / "exp").glob("asr_stats_*"))
    asr_exp = work / "exp" / f"asr_{KEY}"
    info = json.loads((asr_exp / "info.json").read_text())
    assert info["token_type"] == "bpe" and info["decoder"] == "transformer"
    assert info["decoder_state_size"] == 16
    assert (asr_exp / "model.pth").resolve().is_file()
    # Every file the unpacked config names is below exp/, none in a user cache.
    config = yaml.safe_load((asr_exp / "config.yaml").read_text())
    assert Path(config["bpemodel"]).is_relative_to(asr_exp.resolve())
    assert Path(config["normalize_conf"]["stats_file"]).is_relative_to(asr_exp.resolve())
    assert not (recipe["root"] / "cache").exists()


def test_decoding_with_the_archive_is_scored_on_words(recipe):
    work = recipe["work"]
    decode = work / "exp" / f"asr_{KEY}" / "decode_debug_decode_asr_model"
    for name in ("test_clean", "iemocap_all", "iemocap_fold1_test"):
        score = json.loads((decode / name / "score.json").read_text())
        refs = read_table(work / "data" / name / "text")
        assert score["n"] == len(refs)
        assert score["wer"]["ref_words"] == sum(len(t.split()) for t in refs.values())
    # Hypotheses are detokenised words (no BPE marks) in the references' convention.
    hyps = read_table(decode / "test_clean" / "text")
    assert sorted(hyps) == sorted(read_table(decode / "test_clean" / "text.1best"))
    assert not any("\u2581" in t for t in hyps.values())
    assert all(t == t.upper() for t in hyps.values())


def test_asrser_models_are_the_archive_on_waveforms(recipe):
    work = recipe["work"]
    for k in FOLDS:
        config = yaml.safe_load((work / ser_exp("asrser", k) / "config.yaml").read_text())
        assert config["token_type"] == "bpe"
        assert config["asr_config"]["decoder"] == "transformer"
        assert config["asr_config"]["frontend"] == "default"
        # The acoustic branch: the audio baseline's log-mel, with the fold's statistics
        # of the waveform data.
        assert config["frontend"] == "logmel" and config["frontend_conf"]["n_mels"] == 40
        assert config["normalize_conf"]["stats_file"] == (
            f"exp/ser_stats_fold{k}_raw/train/feats_stats.npz"
        )
        assert config["train_data_path_and_name_and_type"][0] == [
            f"data/iemocap_fold{k}_train/wav.scp", "speech", "sound"
        ]
    # The baselines keep the dumped features and the word list.
    text = yaml.safe_load((work / ser_exp("text", "1") / "config.yaml").read_text())
    assert text["token_type"] == "word"
    assert text["train_data_path_and_name_and_type"][0][0].startswith("dump/fbank/")


def test_results_show_the_archive_rows_with_the_scored_numbers(recipe):
    work = recipe["work"]
    results = work / "exp" / "results" / f"all_speaker_independent_{KEY}"
    markdown = (results / "RESULTS.md").read_text(encoding="utf-8")
    label = f"[pretrained: {NAME}]"
    expected = {
        "Audio-based": "audio",
        "Text-based": "text",
        f"Text-based (ASR transcripts) {label}": "text_asr",
        "Combined": "combined",
        f"Combined (ASR transcripts) {label}": "combined_asr",
        f"ASR-SER {label}": "asrser",
    }
    rows = {r[0]: r for r in table_rows(markdown, "## Table 1")}
    assert list(rows) == list(expected)
    for row, key in expected.items():
        scores = json.loads((results / key / "pooled.json").read_text())
        # WA recomputed from the pooled hypotheses and references themselves.
        ref = read_table(results / key / "pooled" / "ref" / "emotion")
        hyp = read_table(results / key / "pooled" / "emotion")
        assert scores["wa"] == pytest.approx(sum(ref[u] == hyp[u] for u in ref) / len(ref))
        wer = scores["wer"]["wer"] if scores["wer"] else None
        assert rows[row][1:4] == [percent(scores["wa"]), percent(scores["ua"]), percent(wer)]
        assert (wer is None) == (key in ("audio", "text", "combined"))
    per_fold = table_rows(markdown, "## Per fold")
    assert len(per_fold) == len(expected) * len(FOLDS)
    for row in per_fold:
        scores = json.loads((results / expected[row[0]] / f"fold{row[1]}.json").read_text())
        assert row[2:5] == [str(scores["n"]), percent(scores["wa"]), percent(scores["ua"])]
    assert f"## Table 3: ASR-SER {label} confusion matrix" in markdown
    assert f"## ASR: word error rates of the ASR model {label}" in markdown
    assert f"`{recipe['archive']}`" in markdown and "bpe units (60 tokens" in markdown
    assert f"ASR model: pretrained: {NAME}" in markdown


def test_packed_asrser_model_opens_with_from_pretrained(recipe, monkeypatch, tmp_path):
    from espnet_asrser.bin.asrser_inference import Speech2Emotion

    work = recipe["work"]
    archive = work / "exp" / "packed" / f"ser_fold1_debug_train_asrser_{KEY}.zip"
    monkeypatch.setenv("ESPNET_ASRSER_CACHE", str(tmp_path / "cache"))
    packed = Speech2Emotion.from_pretrained(str(archive))
    assert packed.args.token_type == "bpe" and packed.model.asr_state_size == 16
    exp = ser_exp("asrser", "1")
    monkeypatch.chdir(work)  # the trained model's config names its files from there
    # The archive carries the run's decoding settings; the trained model gets them by hand.
    trained = Speech2Emotion(f"{exp}/config.yaml", f"{exp}/valid.acc_ser.best.pth",
                             decode_config="conf/debug/decode_asr.yaml")
    wav = read_table(work / "data" / "iemocap_fold1_test" / "wav.scp")
    waves = [soundfile.read(wav[u], dtype="float32")[0] for u in sorted(wav)[:2]]
    for a, b in zip(packed(waves, fs=16000), trained(waves, fs=16000)):
        assert a.label == b.label and a.transcript == b.transcript
        assert a.posteriors == pytest.approx(b.posteriors, abs=1e-6)


def test_second_run_is_fast_and_changes_nothing(recipe, tmp_path):
    work, env = recipe["work"], recipe["env"]
    before = snapshot(work)
    start = time.monotonic()
    rc, log = run_recipe(
        work, env, "--stage", "1", "--stop_stage", "12", *RUN_ARGS,
        "--pretrained_asr", str(recipe["archive"]), log=tmp_path / "run2.log",
    )
    assert rc == 0, log[-3000:]
    assert snapshot(work) == before
    assert time.monotonic() - start < 90


def test_model_zoo_name_says_how_to_pass_a_local_file(tmp_path):
    work = copy_recipe(tmp_path)
    env = dict(os.environ, IEMOCAP="", LIBRISPEECH="")
    rc, log = run_recipe(work, env, "--stage", "13", "--pretrained_asr",
                         "pyf98/librispeech_conformer", log=tmp_path / "a.log")
    assert rc != 0
    assert "Model-zoo names are not downloaded here" in log
    assert "ModelDownloader" in log and "pass its local path as --pretrained_asr" in log
