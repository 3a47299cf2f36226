"""Bad inputs and their handling, rows 1-5, 12, 14, 15 and 17 of docs/reliability.md.

Each test feeds one fault to the stage that meets it first: data preparation
(``local/prepare_*.py``), feature dumping (``local/dump_feats.py``), training
(``ASRSERTask.main``, whose data check runs before anything is built or trained), or
inference (``Speech2Emotion`` and the ``asrser_inference`` CLI). The data are a few tiny
synthetic utterances (tests/conftest.py).
"""

import errno
import importlib.util
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Dict, List

import kaldiio
import numpy as np
import pytest
import soundfile
import torch
import yaml

from conftest import write_tiny_data
from espnet_asrser.bin import asrser_inference, asrser_score
from espnet_asrser.bin.asrser_inference import Speech2Emotion
from espnet_asrser.corpora.kaldi_dir import write_data_dir
from espnet_asrser.corpora.librispeech import LibriUtterance, write_librispeech
from espnet_asrser.tasks.asrser import ASRSERTask
from espnet_asrser.train.init_param import InitParamError, load_counted
from espnet_asrser.utils.kaldi_table import KaldiTableError, read_table
from espnet_asrser.utils.train_data import DataFileError

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "egs2" / "iemocap_asrser" / "ser1" / "local"
CONFIG = Path(__file__).parent / "configs" / "tiny_asrser.yaml"
FS = 16000


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"reliability_{name}", LOCAL / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dump_feats = _load_script("dump_feats")
prepare_iemocap = _load_script("prepare_iemocap")
prepare_librispeech = _load_script("prepare_librispeech")


# ----------------------------------------------------------------------------- helpers
def _read(path: Path) -> Dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines())


def _write(path: Path, table: Dict[str, str]) -> None:
    path.write_text("".join(f"{k} {v}\n" for k, v in table.items()), encoding="utf-8")


def tiny(root: Path, n: int = 4) -> Dict[str, Path]:
    """write_tiny_data plus shape files (samples), as collect_stats would write them."""
    d = write_tiny_data(root, n_utts=n)
    d["shape"] = root / "speech_shape"
    _write(d["shape"], {u: str(soundfile.info(w).frames) for u, w in _read(d["wav.scp"]).items()})
    return d


def data_dir(root: Path, n: int = 4) -> Path:
    """A validated data directory (wav.scp, text, emotion, utt2spk, spk2utt)."""
    d = write_tiny_data(root / "src", n_utts=n)
    tables = {name: _read(d[name]) for name in ("wav.scp", "text", "emotion")}
    tables["utt2spk"] = {u: "spk1" for u in tables["wav.scp"]}
    write_data_dir(root / "data", tables)
    return root / "data"


def train_cmd(d: Dict[str, Path], out: Path, *extra: str, valid=None) -> List[str]:
    """An asrser_train command line on ``d`` (``valid``: other files for the valid set)."""
    v = valid or d
    args = ["--config", str(CONFIG), "--mode", "asrser", "--token_list", str(d["token_list"])]
    for split, files in (("train", d), ("valid", v)):
        args += [
            f"--{split}_data_path_and_name_and_type={files['wav.scp']},speech,sound",
            f"--{split}_data_path_and_name_and_type={files['emotion']},emotion,text",
            f"--{split}_data_path_and_name_and_type={files['text']},text,text",
            f"--{split}_shape_file={files['shape']}",
        ]
    return [*args, "--batch_size", "2", "--output_dir", str(out), *extra]


def dump(data: Path, out: Path, *extra: str) -> int:
    """local/dump_feats.py compute (one job) then merge, as the recipe runs them."""
    rc = dump_feats.main(["compute", "--data", str(data), "--out", str(out), "--nj", "1",
                          "--job", "1", *extra])
    if rc:
        return rc
    return dump_feats.main(["merge", "--data", str(data), "--out", str(out), "--nj", "1"])


def _err(capsys) -> str:
    return capsys.readouterr().err


def _wav_of(data: Path, i: int) -> Path:
    return Path(list(read_table(data / "wav.scp").values())[i])


# ----------------------------------------------------------------------------- row 1
def test_row01_missing_key_in_text_stops_training_naming_it(tmp_path):
    d = tiny(tmp_path)
    text = _read(d["text"])
    del text["utt001"]
    _write(d["text"], text)
    with pytest.raises(DataFileError) as info:
        ASRSERTask.main(cmd=train_cmd(d, tmp_path / "exp"))
    message = str(info.value)
    assert f"{d['text']}: 1 utterances of {d['wav.scp']} are missing: utt001" in message
    assert not (tmp_path / "exp").exists()  # stopped before ESPnet wrote anything


def test_row01_key_only_in_emotion_stops_training_naming_it(tmp_path):
    d = tiny(tmp_path)
    _write(d["emotion"], {**_read(d["emotion"]), "utt999": "sad"})
    with pytest.raises(DataFileError, match=rf"{re.escape(str(d['emotion']))}: 1 utterances "
                       rf"are not in {re.escape(str(d['wav.scp']))}: utt999"):
        ASRSERTask.main(cmd=train_cmd(d, tmp_path / "exp"))


def test_row01_shape_file_missing_an_utterance_is_named(tmp_path):
    # ESPnet draws its batches from the shape file: an utterance missing there is silently
    # never trained on.
    d = tiny(tmp_path)
    shape = _read(d["shape"])
    del shape["utt002"]
    _write(d["shape"], shape)
    with pytest.raises(DataFileError, match=r"speech_shape: 1 utterances of .* missing: utt002"):
        ASRSERTask.main(cmd=train_cmd(d, tmp_path / "exp"))


def test_row01_missing_key_stops_dumping_naming_it(tmp_path, capsys):
    data = data_dir(tmp_path)
    emotion = read_table(data / "emotion")
    del emotion["utt003"]
    _write(data / "emotion", emotion)
    assert dump(data, tmp_path / "dump") == 1
    err = _err(capsys)
    assert f"{data}: 1 of 4 utterances are not in every table: emotion lacks utt003" in err
    assert "--drop_incomplete true" in err
    assert not (tmp_path / "dump" / "feats.scp").exists()


def test_row01_drop_incomplete_keeps_n_of_m_and_lists_the_dropped(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    data = data_dir(tmp_path)
    text = read_table(data / "text", allow_empty_value=True)
    del text["utt000"]
    _write(data / "text", text)
    out = tmp_path / "dump"
    assert dump_feats.main(["compute", "--data", str(data), "--out", str(out), "--nj", "1",
                            "--job", "1"]) == 0
    assert dump_feats.main(["merge", "--data", str(data), "--out", str(out), "--nj", "1",
                            "--drop_incomplete", "true"]) == 0
    assert "kept 3 of 4 utterances" in caplog.text and "utt000 (not in text)" in caplog.text
    assert (out / "dropped_utts").read_text() == "utt000 not in text\n"
    for table in ("feats.scp", "emotion", "utt2spk", "text", "utt2num_frames"):
        assert list(read_table(out / table, allow_empty_value=True)) == [
            "utt001", "utt002", "utt003"
        ]


# ----------------------------------------------------------------------------- row 2
def _rewrite_text(data: Path, transform) -> Path:
    path = data / "text"
    path.write_bytes(transform(path.read_bytes()))
    return path


def _merge_error(tmp_path, capsys, transform) -> str:
    data = data_dir(tmp_path)
    assert dump_feats.main(["compute", "--data", str(data), "--out", str(tmp_path / "dump"),
                            "--nj", "1", "--job", "1"]) == 0
    _rewrite_text(data, transform)
    capsys.readouterr()
    assert dump_feats.main(["merge", "--data", str(data), "--out", str(tmp_path / "dump"),
                            "--nj", "1"]) == 1
    assert not (tmp_path / "dump" / "feats.scp").exists()
    return _err(capsys)


def _lines(transform):
    def apply(data: bytes) -> bytes:
        lines = data.split(b"\n")
        transform(lines)
        return b"\n".join(lines)
    return apply


def test_row02_unsorted_keys_are_named_with_file_and_line(tmp_path, capsys):
    def swap(lines):
        lines[1], lines[2] = lines[2], lines[1]
    err = _merge_error(tmp_path, capsys, _lines(swap))
    assert f"{tmp_path / 'data' / 'text'}:3: key 'utt001' sorts before the previous key" in err


def test_row02_duplicate_keys_are_named_with_file_and_line(tmp_path, capsys):
    err = _merge_error(tmp_path, capsys, _lines(lambda lines: lines.insert(2, lines[1])))
    assert (f"{tmp_path / 'data' / 'text'}:3: duplicate utterance id 'utt001' (first on "
            f"line 2)") in err


def test_row02_crlf_line_ends_are_named_with_file_and_line(tmp_path, capsys):
    err = _merge_error(tmp_path, capsys, lambda data: data.replace(b"\n", b"\r\n"))
    assert f"{tmp_path / 'data' / 'text'}:1: CRLF line end" in err


def test_row02_non_utf8_bytes_are_named_with_file_and_line(tmp_path, capsys):
    def latin1(lines):
        lines[2] += " caf\u00e9".encode("latin-1")
    err = _merge_error(tmp_path, capsys, _lines(latin1))
    assert f"{tmp_path / 'data' / 'text'}:3: not valid UTF-8" in err


def test_row02_control_characters_are_named_with_file_and_line(tmp_path, capsys):
    def bell(lines):
        lines[3] = lines[3].replace(b" ", b" \x07", 1)
    err = _merge_error(tmp_path, capsys, _lines(bell))
    assert f"{tmp_path / 'data' / 'text'}:4: control character U+0007" in err


@pytest.mark.parametrize(
    "transform, message",
    [
        # ESPnet's reader keeps the "\r" in each value; the label check strips it, so
        # this file would train without a word.
        (lambda data: data.replace(b"\n", b"\r\n"), r"emotion:1: CRLF line end"),
        (lambda data: data.replace(b"sad", b"s\xe4d", 1), r"emotion:4: not valid UTF-8"),
    ],
    ids=["crlf", "non_utf8"],
)
def test_row02_bad_label_file_stops_training_with_file_and_line(tmp_path, transform, message):
    d = tiny(tmp_path)
    d["emotion"].write_bytes(transform(d["emotion"].read_bytes()))
    with pytest.raises(KaldiTableError, match=message):
        ASRSERTask.main(cmd=train_cmd(d, tmp_path / "exp"))


# ----------------------------------------------------------------------------- row 3
def test_row03_unknown_labels_stop_training_listing_them_and_the_allowed_set(tmp_path):
    d = tiny(tmp_path, n=6)
    emotion = _read(d["emotion"])
    emotion.update(utt001="Hap", utt003="excited", utt005="Hap")
    _write(d["emotion"], emotion)
    with pytest.raises(DataFileError) as info:
        ASRSERTask.main(cmd=train_cmd(d, tmp_path / "exp"))
    message = str(info.value)
    assert ("3 utterances have an emotion label that is not one of the emotion_classes "
            "['ang', 'hap', 'neu', 'sad']") in message
    assert "'Hap' (2 utterances, first at line 2: utt001)" in message
    assert "'excited' (1 utterances, first at line 4: utt003)" in message
    assert "'Hap' is not 'hap'" in message


def test_row03_label_mapping_of_the_data_loader_names_utterance_and_allowed_set(tmp_path):
    # The task's own preprocessor, as ESPnet's dataset applies it to every utterance (the
    # path of inference and of data read without the pre-training check).
    from espnet2.train.dataset import ESPnetDataset

    d = tiny(tmp_path)
    _write(d["emotion"], {**_read(d["emotion"]), "utt002": "excited"})
    args = ASRSERTask.get_parser().parse_args(
        ["--config", str(CONFIG), "--token_list", str(d["token_list"]),
         "--emotion_classes", "ang", "hap", "neu", "sad"]
    )
    dataset = ESPnetDataset(
        [(str(d["emotion"]), "emotion", "text"), (str(d["text"]), "text", "text")],
        preprocess=ASRSERTask.build_preprocess_fn(args, train=True),
    )
    assert dataset["utt001"][1]["emotion"].tolist() == [1]  # hap
    with pytest.raises(ValueError, match=re.escape(
        "utterance 'utt002': emotion label 'excited' is not one of the configured "
        "emotion_classes ['ang', 'hap', 'neu', 'sad']"
    )):
        dataset["utt002"]


# ----------------------------------------------------------------------------- row 4
def _dump_fails_naming(tmp_path, capsys, damage, reason: str) -> None:
    data = data_dir(tmp_path)
    wav = _wav_of(data, 2)
    damage(wav)
    out = tmp_path / "dump"
    rc = dump_feats.main(["compute", "--data", str(data), "--out", str(out), "--nj", "1",
                          "--job", "1"])
    err = _err(capsys)
    assert rc == 1
    assert "1 of 4 utterances have unusable audio" in err
    assert "utt002: " in err and str(wav) in err and reason in err
    # Nothing of the job is left for merge to take, which says so.
    assert sorted(p.name for p in (out / "split1").iterdir()) == []
    assert dump_feats.main(["merge", "--data", str(data), "--out", str(out), "--nj", "1"]) == 1
    assert "job 1 of 1 did not finish" in _err(capsys)


def test_row04_corrupt_wav_is_named_at_dumping(tmp_path, capsys):
    _dump_fails_naming(tmp_path, capsys, lambda wav: wav.write_bytes(b"RIFF junk" * 10),
                       "cannot read audio file")


def test_row04_truncated_wav_is_named_at_dumping(tmp_path, capsys):
    # libsndfile reads a cut-short WAV without an error, as a shorter utterance.
    def cut(wav: Path) -> None:
        data = wav.read_bytes()
        wav.write_bytes(data[: len(data) // 2])
    _dump_fails_naming(tmp_path, capsys, cut, "is truncated: the header declares")


def test_row04_zero_length_wav_is_named_at_dumping(tmp_path, capsys):
    _dump_fails_naming(
        tmp_path, capsys, lambda wav: soundfile.write(wav, np.zeros(0, np.float32), FS),
        "is empty (no samples)",
    )


@pytest.mark.parametrize("split", ["train", "valid"])
def test_row04_truncated_wav_stops_training_naming_it(tmp_path, split):
    d = tiny(tmp_path / "d")
    v = tiny(tmp_path / "v")
    wav = Path(_read((d if split == "train" else v)["wav.scp"])["utt001"])
    wav.write_bytes(wav.read_bytes()[:1000])
    with pytest.raises(DataFileError, match=rf"utt001 \(line 2\): audio file "
                       rf"{re.escape(str(wav))} is truncated"):
        ASRSERTask.main(cmd=train_cmd(d, tmp_path / "exp", valid=v))


# ----------------------------------------------------------------------------- row 5
def test_row05_wav_at_another_rate_is_an_error_at_dumping(tmp_path, capsys):
    data = data_dir(tmp_path)
    wav = _wav_of(data, 1)
    soundfile.write(wav, np.zeros(4000, np.float32), 8000)
    assert dump(data, tmp_path / "dump") == 1
    err = _err(capsys)
    assert f"utt001: audio file {wav} has a rate of 8000 Hz (expected 16000 Hz)" in err
    assert "--resample true" in err


def test_row05_stereo_wav_is_an_error_at_dumping(tmp_path, capsys):
    data = data_dir(tmp_path)
    wav = _wav_of(data, 3)
    soundfile.write(wav, np.zeros((4000, 2), np.float32), FS)
    assert dump(data, tmp_path / "dump") == 1
    assert f"utt003: audio file {wav} has 2 channels (expected mono)" in _err(capsys)


def test_row05_resampled_and_downmixed_when_configured(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    data = data_dir(tmp_path)
    reference = tmp_path / "reference"
    assert dump(data, reference) == 0
    mono, _ = soundfile.read(_wav_of(data, 3), dtype="float32")
    soundfile.write(_wav_of(data, 3), np.stack([mono, mono], axis=1), FS)
    seconds = soundfile.info(_wav_of(data, 1)).duration
    soundfile.write(_wav_of(data, 1), np.zeros(int(seconds * 8000), np.float32), 8000)
    out = tmp_path / "dump"
    assert dump(data, out, "--resample", "true", "--downmix", "true") == 0
    assert "down-mixed 2 channels for 1 utterances" in caplog.text
    assert "resampled 8000 -> 16000 Hz for 1 utterances" in caplog.text
    feats = {u: kaldiio.load_mat(v) for u, v in read_table(out / "feats.scp").items()}
    expected = {u: kaldiio.load_mat(v) for u, v in read_table(reference / "feats.scp").items()}
    assert np.allclose(feats["utt003"], expected["utt003"], atol=1e-5)  # same channels
    assert abs(len(feats["utt001"]) - len(expected["utt001"])) <= 1


def test_row05_mixed_rates_stop_training_naming_the_files(tmp_path):
    d = tiny(tmp_path)
    wav = Path(_read(d["wav.scp"])["utt002"])
    soundfile.write(wav, np.zeros(4000, np.float32), 8000)
    with pytest.raises(DataFileError, match=rf"utt002: {re.escape(str(wav))} is at 8000 Hz; "
                       r"the model's frontend takes 16000 Hz"):
        ASRSERTask.main(cmd=train_cmd(d, tmp_path / "exp"))


def test_row05_one_wrong_rate_throughout_stops_training(tmp_path):
    # ESPnet checks that the rates agree with each other, not with the model's frontend.
    d = tiny(tmp_path)
    for wav in _read(d["wav.scp"]).values():
        wave, _ = soundfile.read(wav, dtype="float32")
        soundfile.write(wav, wave, 8000)
    with pytest.raises(DataFileError, match=r"4 audio problems"):
        ASRSERTask.main(cmd=train_cmd(d, tmp_path / "exp"))


def test_row05_stereo_stops_training(tmp_path):
    d = tiny(tmp_path)
    wav = Path(_read(d["wav.scp"])["utt000"])
    wave, _ = soundfile.read(wav, dtype="float32")
    soundfile.write(wav, np.stack([wave, wave], axis=1), FS)
    with pytest.raises(DataFileError, match=r"utt000 \(line 1\): .* has 2 channels"):
        ASRSERTask.main(cmd=train_cmd(d, tmp_path / "exp"))


def test_row05_librispeech_preparation_checks_the_rate(tmp_path, capsys):
    root = tmp_path / "LibriSpeech"
    rng = np.random.default_rng(0)
    write_librispeech(root, [
        LibriUtterance(subset="dev-clean", speaker=19, chapter=198, index=i, transcript="YES",
                       audio=(0.1 * rng.standard_normal(4000)).astype(np.float32))
        for i in range(2)
    ])
    flac = next(root.rglob("*.flac"))
    soundfile.write(flac, np.zeros(2000, np.float32), 8000)
    args = ["--librispeech", str(root), "--out", str(tmp_path / "data"), "--nj", "1"]
    assert prepare_librispeech.main(args) == 1
    assert f"audio file {flac} has a rate of 8000 Hz (expected 16000 Hz)" in _err(capsys)
    assert prepare_librispeech.main([*args, "--resample", "true"]) == 0


# ----------------------------------------------------------------------------- row 12
@pytest.fixture(scope="module")
def init_files(tmp_path_factory):
    """Weights of an ASR-SER model of the tiny config, and of one with other SER sizes."""
    root = tmp_path_factory.mktemp("init_param")
    d = tiny(root / "data")
    files = {"data": d}
    for name, extra in (("same", []), ("other", ["--model_conf", "ser_hidden_size=6"])):
        args = ASRSERTask.get_parser().parse_args(
            ["--config", str(CONFIG), "--mode", "asrser", "--token_list", str(d["token_list"]),
             *extra]
        )
        torch.manual_seed(1)
        model = ASRSERTask.build_model(args)
        files[name] = root / f"{name}.pth"
        torch.save(model.state_dict(), files[name])
    files["parameters"] = [n for n, _ in model.named_parameters()]
    return files


def _model_keys(path: Path) -> Dict[str, torch.Size]:
    return {k: v.shape for k, v in torch.load(path, map_location="cpu").items()}


def test_row12_init_param_with_a_wrong_key_prefix_is_an_error(init_files, tmp_path):
    # ESPnet loads nothing for a source key that no tensor starts with, and says nothing.
    cmd = train_cmd(init_files["data"], tmp_path / "exp", "--init_param",
                    f"{init_files['same']}:encoderr")
    with pytest.raises(InitParamError, match=r"no parameter of the model was loaded from it "
                       r"\(loaded 0 of \d+ parameters and 0 of \d+ buffers"):
        ASRSERTask.main(cmd=cmd)
    assert not (tmp_path / "exp" / "1epoch.pth").exists()


def test_row12_ignore_init_mismatch_dropping_every_tensor_is_an_error(init_files, tmp_path):
    # With --ignore_init_mismatch, names that do not match are dropped one warning at a
    # time: here all of them ("asr." is cut off the file's names but not the model's).
    cmd = train_cmd(init_files["data"], tmp_path / "exp", "--init_param",
                    f"{init_files['same']}:asr", "--ignore_init_mismatch", "true")
    # One buffer matches by chance (asr.frontend.logmel.melmat -> frontend.logmel.melmat):
    # a fixed mel matrix, not a trained weight, so it does not count as loaded.
    with pytest.raises(InitParamError, match=r"no parameter of the model was loaded from it "
                       r"\(loaded 0 of \d+ parameters and 1 of \d+ buffers"):
        ASRSERTask.main(cmd=cmd)


def test_row12_partial_init_reports_loaded_and_kept_counts(init_files, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    ours, theirs = _model_keys(init_files["same"]), _model_keys(init_files["other"])
    params = init_files["parameters"]
    matching = sum(1 for k in params if theirs[k] == ours[k])
    assert 0 < matching < len(params)
    cmd = train_cmd(init_files["data"], tmp_path / "exp", "--max_epoch", "1",
                    "--init_param", str(init_files["other"]), "--ignore_init_mismatch", "true")
    ASRSERTask.main(cmd=cmd)
    n_buffers = len(ours) - len(params)
    assert (f"--init_param {init_files['other']}: loaded {matching} of {len(params)} "
            f"parameters and {n_buffers} of {n_buffers} buffers of the target") in caplog.text
    assert (f"{len(params) - matching} of {len(params)} parameters were not in the file (or "
            f"were skipped as mismatched) and keep their random initialisation: "
            f"audio_branch.") in caplog.text
    assert (tmp_path / "exp" / "1epoch.pth").exists()
    assert "train data checked: 4 utterances in speech (wav.scp), emotion (emotion)" in caplog.text


# ----------------------------------------------------------------------------- row 11
def _exp_dir_with_tokens(root: Path, weights: Path, tokens: List[str]) -> Path:
    """An ESPnet-style experiment dir: the checkpoint beside the config that trained it."""
    root.mkdir(parents=True)
    (root / "valid.acc.ave.pth").write_bytes(weights.read_bytes())
    (root / "tokens.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    (root / "config.yaml").write_text(
        yaml.safe_dump({"token_list": str(root / "tokens.txt")}), encoding="utf-8"
    )
    return root / "valid.acc.ave.pth"


def test_row11_init_param_trained_on_reordered_tokens_names_both_lists(init_files, tmp_path):
    # Same size, other order: every tensor loads without a shape error, so ESPnet alone
    # would train on a decoder whose ids mean other words.
    ours = _read_lines(init_files["data"]["token_list"])
    theirs = [*ours[:2], ours[3], ours[2], *ours[4:]]
    pth = _exp_dir_with_tokens(tmp_path / "asr_exp", init_files["same"], theirs)
    cmd = train_cmd(init_files["data"], tmp_path / "exp", "--init_param", str(pth))
    with pytest.raises(InitParamError, match=(
        rf"this training's --token_list .* \({len(ours)} tokens, sha256 \w+\) is not the "
        rf"token list of .*config.yaml, which trained the --init_param model "
        rf"\({len(ours)} tokens, sha256 \w+\); they first differ at id 2: "
        rf"'{re.escape(ours[2])}' vs '{re.escape(ours[3])}'"
    )):
        ASRSERTask.main(cmd=cmd)
    assert not (tmp_path / "exp" / "1epoch.pth").exists()


def test_row11_init_param_trained_on_another_token_list_size_names_both(init_files, tmp_path):
    ours = _read_lines(init_files["data"]["token_list"])
    pth = _exp_dir_with_tokens(tmp_path / "asr_exp", init_files["same"], [*ours, "extra"])
    cmd = train_cmd(init_files["data"], tmp_path / "exp", "--init_param", str(pth))
    with pytest.raises(InitParamError, match=(
        rf"\({len(ours)} tokens, .*\({len(ours) + 1} tokens, .* first differ at id "
        rf"{len(ours)}: '\(end\)' vs 'extra'"
    )):
        ASRSERTask.main(cmd=cmd)


def test_row11_token_independent_modules_load_from_another_token_list(init_files, tmp_path):
    # The encoder does not depend on the tokens: loading only it is allowed.
    ours = _read_lines(init_files["data"]["token_list"])
    pth = _exp_dir_with_tokens(tmp_path / "asr_exp", init_files["same"], ours[::-1])
    cmd = train_cmd(init_files["data"], tmp_path / "exp", "--max_epoch", "1",
                    "--init_param", f"{pth}:asr.encoder:asr.encoder")
    ASRSERTask.main(cmd=cmd)
    assert (tmp_path / "exp" / "1epoch.pth").exists()


def _read_lines(path: Path) -> List[str]:
    return [line.rstrip("\n") for line in open(path, encoding="utf-8")]


def test_row12_counts_match_the_tensors_that_changed(init_files):
    # The counting wrapper around ESPnet's loader, on a model whose every tensor we see.
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    args = ASRSERTask.get_parser().parse_args(
        ["--config", str(CONFIG), "--mode", "asrser",
         "--token_list", str(init_files["data"]["token_list"])]
    )
    torch.manual_seed(2)
    model = ASRSERTask.build_model(args)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    counts = load_counted(load_pretrained_model, str(init_files["other"]), model,
                          ignore_init_mismatch=True)
    source = torch.load(init_files["other"], map_location="cpu")
    after = model.state_dict()
    assert sorted(counts["loaded"] + counts["kept"]) == sorted(after)
    assert counts["loaded"] and counts["kept"]
    assert all(torch.equal(after[k], source[k]) for k in counts["loaded"])
    assert all(torch.equal(after[k], before[k]) for k in counts["kept"])
    assert all(source[k].shape != after[k].shape for k in counts["kept"])


# ----------------------------------------------------------------------------- row 14
def _split_files(out: Path) -> List[str]:
    return sorted(p.name for p in (out / "split1").iterdir())


def test_row14_disk_full_while_dumping_leaves_no_complete_looking_output(
    tmp_path, capsys, monkeypatch
):
    data = data_dir(tmp_path)
    out = tmp_path / "dump"
    args = ["compute", "--data", str(data), "--out", str(out), "--nj", "1", "--job", "1"]
    assert dump_feats.main(args) == 0  # an earlier, complete run of the job
    writer = kaldiio.WriteHelper

    class DiskFullAtThirdUtterance:
        def __init__(self, spec):
            self.inner, self.n = writer(spec), 0

        def __enter__(self):
            self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def __call__(self, key, value):
            self.n += 1
            if self.n == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.inner(key, value)

    monkeypatch.setattr(kaldiio, "WriteHelper", DiskFullAtThirdUtterance)
    assert dump_feats.main(args) == 1
    err = _err(capsys)
    assert f"cannot write the dump to {out / 'split1'}: No space left on device (disk full?)" in err
    assert "Traceback" not in err
    # Neither the half-written ark nor the earlier run's outputs are left for merge.
    assert _split_files(out) == []
    assert dump_feats.main(["merge", "--data", str(data), "--out", str(out), "--nj", "1"]) == 1
    assert "job 1 of 1 did not finish" in _err(capsys)


def test_row14_disk_full_while_merging_leaves_no_tables(tmp_path, capsys, monkeypatch):
    data = data_dir(tmp_path)
    out = tmp_path / "dump"
    assert dump_feats.main(["compute", "--data", str(data), "--out", str(out), "--nj", "1",
                            "--job", "1"]) == 0
    write_table, calls = dump_feats.write_table, []

    def disk_full_at_third_table(path, table, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_table(path, table, **kwargs)

    monkeypatch.setattr(dump_feats, "write_table", disk_full_at_third_table)
    assert dump_feats.main(["merge", "--data", str(data), "--out", str(out), "--nj", "1"]) == 1
    assert "No space left on device (disk full?)" in _err(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["split1"]


def test_row14_unwritable_output_dir_is_a_clear_error(tmp_path, capsys):
    data = data_dir(tmp_path)
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a regular file where the dump directory's parent should be\n")
    out = blocker / "dump"
    rc = dump_feats.main(["compute", "--data", str(data), "--out", str(out), "--nj", "1",
                          "--job", "1"])
    err = _err(capsys)
    assert rc == 1 and "Traceback" not in err
    assert f"cannot write the dump to {out / 'split1'}: Not a directory" in err


# ----------------------------------------------------------------------------- row 15
@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """config.yaml and weights of an (untrained) ASR-SER model of the tiny config."""
    root = tmp_path_factory.mktemp("s2e")
    d = tiny(root / "data")
    args = ASRSERTask.get_parser().parse_args(
        ["--config", str(CONFIG), "--mode", "asrser", "--token_list", str(d["token_list"])]
    )
    torch.manual_seed(0)
    model = ASRSERTask.build_model(args)
    torch.save(model.state_dict(), root / "model.pth")
    (root / "config.yaml").write_text(yaml.safe_dump(vars(args)), encoding="utf-8")
    return root / "config.yaml", root / "model.pth", d


def _waves(d, n=2):
    return [soundfile.read(w, dtype="float32")[0] for w in list(_read(d["wav.scp"]).values())[:n]]


def _same(a, b) -> bool:
    return a.label == b.label and np.allclose(
        list(a.posteriors.values()), list(b.posteriors.values()), atol=1e-5
    )


def test_row15_too_short_input_is_an_error_for_that_utterance_only(model_files):
    config, model, d = model_files
    s2e = Speech2Emotion(config, model)
    first, last = _waves(d)
    results = s2e([first, np.full(100, 0.1, np.float32), last])
    assert results[1].label is None and results[1].posteriors == {}
    assert results[1].error == (
        f"too short: 100 samples, 0.006 s; the model's frontend needs at least "
        f"{s2e.min_samples} samples (its STFT window)"
    )
    assert s2e.min_samples == 257  # n_fft 512, centred
    alone = s2e([first, last])
    assert _same(results[0], alone[0]) and _same(results[2], alone[1])


def test_row15_a_failing_batch_is_decoded_one_by_one(model_files, monkeypatch):
    # Models whose encoder has a minimum of its own (ESPnet's conv subsampling raises
    # TooShortUttError): the batch fails as a whole; the others must still be decoded.
    config, model, d = model_files
    s2e = Speech2Emotion(config, model)
    monkeypatch.setattr(s2e, "min_samples", 1)
    first, last = _waves(d)
    results = s2e([first, np.full(100, 0.1, np.float32), last])
    assert re.fullmatch(r"cannot be decoded \(100 samples, 0\.006 s\): RuntimeError: .*",
                        results[1].error, flags=re.DOTALL)
    alone = s2e([first, last])
    assert _same(results[0], alone[0]) and _same(results[2], alone[1])


def test_row15_silence_gives_a_defined_result(model_files):
    config, model, _ = model_files
    results = Speech2Emotion(config, model)([np.zeros(FS, np.float32)])
    assert results[0].error is None and results[0].label in ("ang", "hap", "neu", "sad")
    assert abs(sum(results[0].posteriors.values()) - 1) < 1e-5
    assert isinstance(results[0].transcript, str)


def test_row15_non_finite_output_is_an_error_not_a_label(model_files, monkeypatch):
    # argmax of NaN posteriors is the first class: "ang", with no sign of trouble.
    config, model, d = model_files
    s2e = Speech2Emotion(config, model)
    ser_logits = s2e.model.ser_logits

    def nan_for_the_longest(*args, **kwargs):
        logits = ser_logits(*args, **kwargs)
        return torch.cat([torch.full_like(logits[:1], float("nan")), logits[1:]])

    monkeypatch.setattr(s2e.model, "ser_logits", nan_for_the_longest)
    waves = _waves(d)
    longest = int(np.argmax([len(w) for w in waves]))
    results = s2e(waves)
    assert results[longest].label is None
    assert results[longest].error.startswith("the model's output is not finite")
    assert results[1 - longest].label is not None


def test_row15_cli_writes_the_others_and_lists_the_failed(model_files, tmp_path, capsys):
    config, model, d = model_files
    wav_scp = _read(d["wav.scp"])
    short, empty, cut, slow = (tmp_path / f"{n}.wav" for n in ("short", "empty", "cut", "8k"))
    soundfile.write(short, np.full(100, 0.1, np.float32), FS)
    soundfile.write(empty, np.zeros(0, np.float32), FS)
    data = Path(wav_scp["utt000"]).read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    soundfile.write(slow, np.zeros(4000, np.float32), 8000)
    wav_scp.update(utt100=str(short), utt101=str(empty), utt102=str(cut), utt103=str(slow))
    _write(tmp_path / "wav.scp", wav_scp)
    out = tmp_path / "decode"
    rc = asrser_inference.main([
        "--asrser_train_config", str(config), "--asrser_model_file", str(model),
        "--data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound",
        "--output_dir", str(out), "--batch_size", "3",
    ])
    assert rc == 1
    assert sorted(_read(out / "emotion")) == ["utt000", "utt001", "utt002", "utt003"]
    assert sorted(_read(out / "posteriors")) == ["utt000", "utt001", "utt002", "utt003"]
    failed = _read(out / "failed")
    assert sorted(failed) == ["utt100", "utt101", "utt102", "utt103"]
    assert failed["utt100"].startswith("too short: 100 samples")
    assert failed["utt101"] == f"audio file {empty} is empty (no samples)"
    assert failed["utt102"].startswith(f"audio file {cut} is truncated")
    assert failed["utt103"] == f"audio file {slow} has a rate of 8000 Hz (expected 16000 Hz)"
    # The scorer refuses the output: a failed utterance is never left out of a score.
    ref = tmp_path / "ref_emotion"
    _write(ref, {u: "hap" for u in wav_scp})
    assert asrser_score.main(["--ref_emotion", str(ref), "--hyp_emotion", str(out / "emotion"),
                              "--classes", "ang", "hap", "neu", "sad",
                              "--output_json", str(tmp_path / "scores.json")]) == 1
    assert "utt100" in _err(capsys)


# ----------------------------------------------------------------------------- row 17
def test_row17_iemocap_unset_names_the_variable(tmp_path, capsys):
    assert prepare_iemocap.main(["--iemocap", "", "--out", str(tmp_path / "data")]) == 1
    assert "IEMOCAP is not set: write the location of the IEMOCAP_full_release directory" \
        in _err(capsys)


def test_row17_iemocap_wrong_path_names_the_variable_and_what_was_expected(tmp_path):
    parent = tmp_path / "corpora"
    (parent / "IEMOCAP_full_release" / "Session1" / "dialog" / "EmoEvaluation").mkdir(
        parents=True
    )
    result = subprocess.run(
        [sys.executable, str(LOCAL / "prepare_iemocap.py"), "--iemocap", str(parent),
         "--out", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert (f"IEMOCAP={parent} (db.sh; passed as --iemocap): no Session1/dialog/EmoEvaluation "
            f"under it (did you mean IEMOCAP={parent / 'IEMOCAP_full_release'}?); set IEMOCAP "
            f"in db.sh to the IEMOCAP_full_release directory, the one that holds Session1 ... "
            f"Session5") in result.stderr
    assert not (tmp_path / "data").exists()


def test_row17_iemocap_missing_directory_names_the_variable(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert prepare_iemocap.main(["--iemocap", str(missing), "--out", str(tmp_path)]) == 1
    assert f"IEMOCAP={missing} (db.sh; passed as --iemocap) does not exist; set IEMOCAP in " \
        "db.sh" in _err(capsys)


def test_row17_librispeech_wrong_path_names_the_variable(tmp_path, capsys):
    subset = tmp_path / "LibriSpeech" / "dev-clean"
    subset.mkdir(parents=True)
    assert prepare_librispeech.main(["--librispeech", str(subset), "--out", str(tmp_path)]) == 1
    err = _err(capsys)
    assert f"LIBRISPEECH={subset} (db.sh; passed as --librispeech): none of the subsets" in err
    assert f"(did you mean LIBRISPEECH={subset.parent}?); set LIBRISPEECH in db.sh" in err
