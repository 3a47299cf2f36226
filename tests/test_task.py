"""The ESPnet contract of ASRSERTask and its CLIs: --help, --print_config round trip,
collect_stats + one epoch through ASRSERTask.main, and decoding the trained models with
Speech2Emotion and the asrser_inference CLI."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

from espnet_asrser.bin import asrser_inference
from espnet_asrser.bin.asrser_inference import Speech2Emotion
from espnet_asrser.espnet_model import MODES
from espnet_asrser.tasks.asrser import ASRSERTask

CONFIG = Path(__file__).parent / "configs" / "tiny_asrser.yaml"


def print_config(monkeypatch, *args):
    """What ``asrser_train --print_config ARGS`` prints (ESPnet reads sys.argv for it)."""
    monkeypatch.setattr(sys, "argv", ["asrser_train", "--print_config", *args])
    return yaml.safe_load(yaml.safe_dump(ASRSERTask.get_default_config()))


def test_print_config_cli_prints_yaml(tiny_data):
    out = subprocess.run(
        [sys.executable, "-m", "espnet_asrser.bin.asrser_train", "--print_config",
         "--config", str(CONFIG), "--mode", "asrser"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    assert config["mode"] == "asrser" and config["decoder"] == "a2w"
    # Complete: defaults of keys the YAML did not set are printed too.
    assert config["model_conf"]["asr_weight"] == 0.2
    assert config["model_conf"]["ser_hidden_size"] == 8
    # asr_model_conf holds only what is given: over a pretrained ASR's own model_conf,
    # a listed default would silently replace that model's setting.
    assert config["asr_model_conf"] == {"ctc_weight": 0.0, "lsm_weight": 0.1}


@pytest.mark.parametrize(
    "module", ["asrser_train", "asr_train", "asrser_inference", "asrser_score"]
)
def test_cli_help(module):
    out = subprocess.run(
        [sys.executable, "-m", f"espnet_asrser.bin.{module}", "--help"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout.lower()


@pytest.mark.parametrize("mode", MODES)
def test_print_config_round_trip(mode, monkeypatch, tmp_path, tiny_data):
    first = print_config(monkeypatch, "--config", str(CONFIG), "--mode", mode,
                         "--token_list", str(tiny_data["token_list"]))
    assert first["mode"] == mode
    assert first["model_conf"]["asr_weight"] == 0.2
    assert first["decoder"] == "a2w" and first["preencoder"] == "stack"
    dumped = tmp_path / "config.yaml"
    dumped.write_text(yaml.safe_dump(first))
    assert print_config(monkeypatch, "--config", str(dumped)) == first


def data_args(d, split):
    return [
        f"--{split}_data_path_and_name_and_type={d['wav.scp']},speech,sound",
        f"--{split}_data_path_and_name_and_type={d['emotion']},emotion,text",
        f"--{split}_data_path_and_name_and_type={d['text']},text,text",
    ]


def train(mode, d, out: Path, config: Path = CONFIG):
    """collect_stats, then one epoch from the config, the way the recipe runs them."""
    common = ["--config", str(config), "--mode", mode, "--token_list", str(d["token_list"]),
              *data_args(d, "train"), *data_args(d, "valid")]
    stats = out / "stats"
    ASRSERTask.main(cmd=[*common, "--collect_stats", "true", "--normalize", "none",
                         "--output_dir", str(stats),
                         "--train_shape_file", str(d["wav.scp"]),
                         "--valid_shape_file", str(d["wav.scp"])])
    ASRSERTask.main(cmd=[*common, "--output_dir", str(out / "exp"),
                         "--normalize", "global_mvn",
                         "--normalize_conf", f"stats_file={stats}/train/feats_stats.npz",
                         "--train_shape_file", f"{stats}/train/speech_shape",
                         "--valid_shape_file", f"{stats}/valid/speech_shape"])
    return out / "exp"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_data):
    """One epoch per mode, each from the complete config that --print_config printed."""
    root = tmp_path_factory.mktemp("trained")
    exps = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for mode in ("audio", "combined", "asrser"):
            printed = root / f"{mode}.yaml"
            printed.write_text(yaml.safe_dump(print_config(monkeypatch, "--config", str(CONFIG), "--mode", mode)))
            monkeypatch.setattr(sys, "argv", ["asrser_train"])
            exps[mode] = train(mode, tiny_data, root / mode, config=printed)
    return exps


@pytest.mark.parametrize("mode", ["audio", "combined", "asrser"])
def test_one_epoch_writes_checkpoints_and_stats(mode, trained):
    exp = trained[mode]
    assert (exp / "valid.acc_ser.best.pth").exists()
    assert (exp / "1epoch.pth").exists()
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["mode"] == mode
    assert config["normalize"] == "global_mvn"
    state = torch.load(exp / "valid.acc_ser.best.pth", map_location="cpu")
    assert any(k.startswith("classifier.") for k in state)
    assert any(k.startswith("asr.decoder.") for k in state) == (mode == "asrser")


def test_one_epoch_writes_plots(trained):
    """Plots are on (tests/configs/tiny_asrser.yaml as every recipe config): ESPnet's
    training curves and tensorboard logs, and in att_ws/ the A2W decoder's attention for
    each of num_att_plot validation utterances; the audio model has no attention."""
    exp = trained["asrser"]
    for curve in ("loss", "loss_ser", "acc_ser", "loss_asr"):
        assert (exp / "images" / f"{curve}.png").read_bytes().startswith(b"\x89PNG")
    assert list((exp / "tensorboard" / "train").glob("events.out.tfevents.*"))
    pictures = sorted((exp / "att_ws").glob("*/asr.decoder.attention.1ep.png"))
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert len(pictures) == config["num_att_plot"] >= 1
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in pictures)
    assert (trained["audio"] / "images" / "acc_ser.png").is_file()
    assert not (trained["audio"] / "att_ws").exists()


def load_waves(d, n=3):
    lines = Path(d["wav.scp"]).read_text().splitlines()[:n]
    return [soundfile.read(line.split()[1], dtype="float32")[0] for line in lines]


def test_speech2emotion_with_a2w_decoder(trained, tiny_data):
    s2e = Speech2Emotion(trained["asrser"] / "config.yaml",
                         trained["asrser"] / "valid.acc_ser.best.pth")
    waves = load_waves(tiny_data)
    results = s2e(waves, fs=16000)
    assert len(results) == 3
    for res in results:
        assert res.label in ("ang", "hap", "neu", "sad")
        assert abs(sum(res.posteriors.values()) - 1.0) < 1e-5
        assert isinstance(res.transcript, str)
    alone = s2e(waves[1])[0]
    assert np.allclose(list(alone.posteriors.values()), list(results[1].posteriors.values()),
                       atol=1e-5)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(0, np.float32), "empty audio"),
        (np.full(800, np.nan, np.float32), "NaN"),
        (np.zeros((2, 2, 800), np.float32), "samples, channels"),
        (np.zeros(800, np.int64), "integer PCM"),
    ],
)
def test_speech2emotion_rejects_bad_input(trained, bad, message):
    # Other rates, several channels and integer PCM are converted:
    # tests/test_inference_inputs.py.
    s2e = Speech2Emotion(trained["audio"] / "config.yaml",
                         trained["audio"] / "valid.acc_ser.best.pth")
    with pytest.raises((ValueError, TypeError), match=message):
        s2e(bad)


def test_speech2emotion_combined_needs_text(trained, tiny_data):
    s2e = Speech2Emotion(trained["combined"] / "config.yaml",
                         trained["combined"] / "valid.acc_ser.best.pth")
    waves = load_waves(tiny_data, 2)
    with pytest.raises(ValueError, match="needs 'text'"):
        s2e(waves)
    results = s2e(waves, text=["hello there", "good day"])
    assert [r.transcript for r in results] == [None, None]


def test_speech2emotion_with_transformer_decoder(tmp_path, tiny_data):
    config = yaml.safe_load(CONFIG.read_text())
    config["decoder"] = "transformer"
    config["decoder_conf"] = {"attention_heads": 2, "linear_units": 16, "num_blocks": 1}
    path = tmp_path / "transformer.yaml"
    path.write_text(yaml.safe_dump(config))
    exp = train("asrser", tiny_data, tmp_path / "transformer", config=path)
    s2e = Speech2Emotion(exp / "config.yaml", exp / "valid.acc_ser.best.pth")
    results = s2e(load_waves(tiny_data, 2))
    assert all(isinstance(r.transcript, str) for r in results)


def test_inference_cli_writes_kaldi_style_outputs(trained, tiny_data, tmp_path):
    exp = trained["asrser"]
    out = tmp_path / "decode"
    asrser_inference.main([
        "--asrser_train_config", str(exp / "config.yaml"),
        "--asrser_model_file", str(exp / "valid.acc_ser.best.pth"),
        "--data_path_and_name_and_type", f"{tiny_data['wav.scp']},speech,sound",
        "--output_dir", str(out), "--batch_size", "5",
    ])
    keys = [line.split()[0] for line in Path(tiny_data["wav.scp"]).read_text().splitlines()]
    emotion = dict(line.split() for line in (out / "emotion").read_text().splitlines())
    assert sorted(emotion) == sorted(keys)
    classes = (out / "classes").read_text().split()
    for line in (out / "posteriors").read_text().splitlines():
        key, *probs = line.split()
        probs = np.array(probs, dtype=float)
        assert abs(probs.sum() - 1) < 1e-4 and emotion[key] == classes[int(probs.argmax())]
    assert sorted(l.split()[0] for l in (out / "text").read_text().splitlines()) == sorted(keys)


def test_pack_and_from_pretrained_round_trip(trained, tiny_data, tmp_path, monkeypatch):
    from espnet_model_zoo.downloader import ModelDownloader

    from espnet_asrser.model_zoo import PackedModelError, pack_asrser_model

    monkeypatch.setenv("ESPNET_ASRSER_CACHE", str(tmp_path / "cache"))
    exp = trained["asrser"]
    archive = pack_asrser_model(exp / "config.yaml", exp / "valid.acc_ser.best.pth",
                                tmp_path / "packed" / "asrser.zip")
    # The training outputs may move or vanish: the archive is self-contained.
    files = ModelDownloader(cachedir=tmp_path / "zoo").unpack_local_file(str(archive))
    assert set(files) == {"asrser_train_config", "asrser_model_file"}
    config = yaml.safe_load(Path(files["asrser_train_config"]).read_text())
    assert str(tmp_path / "zoo") in config["normalize_conf"]["stats_file"]
    waves = load_waves(tiny_data, 2)
    direct = Speech2Emotion(exp / "config.yaml", exp / "valid.acc_ser.best.pth")(waves)
    packed = Speech2Emotion.from_pretrained(str(archive))(waves)
    for a, b in zip(direct, packed):
        assert a.label == b.label and a.transcript == b.transcript
        assert np.allclose(list(a.posteriors.values()), list(b.posteriors.values()), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="pass its local path"):
        Speech2Emotion.from_pretrained("espnet/some_zoo_model")


def test_from_pretrained_names_a_missing_member(trained, tmp_path, monkeypatch):
    import zipfile

    from espnet_asrser.model_zoo import PackedModelError, pack_asrser_model

    monkeypatch.setenv("ESPNET_ASRSER_CACHE", str(tmp_path / "cache"))
    exp = trained["asrser"]
    archive = pack_asrser_model(exp / "config.yaml", exp / "valid.acc_ser.best.pth",
                                tmp_path / "asrser.zip")
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            if not item.filename.endswith("feats_stats.npz"):
                dst.writestr(item, src.read(item))
    with pytest.raises(PackedModelError, match="feats_stats.npz"):
        Speech2Emotion.from_pretrained(str(broken))
