"""Corpus readers, writers, data-directory checks and the two data-preparation stages.

Both corpora are generated here in their real release layouts (IEMOCAP and LibriSpeech
cannot be downloaded in CI), with short synthetic audio, then read back and prepared
with the recipe's own scripts. Every IEMOCAP label code, both speakers of all five
sessions, scripted and improvised dialogs, non-utterance transcription lines and the
per-annotator decoy files are covered.
"""

import importlib.util
import logging
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Tuple

import numpy as np
import pytest
import soundfile

from espnet_asrser.corpora.iemocap import (
    LABEL_CODES,
    IemocapFormatError,
    IemocapUtterance,
    read_iemocap,
    write_iemocap,
)
from espnet_asrser.corpora.kaldi_dir import subset_data_dir, validate_data_dir, write_data_dir
from espnet_asrser.corpora.librispeech import (
    LibriSpeechFormatError,
    LibriUtterance,
    read_librispeech,
    write_librispeech,
)
from espnet_asrser.corpora.text_norm import normalize_transcript
from espnet_asrser.utils.kaldi_table import KaldiTableError, read_table

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "egs2" / "iemocap_asrser" / "ser1" / "local"
FS = 16000


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, LOCAL / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare_iemocap = _load_script("prepare_iemocap")
prepare_librispeech = _load_script("prepare_librispeech")


def _tone(rng: np.random.Generator, seconds: float) -> np.ndarray:
    t = np.arange(int(round(seconds * FS))) / FS
    wave = 0.3 * np.sin(2 * np.pi * rng.uniform(120, 300) * t)
    return (wave + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


# ----------------------------------------------------------------------------- IEMOCAP
KEPT_CODES = ("neu", "hap", "exc", "sad", "ang")
DROPPED_CODES = ("fru", "sur", "fea", "dis", "oth", "xxx")


def _transcript(n: int) -> Tuple[str, str]:
    """A written transcript and its expected normalised form."""
    return (
        f"Well, it's number {n}... [LAUGHTER] Twenty-one 'right'?",
        f"WELL IT'S NUMBER {n} TWENTY ONE RIGHT",
    )


def iemocap_utterances(seed: int = 0) -> Tuple[List[IemocapUtterance], Dict[str, dict]]:
    """A tiny IEMOCAP: per session an improvised and a scripted dialog; per dialog and
    speaker one utterance of each kept code and one dropped code; three long ones.

    Returns the utterances and, per utterance id, what a reader must report.
    """
    rng = np.random.default_rng(seed)
    utterances: List[IemocapUtterance] = []
    truth: Dict[str, dict] = {}
    cell = 0
    for session in range(1, 6):
        # The dialog letter alternates; the speaker must come from the utterance suffix.
        dialog_gender = "F" if session % 2 else "M"
        for suffix, category in (("impro01", "impro"), ("script01_1", "script")):
            dialog = f"Ses{session:02d}{dialog_gender}_{suffix}"
            start = 1.0
            for gender in ("F", "M"):
                codes = KEPT_CODES + (DROPPED_CODES[cell % len(DROPPED_CODES)],)
                cell += 1
                for index, code in enumerate(codes):
                    seconds = float(rng.uniform(0.2, 1.0))
                    utterances.append(
                        IemocapUtterance(
                            utt_id=f"{dialog}_{gender}{index:03d}",
                            label=code,
                            transcript=_transcript(len(utterances))[0],
                            start=start,
                            end=start + seconds,
                            audio=_tone(rng, seconds),
                        )
                    )
                    start += seconds + 0.5
    # Silence: 21 s is over the 20 s limit, exactly 20 s is not.
    for utt_id, label, seconds in (
        ("Ses02M_impro01_F100", "ang", 21.0),
        ("Ses04M_script01_1_M100", "neu", 21.0),
        ("Ses03F_impro01_M100", "sad", 20.0),
    ):
        utterances.append(
            IemocapUtterance(
                utt_id=utt_id,
                label=label,
                transcript=_transcript(len(utterances))[0],
                start=500.0,
                end=500.0 + seconds,
                audio=np.zeros(int(seconds * FS), dtype=np.float32),
            )
        )
    for n, u in enumerate(utterances):
        session = int(u.utt_id[3:5])
        gender = u.utt_id.rsplit("_", 1)[1][0]
        truth[u.utt_id] = {
            "label": u.label,
            "session": session,
            "speaker": f"Ses{session:02d}_{gender}",
            "dialog": u.utt_id.rsplit("_", 1)[0],
            "category": "impro" if "_impro" in u.utt_id else "script",
            "transcript": u.transcript,
            "normalised": _transcript(n)[1],
            "seconds": None if u.audio is None else len(u.audio) / FS,
        }
    # Shuffled, so the writer's grouping and time sorting are exercised.
    order = np.random.default_rng(seed + 1).permutation(len(utterances))
    return [utterances[i] for i in order], truth


def _expected_kept(truth: Dict[str, dict], *, max_dur: float = 20.0) -> Dict[str, str]:
    merged = {"neu": "neu", "hap": "hap", "exc": "hap", "sad": "sad", "ang": "ang"}
    return {
        utt: merged[t["label"]]
        for utt, t in truth.items()
        if t["label"] in merged and t["seconds"] <= max_dur
    }


@pytest.fixture(scope="module")
def iemocap(tmp_path_factory) -> Tuple[Path, Dict[str, dict]]:
    root = tmp_path_factory.mktemp("corpus") / "IEMOCAP_full_release"
    utterances, truth = iemocap_utterances()
    write_iemocap(root, utterances)
    return root, truth


@pytest.fixture
def fresh_iemocap(tmp_path) -> Tuple[Path, Dict[str, dict], List[IemocapUtterance]]:
    """A corpus that a test may damage."""
    root = tmp_path / "IEMOCAP_full_release"
    utterances, truth = iemocap_utterances()
    write_iemocap(root, utterances)
    return root, truth, utterances


def _prep(corpus: Path, out: Path, *extra: str) -> int:
    return prepare_iemocap.main(["--iemocap", str(corpus), "--out", str(out), *extra])


def _fold_ids(out: Path, name: str, k: int) -> Dict[str, Dict[str, str]]:
    return {
        split: read_table(out / f"{name}_fold{k}_{split}" / "utt2spk")
        for split in ("train", "valid", "test")
    }


def test_normalize_transcript():
    assert normalize_transcript("Excuse me.") == "EXCUSE ME"
    assert normalize_transcript("Oh, I- I don't know... [LAUGHTER]") == "OH I I DON'T KNOW"
    assert normalize_transcript("'Hello,' she said--the players' o'clock") == (
        "HELLO SHE SAID THE PLAYERS O'CLOCK"
    )
    assert normalize_transcript("twenty-five_dollars {NOISE} <sil>") == "TWENTY FIVE DOLLARS"
    assert normalize_transcript("Don\u2019t  \t stop") == "DON'T STOP"
    assert normalize_transcript("[BREATHING]") == ""
    # LibriSpeech transcripts are already in the convention.
    assert normalize_transcript("HE HOPED THERE WOULD BE STEW") == "HE HOPED THERE WOULD BE STEW"


def test_iemocap_writer_layout(iemocap):
    root, _ = iemocap
    emo = root / "Session1" / "dialog" / "EmoEvaluation"
    # The decoys exist, so reading cleanly below proves they are ignored.
    for sub in ("Categorical", "Attribute", "Self-evaluation"):
        assert list((emo / sub).glob("*.txt")), sub
    summary = (emo / "Ses01F_impro01.txt").read_text().splitlines()
    assert summary[0] == "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
    assert summary[2].split("\t")[1:] == ["Ses01F_impro01_F000", "neu", "[2.5000, 2.5000, 2.5000]"]
    trans = (root / "Session1" / "dialog" / "transcriptions" / "Ses01F_impro01.txt").read_text()
    assert "Ses01F_impro01_F000 [001.0000-" in trans
    assert "_MXX0 [" in trans and "M: [LAUGHTER]" in trans
    info = soundfile.info(
        str(root / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav")
    )
    assert (info.samplerate, info.channels) == (FS, 1)


def test_read_iemocap_round_trip(iemocap):
    root, truth = iemocap
    records = read_iemocap(root)
    assert [r.utt_id for r in records] == sorted(truth)
    assert {r.label for r in records} == set(LABEL_CODES)
    for r in records:
        t = truth[r.utt_id]
        assert (r.label, r.session, r.speaker, r.dialog, r.category, r.transcript) == (
            t["label"],
            t["session"],
            t["speaker"],
            t["dialog"],
            t["category"],
            t["transcript"],
        ), r.utt_id
        assert r.wav == root / f"Session{t['session']}" / "sentences" / "wav" / t["dialog"] / (
            r.utt_id + ".wav"
        )
        assert r.wav.is_file()
        assert r.end > r.start
    speakers = {r.speaker for r in records}
    assert speakers == {f"Ses{s:02d}_{g}" for s in range(1, 6) for g in "FM"}
    # The speaker comes from the suffix, not from the dialog name.
    by_id = {r.utt_id: r for r in records}
    assert by_id["Ses02M_impro01_F000"].speaker == "Ses02_F"
    assert by_id["Ses01F_script01_1_M003"].speaker == "Ses01_M"


def test_prepare_iemocap_speaker_independent(iemocap, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    root, truth = iemocap
    out = tmp_path / "data"
    assert _prep(root, out) == 0
    expected = _expected_kept(truth)

    all_dir = out / "iemocap_all"
    assert validate_data_dir(all_dir) == sorted(expected)
    assert read_table(all_dir / "emotion") == expected
    utt2spk = read_table(all_dir / "utt2spk")
    assert utt2spk == {u: truth[u]["speaker"] for u in expected}
    assert read_table(all_dir / "utt2session") == {u: str(truth[u]["session"]) for u in expected}
    assert read_table(all_dir / "utt2category") == {u: truth[u]["category"] for u in expected}
    assert read_table(all_dir / "text") == {u: truth[u]["normalised"] for u in expected}
    assert read_table(all_dir / "text.orig") == {u: truth[u]["transcript"] for u in expected}
    durations = read_table(all_dir / "utt2dur")
    for utt, path in read_table(all_dir / "wav.scp").items():
        assert Path(path).is_absolute() and Path(path).name == f"{utt}.wav"
        assert float(durations[utt]) == pytest.approx(truth[utt]["seconds"], abs=1e-4)
    assert "Ses03F_impro01_M100" in expected  # exactly 20 s is kept
    assert set(Counter(expected.values())) == {"ang", "hap", "neu", "sad"}

    log = caplog.text
    assert "dropped 2: longer than 20 s" in log
    for code in DROPPED_CODES:
        n = sum(1 for t in truth.values() if t["label"] == code)
        assert f"dropped {n}: label {code}" in log
    assert "hap 20 + exc 20" in log

    all_ids = set(expected)
    for k in range(1, 6):
        folds = _fold_ids(out, "iemocap", k)
        train, valid, test = (set(folds[s]) for s in ("train", "valid", "test"))
        assert test == {u for u in expected if truth[u]["session"] == k}
        assert train | valid | test == all_ids
        assert not (train & valid or train & test or valid & test)
        test_speakers = {utt2spk[u] for u in test}
        assert test_speakers == {f"Ses{k:02d}_F", f"Ses{k:02d}_M"}
        assert not test_speakers & {utt2spk[u] for u in train | valid}
        # heldout_speaker: one whole speaker of the next session, genders alternating.
        valid_speaker = f"Ses{k % 5 + 1:02d}_{'F' if k % 2 else 'M'}"
        assert {utt2spk[u] for u in valid} == {valid_speaker}
        assert valid == {u for u in expected if utt2spk[u] == valid_speaker}
        for split in ("train", "valid", "test"):
            d = out / f"iemocap_fold{k}_{split}"
            validate_data_dir(d)
            assert read_table(d / "emotion") == {u: expected[u] for u in folds[split]}
    assert "valid = speaker Ses02_F" in log


def test_prepare_iemocap_is_idempotent(iemocap, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    root, truth = iemocap
    out = tmp_path / "data"
    assert _prep(root, out) == 0
    marker = out / "iemocap_all" / ".done"
    probe = out / "iemocap_fold3_valid" / "text"
    stamps = (marker.stat().st_mtime_ns, probe.stat().st_mtime_ns)
    caplog.clear()

    assert _prep(root, out) == 0
    assert "nothing to do" in caplog.text
    assert (marker.stat().st_mtime_ns, probe.stat().st_mtime_ns) == stamps

    # Other options rebuild: with a 30 s limit the two 21 s utterances come back.
    caplog.clear()
    assert _prep(root, out, "--max_dur", "30") == 0
    assert "nothing to do" not in caplog.text
    assert set(read_table(out / "iemocap_all" / "utt2spk")) == set(
        _expected_kept(truth, max_dur=30)
    )
    assert '"max_dur": 30.0' in marker.read_text()


def test_prepare_iemocap_stratified_valid(iemocap, tmp_path):
    root, truth = iemocap
    out = tmp_path / "data"
    args = ("--valid_rule", "stratified", "--valid_ratio", "0.3", "--name", "strat")
    assert _prep(root, out, *args) == 0
    expected = _expected_kept(truth)
    utt2spk = read_table(out / "strat_all" / "utt2spk")
    for k in range(1, 6):
        folds = _fold_ids(out, "strat", k)
        train, valid, test = (set(folds[s]) for s in ("train", "valid", "test"))
        assert train | valid | test == set(expected)
        assert {truth[u]["session"] for u in valid | train} == set(range(1, 6)) - {k}
        # ~30 % of each (speaker, emotion) cell of the training sessions, rounded half up.
        cells = Counter((utt2spk[u], expected[u]) for u in train | valid)
        valid_cells = Counter((utt2spk[u], expected[u]) for u in valid)
        for cell, n in cells.items():
            assert valid_cells[cell] == int(0.3 * n + 0.5), (k, cell)
    # Seeded: the same options give the same split.
    assert _prep(root, tmp_path / "again", *args) == 0
    for k in range(1, 6):
        assert _fold_ids(out, "strat", k) == _fold_ids(tmp_path / "again", "strat", k)


def test_prepare_iemocap_improvised_subset(iemocap, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    root, truth = iemocap
    out = tmp_path / "data"
    assert _prep(root, out, "--subset", "improvised", "--name", "impro") == 0
    expected = {u: e for u, e in _expected_kept(truth).items() if truth[u]["category"] == "impro"}
    assert read_table(out / "impro_all" / "emotion") == expected
    assert set(read_table(out / "impro_all" / "utt2category").values()) == {"impro"}
    assert "scripted dialog (--subset improvised)" in caplog.text
    for k in range(1, 6):
        test = set(_fold_ids(out, "impro", k)["test"])
        assert test == {u for u in expected if truth[u]["session"] == k}

    # --exc drop: excited is not merged into happy but dropped.
    assert _prep(root, out, "--subset", "improvised", "--exc", "drop", "--name", "noexc") == 0
    emotion = read_table(out / "noexc_all" / "emotion")
    assert set(emotion) == {u for u in expected if truth[u]["label"] != "exc"}


def test_prepare_iemocap_speaker_dependent(iemocap, tmp_path):
    root, truth = iemocap
    out = tmp_path / "data"
    args = ("--protocol", "speaker_dependent", "--valid_ratio", "0.3", "--name", "sd")
    assert _prep(root, out, *args) == 0
    expected = _expected_kept(truth)
    tests = []
    per_class = {e: [] for e in ("ang", "hap", "neu", "sad")}
    for k in range(1, 6):
        folds = _fold_ids(out, "sd", k)
        train, valid, test = (set(folds[s]) for s in ("train", "valid", "test"))
        assert train | valid | test == set(expected)
        assert not (train & valid or train & test or valid & test)
        assert valid
        tests.append(test)
        counts = Counter(expected[u] for u in test)
        for emotion in per_class:
            per_class[emotion].append(counts[emotion])
    # The test folds partition the corpus...
    assert sorted(u for t in tests for u in t) == sorted(expected)
    # ...into equal shares of every class (within one utterance) and of the total.
    for emotion, counts in per_class.items():
        assert max(counts) - min(counts) <= 1, (emotion, counts)
    sizes = [len(t) for t in tests]
    assert max(sizes) - min(sizes) <= 1
    # Speaker dependent: every speaker appears in test folds and in training.
    assert {truth[u]["speaker"] for t in tests for u in t} == {
        f"Ses{s:02d}_{g}" for s in range(1, 6) for g in "FM"
    }
    # Another seed gives another split.
    assert _prep(root, out, *args[:-1], "sd_seed1", "--seed", "1") == 0
    assert set(_fold_ids(out, "sd_seed1", 1)["test"]) != tests[0]


def test_speaker_dependent_rejects_heldout_speaker(iemocap, tmp_path):
    root, _ = iemocap
    with pytest.raises(SystemExit):
        _prep(
            root, tmp_path, "--protocol", "speaker_dependent", "--valid_rule", "heldout_speaker"
        )


def _line_of(path: Path, needle: str) -> int:
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return lineno
    raise AssertionError(f"{needle!r} not in {path}")


def test_iemocap_unknown_label_code(fresh_iemocap, tmp_path, capsys):
    root, _, _ = fresh_iemocap
    path = root / "Session2" / "dialog" / "EmoEvaluation" / "Ses02M_script01_1.txt"
    lineno = _line_of(path, "Ses02M_script01_1_M002\t")
    utt = "Ses02M_script01_1_M002"
    path.write_text(path.read_text().replace(f"{utt}\texc", f"{utt}\tjoy"))
    message = f"{path}:{lineno}: unknown label code 'joy' for {utt}"
    with pytest.raises(IemocapFormatError, match=re.escape(message)):
        read_iemocap(root)
    assert _prep(root, tmp_path / "data") == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "data" / "iemocap_all").exists()


def test_iemocap_malformed_summary_line(fresh_iemocap):
    root, _, _ = fresh_iemocap
    path = root / "Session4" / "dialog" / "EmoEvaluation" / "Ses04M_impro01.txt"
    lineno = _line_of(path, "Ses04M_impro01_F001\t")
    text = path.read_text().splitlines()
    text[lineno - 1] = text[lineno - 1].replace(" - ", " to ")
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(IemocapFormatError, match=re.escape(f"{path}:{lineno}: malformed summary")):
        read_iemocap(root)


def test_iemocap_duplicate_utterance(fresh_iemocap):
    root, _, _ = fresh_iemocap
    path = root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    first = _line_of(path, "Ses01F_impro01_M004\t")
    block = path.read_text().splitlines()[first - 1]
    with path.open("a") as f:
        f.write(block + "\n")
    last = len(path.read_text().splitlines())
    message = f"{path}:{last}: duplicate utterance Ses01F_impro01_M004 (first at {path}:{first})"
    with pytest.raises(IemocapFormatError, match=re.escape(message)):
        read_iemocap(root)


def test_iemocap_missing_wav(fresh_iemocap, tmp_path, capsys):
    root, _, _ = fresh_iemocap
    wav = root / "Session3/sentences/wav/Ses03F_script01_1/Ses03F_script01_1_M003.wav"
    wav.unlink()
    assert _prep(root, tmp_path / "data") == 1
    err = capsys.readouterr().err
    assert f"missing audio file {wav} for utterance Ses03F_script01_1_M003" in err

    # Audio of a dropped class is not needed: restore it, remove a fru one instead.
    soundfile.write(wav, np.zeros(FS // 4, dtype=np.float32), FS)
    records = {r.utt_id: r for r in read_iemocap(root)}
    dropped = next(r for r in records.values() if r.label == "fru")
    dropped.wav.unlink()
    assert _prep(root, tmp_path / "data") == 0


def test_iemocap_unreadable_or_wrong_rate_wav(fresh_iemocap, tmp_path, capsys):
    root, _, _ = fresh_iemocap
    wav = root / "Session5/sentences/wav/Ses05F_impro01/Ses05F_impro01_F000.wav"
    wav.write_bytes(b"not a wav file")
    assert _prep(root, tmp_path / "data") == 1
    assert f"cannot read audio file {wav}" in capsys.readouterr().err
    soundfile.write(wav, np.zeros(8000, dtype=np.float32), 8000)
    assert _prep(root, tmp_path / "data") == 1
    assert f"audio file {wav} is 1 channel(s) at 8000 Hz" in capsys.readouterr().err


def test_iemocap_missing_transcript(tmp_path):
    utterances, _ = iemocap_utterances()
    victim = next(u for u in utterances if u.utt_id == "Ses05F_impro01_M001")
    victim.transcript = None
    root = tmp_path / "IEMOCAP_full_release"
    write_iemocap(root, utterances)
    trans = root / "Session5" / "dialog" / "transcriptions" / "Ses05F_impro01.txt"
    with pytest.raises(
        IemocapFormatError,
        match=rf"utterance Ses05F_impro01_M001 .* no transcript in {re.escape(str(trans))}$",
    ):
        read_iemocap(root)


# ----------------------------------------------------------------------------- LibriSpeech
def libri_utterances(subsets: Tuple[str, ...]) -> List[LibriUtterance]:
    rng = np.random.default_rng(1)
    texts = ["HE HOPED THERE WOULD BE STEW", "THE HORSES' HEADS O'ER THE HILL", "YES"]
    utterances = []
    for s, subset in enumerate(subsets):
        for speaker, chapter in ((19 + 100 * s, 198), (19 + 100 * s, 227), (1089 + s, 134686)):
            for index in range(len(texts)):
                utterances.append(
                    LibriUtterance(
                        subset=subset,
                        speaker=speaker,
                        chapter=chapter,
                        index=index,
                        transcript=texts[index],
                        audio=_tone(rng, 0.25 + 0.1 * index),
                    )
                )
    return utterances


def test_librispeech_round_trip_and_prepare(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    root = tmp_path / "LibriSpeech"
    first = ("train-clean-100", "dev-clean")
    utterances = libri_utterances(first)
    write_librispeech(root, utterances)
    assert (root / "dev-clean/119/198/119-198.trans.txt").read_text().splitlines()[0] == (
        "119-198-0000 HE HOPED THERE WOULD BE STEW"
    )

    records = read_librispeech(root, "train-clean-100")
    want = sorted((u for u in utterances if u.subset == "train-clean-100"), key=lambda u: u.utt_id)
    assert [r.utt_id for r in records] == [u.utt_id for u in want]
    for r, u in zip(records, want):
        assert (r.speaker, r.chapter, r.transcript) == (u.speaker, u.chapter, u.transcript)
        audio, fs = soundfile.read(r.flac)
        assert fs == FS and len(audio) == len(u.audio)

    out = tmp_path / "data"
    argv = ["--librispeech", str(root), "--out", str(out), "--nj", "2"]
    assert prepare_librispeech.main(argv) == 0
    for subset in first:
        d = out / subset.replace("-", "_")
        mine = {u.utt_id: u for u in utterances if u.subset == subset}
        assert validate_data_dir(d) == sorted(mine)
        assert read_table(d / "utt2spk") == {k: str(u.speaker) for k, u in mine.items()}
        assert read_table(d / "text.orig") == {k: u.transcript for k, u in mine.items()}
        text = read_table(d / "text")
        for k, u in mine.items():
            assert text[k] == normalize_transcript(u.transcript)
        for k, path in read_table(d / "wav.scp").items():
            assert path.endswith(".flac")
            assert soundfile.info(path).frames == len(mine[k].audio)
        for k, dur in read_table(d / "utt2dur").items():
            assert float(dur) == pytest.approx(len(mine[k].audio) / FS, abs=1e-4)
    text = read_table(out / "train_clean_100" / "text")
    assert text["19-198-0001"] == "THE HORSES HEADS O'ER THE HILL"
    # Only one training subset: the union must not be called train_960.
    assert not (out / "train_960").exists()
    train = out / "train_libri"
    assert validate_data_dir(train) == validate_data_dir(out / "train_clean_100")
    assert "train-clean-360, train-other-500" in caplog.text

    caplog.clear()
    assert prepare_librispeech.main(argv) == 0
    assert "nothing to do" in caplog.text

    # The rest of the training data arrives: a rerun rebuilds and names the union 960.
    caplog.clear()
    more = libri_utterances(("train-clean-100", "train-clean-360", "train-other-500"))[9:]
    write_librispeech(root, more)
    assert prepare_librispeech.main(argv) == 0
    assert "nothing to do" not in caplog.text
    assert not train.exists()
    ids = validate_data_dir(out / "train_960")
    assert len(ids) == 27
    assert ids == sorted(
        validate_data_dir(out / "train_clean_100")
        + validate_data_dir(out / "train_clean_360")
        + validate_data_dir(out / "train_other_500"),
        key=lambda s: s.encode(),
    )


def test_librispeech_unpaired_files(tmp_path):
    root = tmp_path / "LibriSpeech"
    utterances = libri_utterances(("dev-other",))
    utterances[1].transcript = None  # a flac without a transcript line
    write_librispeech(root, utterances)
    flac = root / "dev-other/19/198/19-198-0001.flac"
    message = f"{flac}: no transcript line for 19-198-0001"
    with pytest.raises(LibriSpeechFormatError, match=re.escape(message)):
        read_librispeech(root, "dev-other")

    root2 = tmp_path / "LibriSpeech2"
    utterances = libri_utterances(("dev-other",))
    utterances[4].audio = None  # a transcript line without a flac
    write_librispeech(root2, utterances)
    trans = root2 / "dev-other/19/227/19-227.trans.txt"
    message = f"{trans}:2: no audio file {trans.parent / '19-227-0001.flac'}"
    with pytest.raises(LibriSpeechFormatError, match=re.escape(message)):
        read_librispeech(root2, "dev-other")
    argv = ["--librispeech", str(root2), "--out", str(tmp_path / "data")]
    assert prepare_librispeech.main(argv) == 1
    assert not (tmp_path / "data" / "dev_other").exists()


# ----------------------------------------------------------------------------- data dirs
def _small_dir(path: Path) -> Dict[str, Dict[str, str]]:
    utts = [f"spk{i % 3}-utt{i:02d}" for i in range(14)]
    tables = {
        "wav.scp": {u: f"/corpus/{u}.wav" for u in utts},
        "utt2spk": {u: u.split("-")[0] for u in utts},
        "text": {u: ("HELLO WORLD" if i else "") for i, u in enumerate(utts)},
        "utt2dur": {u: "1.25" for u in utts},
    }
    write_data_dir(path, tables)
    return tables


def test_write_data_dir_sorts_in_c_locale_order(tmp_path):
    keys = ["b", "a-b", "a", "B", "_x", "\u00e4", "a_b", "Z9"]
    tables = {"wav.scp": {k: f"{k}.wav" for k in keys}, "utt2spk": {k: "s" for k in keys}}
    write_data_dir(tmp_path / "d", tables)
    lines = (tmp_path / "d" / "wav.scp").read_text(encoding="utf-8").splitlines()
    # Bytes: "B" 0x42 < "Z" 0x5a < "_" 0x5f < "a" 0x61, "-" 0x2d < "_", "ä" is 0xc3 0xa4.
    expected = ["B", "Z9", "_x", "a", "a-b", "a_b", "b", "\u00e4"]
    assert [line.split(" ")[0] for line in lines] == expected
    assert (tmp_path / "d" / "spk2utt").read_text(encoding="utf-8") == (
        "s B Z9 _x a a-b a_b b \u00e4\n"
    )


def test_data_dir_round_trip_and_subset(tmp_path):
    tables = _small_dir(tmp_path / "d")
    ids = validate_data_dir(tmp_path / "d")
    assert ids == sorted(tables["utt2spk"])
    assert read_table(tmp_path / "d" / "text", allow_empty_value=True) == tables["text"]
    assert read_table(tmp_path / "d" / "spk2utt")["spk1"].split() == [
        u for u in ids if u.startswith("spk1")
    ]
    keep = ids[::2]
    assert subset_data_dir(tmp_path / "d", tmp_path / "sub", keep) == keep
    assert list(read_table(tmp_path / "sub" / "utt2dur")) == keep
    assert set((p.name for p in (tmp_path / "sub").iterdir())) == {
        "wav.scp", "utt2spk", "spk2utt", "text", "utt2dur"
    }
    with pytest.raises(KaldiTableError, match=r"1 requested utterances are not in utt2spk: nope"):
        subset_data_dir(tmp_path / "d", tmp_path / "bad", keep + ["nope"])
    (tmp_path / "d" / "feats.scp").write_text("x y\n")
    with pytest.raises(KaldiTableError, match=r"cannot subset unknown file\(s\) feats.scp"):
        subset_data_dir(tmp_path / "d", tmp_path / "bad", keep)


def _rewrite(path: Path, transform) -> None:
    path.write_bytes(transform(path.read_bytes()))


def _swap_lines(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[2], lines[3] = lines[3], lines[2]
    return b"\n".join(lines)


def _duplicate_line(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines.insert(3, lines[2])
    return b"\n".join(lines)


def _bad_byte(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[4] += b"\xff"
    return b"\n".join(lines)


def _control_char(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[4] = lines[4].replace(b" ", b" \x07", 1)
    return b"\n".join(lines)


@pytest.mark.parametrize(
    "name, transform, message",
    [
        ("wav.scp", _swap_lines, r"wav.scp:4: key 'spk\S+' sorts before the previous key"),
        (
            "utt2dur",
            _duplicate_line,
            r"utt2dur:4: duplicate utterance id 'spk\S+' \(first on line 3",
        ),
        ("text", lambda d: d.replace(b"\n", b"\r\n"), r"text:1: CRLF line end"),
        ("utt2spk", _bad_byte, r"utt2spk:5: not valid UTF-8"),
        ("wav.scp", _control_char, r"wav.scp:5: control character U\+0007"),
        ("utt2dur", lambda d: d.rstrip(b"\n"), r"utt2dur:14: missing newline at the end"),
        ("utt2dur", lambda d: d.replace(b"1.25", b"-1", 1), r"utt2dur:1: .* positive number"),
        ("wav.scp", lambda d: d.replace(b".wav\n", b".wav\n\n", 1), r"wav.scp:2: empty line"),
    ],
)
def test_validate_data_dir_rejects(tmp_path, name, transform, message):
    _small_dir(tmp_path / "d")
    _rewrite(tmp_path / "d" / name, transform)
    with pytest.raises(KaldiTableError, match=message) as info:
        validate_data_dir(tmp_path / "d")
    assert str(tmp_path / "d" / name) in str(info.value)


def test_validate_data_dir_missing_ids(tmp_path):
    tables = _small_dir(tmp_path / "d")
    ids = sorted(tables["utt2spk"])
    missing = ids[:12]
    (tmp_path / "d" / "text").write_text("".join(f"{u} HI\n" for u in ids[12:]))
    with pytest.raises(KaldiTableError) as info:
        validate_data_dir(tmp_path / "d")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'd' / 'text'}: 12 ids of utt2spk are missing")
    assert " ".join(missing[:10]) + " ... (12 in total)" in message
    assert missing[10] not in message

    (tmp_path / "d" / "text").write_text("".join(f"{u} HI\n" for u in ids + ["zzz"]))
    with pytest.raises(KaldiTableError, match=r"text: 1 ids are not in utt2spk: zzz$"):
        validate_data_dir(tmp_path / "d")


def test_validate_data_dir_spk2utt_mismatch(tmp_path):
    tables = _small_dir(tmp_path / "d")
    spk2utt = tmp_path / "d" / "spk2utt"
    lines = spk2utt.read_text().splitlines()
    moved = lines[0].split()[-1]
    lines[0] = " ".join(lines[0].split()[:-1])
    lines[1] += f" {moved}"
    spk2utt.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        KaldiTableError,
        match=rf"spk2utt:2: utterance {moved} is listed under speaker spk1 but utt2spk says spk0",
    ):
        validate_data_dir(tmp_path / "d")
    assert tables["utt2spk"][moved] == "spk0"

    lines = spk2utt.read_text().splitlines()
    lines[1] = " ".join(lines[1].split()[:-1])
    spk2utt.write_text("\n".join(lines) + "\n")
    message = f"spk2utt: 1 utterances of utt2spk are not listed: {moved}"
    with pytest.raises(KaldiTableError, match=re.escape(message)):
        validate_data_dir(tmp_path / "d")


def test_write_data_dir_rejects_bad_tables(tmp_path):
    base = {"wav.scp": {"a": "a.wav", "b": "b.wav"}, "utt2spk": {"a": "s", "b": "s"}}
    with pytest.raises(KaldiTableError, match=r"emotion: 1 ids of utt2spk are missing: b"):
        write_data_dir(tmp_path / "d", {**base, "emotion": {"a": "hap"}})
    with pytest.raises(KaldiTableError, match=r"key 'a b' is empty or contains white space"):
        write_data_dir(tmp_path / "d", {"wav.scp": {"a b": "x"}, "utt2spk": {"a b": "s"}})
    with pytest.raises(KaldiTableError, match=r"emotion: key 'a' has an empty value"):
        write_data_dir(tmp_path / "d", {**base, "emotion": {"a": "", "b": "sad"}})
    with pytest.raises(KaldiTableError, match=r"text: entry 'a' contains control character U\+000A"):
        write_data_dir(tmp_path / "d", {**base, "text": {"a": "HI\nTHERE", "b": ""}})
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("script", ["prepare_iemocap.py", "prepare_librispeech.py"])
def test_scripts_help(script):
    result = subprocess.run(
        [sys.executable, str(LOCAL / script), "--help"], capture_output=True, text=True, check=True
    )
    assert "usage:" in result.stdout and "--out" in result.stdout
