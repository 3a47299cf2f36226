"""The synthetic mini corpora: layout, audio, labels, determinism, oracle, vocabulary.

Generates the ``tiny`` size twice (about 3 s each): once with two workers, once with one,
so that byte-identity also covers the claim that ``--nj`` does not change the output.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import soundfile

from espnet_asrser.corpora.iemocap import LABEL_CODES, read_iemocap
from espnet_asrser.corpora.librispeech import read_librispeech

LOCAL = Path(__file__).resolve().parents[1] / "egs2" / "iemocap_asrser" / "ser1" / "local"
SCRIPT = LOCAL / "make_mini_corpora.py"
sys.path.insert(0, str(LOCAL))
import make_mini_corpora as mmc  # noqa: E402

LIBRI_SUBSETS = ("train-clean-100", "dev-clean", "test-clean")


def _generate(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--size", "tiny", *args],
        capture_output=True, text=True, timeout=120,
    )


def _digests(root: Path) -> Dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".done"
    }


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mini") / "corpora"
    result = _generate(out, "--nj", "2")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def iemocap(corpora):
    return read_iemocap(corpora / "IEMOCAP_full_release")


# ---------------------------------------------------------------------------- layout


def test_layout_is_the_releases(corpora, iemocap):
    root = corpora / "IEMOCAP_full_release"
    for session in range(1, 6):
        dialog_dir = root / f"Session{session}" / "dialog"
        assert sorted(p.name for p in (dialog_dir / "EmoEvaluation").glob("*.txt"))
        assert sorted(p.name for p in (dialog_dir / "transcriptions").glob("*.txt"))
    assert 0 < len(iemocap) <= 150
    assert {r.session for r in iemocap} == {1, 2, 3, 4, 5}
    # One female and one male actor per session, both speaking in every session.
    assert {r.speaker for r in iemocap} == {f"Ses0{s}_{g}" for s in range(1, 6) for g in "FM"}
    assert {r.category for r in iemocap} == {"impro", "script"}
    for record in iemocap:
        assert record.wav.is_file(), record.wav
        assert record.wav.parent.name == record.dialog
    # Transcripts are written prose, as in IEMOCAP, not LibriSpeech-style upper case.
    assert any(r.transcript.endswith("?") for r in iemocap)
    assert all(r.transcript[0].isupper() and r.transcript != r.transcript.upper()
               for r in iemocap if len(r.transcript) > 8)

    libri = corpora / "LibriSpeech"
    total = 0
    for subset in LIBRI_SUBSETS:
        records = read_librispeech(libri, subset)
        total += len(records)
        for record in records:
            assert record.flac.parent.name == str(record.chapter)
            assert record.flac.parent.parent.name == str(record.speaker)
            assert record.transcript == record.transcript.upper()
    assert 0 < total <= 150


def test_label_codes_include_those_data_prep_drops(iemocap):
    labels = {r.label for r in iemocap}
    assert labels <= set(LABEL_CODES)
    assert {"neu", "hap", "sad", "ang", "exc"} <= labels  # exc is merged into hap
    assert labels - {"neu", "hap", "exc", "sad", "ang"}, "no code to drop"


# ----------------------------------------------------------------------------- audio


def test_audio_is_16k_mono_speech(corpora, iemocap):
    libri = [r.flac for s in LIBRI_SUBSETS for r in read_librispeech(corpora / "LibriSpeech", s)]
    for path in [r.wav for r in iemocap[::7]] + libri[::7]:
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels) == (16000, 1), path
        assert info.subtype == "PCM_16"
        audio, _ = soundfile.read(str(path))
        assert 0.4 < len(audio) / 16000 < 8.0, path
        # Speech, not silence or pure noise: loud frames stand far above quiet ones.
        frames = audio[: len(audio) // 320 * 320].reshape(-1, 320)
        energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        assert np.percentile(energy_db, 95) > -45, path
        assert np.percentile(energy_db, 95) - np.percentile(energy_db, 5) > 12, path


def test_iemocap_times_match_audio(iemocap):
    for record in iemocap[::5]:
        duration = soundfile.info(str(record.wav)).duration
        assert abs((record.end - record.start) - duration) < 1e-3


# ------------------------------------------------------------------ reproducibility


def test_same_seed_same_bytes_whatever_nj(corpora, tmp_path):
    again = tmp_path / "again"
    result = _generate(again, "--nj", "1")
    assert result.returncode == 0, result.stderr
    first, second = _digests(corpora), _digests(again)
    assert len(first) > 250
    assert first == second


def test_rerun_is_a_no_op_and_other_settings_are_refused(corpora):
    before = {p: p.stat().st_mtime_ns for p in corpora.rglob("*.wav")}
    result = _generate(corpora, "--nj", "2")
    assert result.returncode == 0
    assert "nothing to do" in result.stderr
    assert before == {p: p.stat().st_mtime_ns for p in corpora.rglob("*.wav")}
    stamp = json.loads((corpora / ".done").read_text())
    assert (stamp["size"], stamp["seed"]) == ("tiny", 0)
    assert stamp["generator_version"] == mmc.GENERATOR_VERSION
    refused = _generate(corpora, "--seed", "1")
    assert refused.returncode != 0


def test_refuses_to_overwrite_what_it_did_not_write(tmp_path):
    (tmp_path / "LibriSpeech").mkdir()
    result = _generate(tmp_path)
    assert result.returncode != 0
    assert "refusing" in result.stderr


# ------------------------------------------------------------------------------ oracle


def test_oracle_numbers(corpora):
    report = json.loads((corpora / "oracle.json").read_text())
    for table in (report["population"], report["realised"]):
        for name in ("majority_class", *mmc.ORACLE_SETTINGS):
            assert 0 < table[name]["wa"] <= 1 and 0 < table[name]["ua"] <= 1, name
    pop = report["population"]
    for known in ("speaker_independent", "speaker_known"):
        both = pop[f"both_{known}"]["wa"]
        assert both >= pop[f"prosody_{known}"]["wa"]
        assert both >= pop["words"]["wa"]
    assert pop["prosody_speaker_known"]["wa"] >= pop["prosody_speaker_independent"]["wa"]
    # Each channel is informative but ambiguous alone.
    for name in ("prosody_speaker_independent", "words"):
        assert pop["majority_class"]["wa"] + 0.1 < pop[name]["wa"] < 0.8
    # Monte Carlo agrees with the closed form of the words-only oracle.
    assert abs(pop["words"]["wa"] - pop["words"]["wa_exact"]) < 4 * pop["max_standard_error"]


def test_oracle_decisions_follow_the_design():
    # A loud, fast, high-pitched utterance without cue words is angry or happy; a low,
    # flat, slow, soft one is sad; the words win when prosody is neutral.
    base = np.array([mmc.IEMOCAP_BASELINE])
    loud = base + np.array([[4.0, 5.0, 0.1, 6.0]])
    soft = base + np.array([[-6.0, -15.0, -0.12, -5.0]])
    classes = mmc.CLASSES
    assert classes[mmc.log_posteriors(loud, None, ["none"]).argmax()] in ("ang", "hap")
    assert classes[mmc.log_posteriors(soft, None, ["none"]).argmax()] == "sad"
    assert classes[mmc.log_posteriors(base, None, ["ang"]).argmax()] == "ang"


# -------------------------------------------------------------------------- vocabulary


def test_designed_vocabulary():
    vocab = mmc.vocabulary()
    # The IEMOCAP-only words are exactly the ones declared out of the ASR vocabulary.
    assert set(vocab["iemocap_only"]) == {w.upper() for w in mmc.IEMOCAP_ONLY}
    assert 200 <= len(vocab["librispeech"]) <= 500


def test_words_of_each_corpus(corpora, iemocap):
    oov = {w.upper() for w in mmc.IEMOCAP_ONLY}
    libri_words = {
        w for s in LIBRI_SUBSETS for r in read_librispeech(corpora / "LibriSpeech", s)
        for w in r.transcript.split()
    }
    assert not libri_words & oov
    assert libri_words <= set(mmc.vocabulary()["librispeech"])
    iemocap_words = {w for r in iemocap for w in mmc.normalize_transcript(r.transcript).split()}
    assert iemocap_words & oov
    assert iemocap_words <= set(mmc.vocabulary()["iemocap"])


def test_lexical_cue_is_recoverable_from_every_sentence():
    rng = np.random.default_rng(0)
    for cue in mmc.CUES:
        for _ in range(300):
            assert mmc.cue_of(mmc.conversational_sentence(cue, rng)) == cue
    with pytest.raises(ValueError):
        mmc.cue_of("I'm so happy, that's ridiculous.")
