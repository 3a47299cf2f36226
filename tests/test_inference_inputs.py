"""Inference the way users reach for it: Speech2Emotion on audio files and on arrays at any
sampling rate and with any number of channels, ``classify_file``, the asrser_inference CLI
on plain audio files and on a wav.scp, packed archives that carry the recipe's decoding
settings, and the cache directory of ``from_pretrained``.

One ASR-SER model is trained for one epoch on the tiny data of tests/conftest.py, as
tests/test_task.py trains its own. The test signal is band-limited (below 3.5 kHz) and
periodic, so that its 8 kHz and 44.1 kHz versions (made by FFT resampling, exact for such a
signal) are the same sound as the 16 kHz one: after torchaudio's resampling, the posteriors
agree within ``TOLERANCE`` (measured: 1e-4 at 8 kHz, 5e-4 at 44.1 kHz, even where the
beam search picks another word). Down-mixing is exact (1e-6).
"""

import importlib.util
import logging
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.signal
import soundfile
import yaml

from espnet_asrser.bin import asrser_inference, asrser_pack
from espnet_asrser.bin.asrser_inference import Speech2Emotion
from espnet_asrser.model_zoo import DECODE_KEY, PackedModelError, pack_asrser_model
from espnet_asrser.utils.audio_files import AudioError
from test_cli import _undocumented
from test_task import load_waves, train

TOLERANCE = 0.005  # largest difference of a posterior after resampling
PACK_MODELS = (
    Path(__file__).resolve().parents[1] / "egs2" / "iemocap_asrser" / "ser1" / "local"
    / "pack_models.py"
)


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_data):
    """(config, weights) of an ASR-SER model trained for one epoch."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(sys, "argv", ["asrser_train"])
        exp = train("asrser", tiny_data, tmp_path_factory.mktemp("asrser"))
    return exp / "config.yaml", exp / "valid.acc_ser.best.pth"


@pytest.fixture(scope="module")
def s2e(model):
    return Speech2Emotion(*model)


def band_limited(rate: int, seconds: float = 0.5, seed: int = 1) -> np.ndarray:
    """Periodic noise below 3.5 kHz at ``rate`` Hz, the same sound at every rate."""
    n16 = int(16000 * seconds)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n16))
    spectrum[np.fft.rfftfreq(n16, 1 / 16000) > 3500] = 0
    x16 = np.fft.irfft(spectrum, n16)
    x16 = 0.1 * x16 / x16.std()
    return scipy.signal.resample(x16, int(rate * seconds)).astype(np.float32)


def assert_same(result, reference, atol=TOLERANCE):
    assert result.error is None, result.error
    got = np.array([result.posteriors[c] for c in reference.posteriors])
    want = np.array(list(reference.posteriors.values()))
    assert np.allclose(got, want, atol=atol), (got, want)
    top2 = np.sort(want)[-2:]
    if top2[1] - top2[0] > 2 * atol:  # a clear winner stays the winner
        assert result.label == reference.label


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The test signal as files: 16 kHz mono, 8 kHz FLAC, 44.1 kHz and 16 kHz stereo WAV."""
    root = tmp_path_factory.mktemp("audio")
    x16 = band_limited(16000)
    paths = {
        "16k": root / "x16k.wav",
        "8k": root / "x8k.flac",
        "44k": root / "x44k.wav",
        "stereo": root / "stereo.wav",
    }
    soundfile.write(paths["16k"], x16, 16000, subtype="FLOAT")
    soundfile.write(paths["8k"], band_limited(8000), 8000, subtype="PCM_24")
    soundfile.write(paths["44k"], band_limited(44100), 44100, subtype="FLOAT")
    soundfile.write(paths["stereo"], np.stack([x16 + 0.01, x16 - 0.01], 1), 16000,
                    subtype="FLOAT")
    return paths


# ---------------------------------------------------------------- Speech2Emotion inputs
@pytest.mark.parametrize("rate", [8000, 44100])
def test_array_at_another_rate_is_resampled(s2e, rate, caplog):
    reference = s2e(band_limited(16000), fs=16000)[0]
    with caplog.at_level(logging.INFO):
        result = s2e([band_limited(rate)], fs=rate)[0]
    assert f"input 0: resampled {rate} -> 16000 Hz" in caplog.text
    assert_same(result, reference)


@pytest.mark.parametrize("layout", ["samples_channels", "channels_samples"])
def test_multichannel_array_is_downmixed(s2e, layout, caplog):
    x = band_limited(16000)
    stereo = np.stack([x + 0.01, x - 0.01], 1 if layout == "samples_channels" else 0)
    with caplog.at_level(logging.INFO):
        result = s2e(stereo)[0]
    assert "input 0: down-mixed 2 channels" in caplog.text
    assert_same(result, s2e(x)[0], atol=1e-6)


def test_integer_pcm_is_scaled_as_soundfile_reads_it(s2e, tmp_path):
    pcm = np.round(band_limited(16000) * 2**15).astype(np.int16)
    soundfile.write(tmp_path / "pcm.wav", pcm, 16000, subtype="PCM_16")
    as_read = soundfile.read(tmp_path / "pcm.wav", dtype="float32")[0]
    assert_same(s2e(pcm)[0], s2e(as_read)[0], atol=1e-6)
    import torch

    assert_same(s2e(torch.from_numpy(pcm))[0], s2e(as_read)[0], atol=1e-6)


@pytest.mark.parametrize("name", ["16k", "8k", "44k", "stereo"])
def test_files_at_any_rate_and_channels(s2e, files, name, caplog):
    reference = s2e(band_limited(16000))[0]
    with caplog.at_level(logging.INFO):
        from_str = s2e(str(files[name]))[0]
        from_path = s2e([files[name]])[0]
    assert_same(from_str, reference)
    assert_same(from_path, from_str, atol=1e-7)
    expected = {"8k": "resampled 8000 -> 16000 Hz", "44k": "resampled 44100 -> 16000 Hz",
                "stereo": "down-mixed 2 channels"}.get(name)
    if expected:
        assert f"{files[name]}: {expected}" in caplog.text


def test_files_and_arrays_in_one_batch(s2e, files):
    waves = [band_limited(16000), str(files["8k"]), files["stereo"]]
    results = s2e(waves, fs=16000)
    for result in results:
        assert_same(result, results[0])


def test_classify_file(s2e, files, tiny_data):
    result = s2e.classify_file(files["44k"])
    assert_same(result, s2e(band_limited(16000))[0])
    first = Path(tiny_data["wav.scp"]).read_text().split()[1]
    assert_same(s2e.classify_file(first), s2e(load_waves(tiny_data, 1))[0], atol=1e-6)
    with pytest.raises(AudioError, match="no_such.wav"):
        s2e.classify_file("no_such.wav")


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(0, np.float32), "input 0: empty audio"),
        (np.zeros((0, 2), np.float32), "input 0: empty audio"),
        (np.full(800, np.nan, np.float32), "input 0: audio contains NaN"),
        (np.stack([np.zeros(800), np.full(800, np.inf)], 1), "input 0: audio contains NaN or inf"),
        (np.zeros((2, 2, 800), np.float32), r"shape \(samples,\) or \(samples, channels\)"),
        (np.zeros(800, np.int64), "int64: expected float or integer PCM"),
    ],
)
def test_refusals_name_the_input(s2e, bad, message):
    with pytest.raises(ValueError, match=message):
        s2e([bad], fs=8000)


def test_empty_file_is_refused_by_name(s2e, tmp_path):
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="empty.wav is empty"):
        s2e(tmp_path / "empty.wav")


# ---------------------------------------------------------------- CLI
def test_cli_help_states_every_default():
    parser = asrser_inference.get_parser()
    assert _undocumented(parser, parser._actions) == []


def test_cli_on_wav_files_prints_only_labels(model, files, s2e):
    """In a fresh process, where ESPnet's import-time notices would reach stdout."""
    wavs = [str(files["16k"]), str(files["8k"])]
    out = subprocess.run(
        [sys.executable, "-m", "espnet_asrser.bin.asrser_inference",
         "--asrser_train_config", str(model[0]), "--asrser_model_file", str(model[1]), *wavs],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{w} {s2e.classify_file(w).label}" for w in wavs]
    assert f"resampled 8000 -> 16000 Hz for 1 of 2 files" in out.stderr


def test_cli_on_a_wav_scp_writes_outputs_and_reports_failures(model, files, s2e, tmp_path, caplog):
    (tmp_path / "broken.wav").write_bytes(b"RIFF")
    scp = tmp_path / "wav.scp"
    scp.write_text(
        f"a {files['16k']}\nb {files['44k']}\nc {tmp_path / 'broken.wav'}\nd {files['stereo']}\n"
    )
    out = tmp_path / "decode"
    with caplog.at_level(logging.INFO):
        rc = asrser_inference.main([
            "--asrser_train_config", str(model[0]), "--asrser_model_file", str(model[1]),
            "--wav_scp", str(scp), "--output_dir", str(out), "--batch_size", "2",
        ])
    assert rc == 1
    emotion = dict(line.split() for line in (out / "emotion").read_text().splitlines())
    assert sorted(emotion) == ["a", "b", "d"]
    for key, path in (("a", files["16k"]), ("b", files["44k"]), ("d", files["stereo"])):
        assert emotion[key] == s2e.classify_file(path).label
    failed = (out / "failed").read_text()
    assert failed.startswith("c ") and "broken.wav" in failed
    assert sorted(line.split()[0] for line in (out / "text").read_text().splitlines()) == [
        "a", "b", "d"]
    # Conversions are counted, not logged per file; progress is logged off a terminal.
    assert "resampled 44100 -> 16000 Hz for 1 of 4 files" in caplog.text
    assert "down-mixed 2 channels for 1 of 4 files" in caplog.text
    assert "asrser_inference: 2/2 batch (100%)" in caplog.text


def test_cli_needs_exactly_one_input(model, tmp_path, capsys):
    base = ["--asrser_train_config", str(model[0]), "--asrser_model_file", str(model[1])]
    for extra in ([], ["x.wav", "--wav_scp", "wav.scp"],
                  ["x.wav", "--data_path_and_name_and_type", "feats.scp,speech,kaldi_ark"]):
        with pytest.raises(SystemExit) as info:
            asrser_inference.main([*base, *extra])
        assert info.value.code == 2
    assert "give one input" in capsys.readouterr().err


# ---------------------------------------------------------------- packing and the cache
@pytest.fixture(scope="module")
def packed(model, tmp_path_factory):
    """An archive carrying a decoding config of width 2 and at most 3 words."""
    root = tmp_path_factory.mktemp("packed")
    decode = root / "decode_asr.yaml"
    decode.write_text("# the recipe's decoding\nbeam_size: 2\nctc_weight: 0.0\n"
                      "maxlenratio: -3\nminlenratio: 0.0\n")
    return pack_asrser_model(*model, root / "asrser.zip", decode_config=decode)


def test_archive_carries_the_decode_config(packed, tmp_path):
    from espnet_model_zoo.downloader import ModelDownloader

    with zipfile.ZipFile(packed) as z:
        meta = yaml.safe_load(z.read("meta.yaml"))
        assert meta["yaml_files"][DECODE_KEY] == "decode.yaml"
        assert yaml.safe_load(z.read("decode.yaml"))["maxlenratio"] == -3
    files = ModelDownloader(cachedir=tmp_path / "zoo").unpack_local_file(str(packed))
    assert set(files) == {"asrser_train_config", "asrser_model_file", DECODE_KEY}
    # ESPnet's unpacker's keys are Speech2Emotion's keyword arguments.
    assert Speech2Emotion(**files).maxlenratio == -3


def test_from_pretrained_uses_the_packed_decoding_unless_overridden(packed, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        s2e = Speech2Emotion.from_pretrained(packed, cache_dir=tmp_path / "cache")
    assert (s2e.maxlenratio, s2e.beam_search.beam_size) == (-3, 2)
    assert "decoding settings from" in caplog.text and "maxlenratio=-3" in caplog.text
    # maxlenratio -3: at most 3 words (the one-epoch model never ends a hypothesis itself).
    assert all(len(r.transcript.split()) <= 3 for r in s2e([band_limited(16000)]))
    other = Speech2Emotion.from_pretrained(packed, tmp_path / "cache", maxlenratio=-7,
                                           beam_size=3)
    assert (other.maxlenratio, other.beam_search.beam_size, other.minlenratio) == (-7, 3, 0)


def test_cli_model_tag_uses_the_packed_decoding(packed, files, tmp_path, monkeypatch):
    seen = {}
    real_init = Speech2Emotion.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        seen.update(maxlenratio=self.maxlenratio, beam=self.beam_search.beam_size)

    monkeypatch.setattr(Speech2Emotion, "__init__", spy)
    base = ["--model_tag", str(packed), "--cache_dir", str(tmp_path / "c"), str(files["16k"])]
    assert asrser_inference.main(base) == 0
    assert seen == {"maxlenratio": -3, "beam": 2}
    decode = tmp_path / "decode.yaml"
    decode.write_text("maxlenratio: -5\n")
    assert asrser_inference.main([*base, "--config", str(decode), "--beam_size", "1"]) == 0
    assert seen == {"maxlenratio": -5, "beam": 1}


def test_cache_dir_argument_and_variable(packed, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ESPNET_ASRSER_CACHE", str(tmp_path / "from_env"))
    with caplog.at_level(logging.INFO):
        Speech2Emotion.from_pretrained(packed, cache_dir=tmp_path / "mine")
    unpacked = list((tmp_path / "mine").glob("asrser-*/meta.yaml"))
    assert len(unpacked) == 1 and not (tmp_path / "from_env").exists()
    assert f"into {unpacked[0].parent}" in caplog.text and "ESPNET_ASRSER_CACHE" in caplog.text
    Speech2Emotion.from_pretrained(str(packed))
    assert len(list((tmp_path / "from_env").glob("asrser-*/meta.yaml"))) == 1


def test_asrser_pack_cli_decode_config(model, tmp_path, capsys):
    decode = tmp_path / "decode.yaml"
    decode.write_text("beam_size: 3\nmaxlenratio: -4\n")
    out = tmp_path / "m.zip"
    asrser_pack.main(["--asrser_train_config", str(model[0]),
                      "--asrser_model_file", str(model[1]), "--outpath", str(out),
                      "--decode_config", str(decode)])
    with zipfile.ZipFile(out) as z:
        assert yaml.safe_load(z.read("meta.yaml"))["yaml_files"] == {
            "asrser_train_config": "config.yaml", DECODE_KEY: "decode.yaml"}
    decode.write_text("- not a mapping\n")
    with pytest.raises(PackedModelError, match="YAML mapping"):
        pack_asrser_model(*model, tmp_path / "n.zip", decode_config=decode)


def test_pack_models_packs_the_runs_decoding(tmp_path, monkeypatch):
    """local/pack_models.py: the decoding config as it is, or with --decode_args applied."""
    spec = importlib.util.spec_from_file_location("pack_models", PACK_MODELS)
    pack_models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pack_models)
    monkeypatch.chdir(tmp_path)
    Path("decode.yaml").write_text("beam_size: 4\nmaxlenratio: -40\nminlenratio: 0.0\n")
    layout = SimpleNamespace(opts=SimpleNamespace(decode_config="decode.yaml", decode_args=""),
                             decode_tag="decode")
    assert pack_models.decode_config(layout) == "decode.yaml"
    layout.opts.decode_args = "--beam_size 2 --batch_size 1"
    layout.decode_tag = "decode_beam_size2_batch_size1"
    path = Path(pack_models.decode_config(layout))
    assert path == Path("exp/packed/decode_decode_beam_size2_batch_size1.yaml")
    settings = yaml.safe_load(path.read_text())
    assert settings == {"beam_size": 2, "maxlenratio": -40, "minlenratio": 0.0}
    # Only the ASR-SER models are packed with it (the others have no beam search).
    packed = {}
    monkeypatch.setattr(asrser_pack, "main", lambda args: packed.update({args[1]: args}))
    layout.pretrained, layout.folds, layout.opts.ser_model = True, ["1"], "best.pth"
    layout.ser_exp = lambda system, fold: f"exp/ser_fold{fold}_{system}"
    monkeypatch.setattr(pack_models, "layout_from_args", lambda argv, description: layout)
    assert pack_models.main([]) == 0
    assert sorted(packed) == [f"exp/ser_fold1_{s}/config.yaml"
                              for s in ("asrser", "audio", "combined", "text")]
    for config, args in packed.items():
        assert ("--decode_config" in args) == ("asrser" in config)
    assert packed["exp/ser_fold1_asrser/config.yaml"][-4:-2] == ["--decode_config", str(path)]
