"""Scoring: confusion matrix, WA/UA, WER, the strict Kaldi-file reader and the score CLI."""

import json
import random
import re
import subprocess
import sys

import numpy as np
import pytest

from espnet_asrser.bin.asrser_score import main as score_main
from espnet_asrser.metrics import (
    _edit_operations,
    confusion_matrix,
    format_confusion_matrix,
    per_class_recall,
    score_emotions,
    score_transcripts,
    unweighted_accuracy,
    weighted_accuracy,
    word_error_rate,
)
from espnet_asrser.utils.kaldi_table import KaldiTableError, read_table

CLASSES = ["neu", "hap", "sad", "ang"]

# 10 utterances: neu 3/4 right, hap 1/2, sad 2/3, ang 1/1.
REFS = ["neu"] * 4 + ["hap"] * 2 + ["sad"] * 3 + ["ang"]
HYPS = ["neu", "neu", "neu", "hap", "hap", "sad", "sad", "sad", "neu", "ang"]
CM = [
    [3, 1, 0, 0],
    [0, 1, 1, 0],
    [1, 0, 2, 0],
    [0, 0, 0, 1],
]
WA = 7 / 10
UA = (3 / 4 + 1 / 2 + 2 / 3 + 1 / 1) / 4  # 0.7291666...


# ----------------------------------------------------------------------------- emotions


def test_confusion_matrix_rows_are_references():
    cm = confusion_matrix(REFS, HYPS, CLASSES)
    assert cm.tolist() == CM
    # One hap reference predicted as sad: row hap, column sad.
    assert cm[CLASSES.index("hap"), CLASSES.index("sad")] == 1


def test_weighted_and_unweighted_accuracy_by_hand():
    cm = np.array(CM)
    assert weighted_accuracy(cm) == pytest.approx(WA)
    assert unweighted_accuracy(cm) == pytest.approx(UA)
    assert per_class_recall(cm) == pytest.approx([0.75, 0.5, 2 / 3, 1.0])


def test_unweighted_accuracy_skips_classes_without_references():
    # No "ang" reference, but one wrong "ang" prediction: it lowers neu's recall and WA,
    # and ang itself has no recall to average.
    cm = confusion_matrix(["neu", "neu", "sad"], ["neu", "ang", "sad"], CLASSES)
    assert per_class_recall(cm) == [0.5, None, 1.0, None]
    assert unweighted_accuracy(cm) == pytest.approx(0.75)
    assert weighted_accuracy(cm) == pytest.approx(2 / 3)


def test_confusion_matrix_rejects_unknown_labels_and_length_mismatch():
    with pytest.raises(ValueError, match="'exc'"):
        confusion_matrix(["neu", "exc"], ["neu", "neu"], CLASSES)
    with pytest.raises(ValueError, match="hypothesis.*'fru'"):
        confusion_matrix(["neu"], ["fru"], CLASSES)
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        confusion_matrix(["neu", "sad"], ["neu"], CLASSES)


def test_accuracy_of_an_empty_matrix_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        weighted_accuracy(np.zeros((4, 4), dtype=int))


def test_format_confusion_matrix_markdown():
    table = format_confusion_matrix(np.array([[5, 1], [0, 2]]), ["neu", "sad"])
    assert table == (
        "| ref \\ hyp | neu | sad |\n"
        "|---|---|---|\n"
        "| neu | 5 | 1 |\n"
        "| sad | 0 | 2 |"
    )


def test_score_emotions_matches_by_utterance_id():
    ids = [f"utt{k:02d}" for k in range(len(REFS))]
    ref = dict(zip(ids, REFS))
    # Hypotheses listed in another order: scoring must pair by id, not by position.
    hyp = dict(reversed(list(zip(ids, HYPS))))
    scores = score_emotions(ref, hyp, CLASSES)
    assert scores.n == 10
    assert scores.confusion_matrix.tolist() == CM
    assert scores.wa == pytest.approx(WA) and scores.ua == pytest.approx(UA)
    assert scores.per_class_recall["hap"] == pytest.approx(0.5)


def test_score_emotions_names_missing_and_extra_ids():
    ref = {"a": "neu", "b": "sad", "c": "ang"}
    with pytest.raises(ValueError, match="no hypothesis for b, c"):
        score_emotions(ref, {"a": "neu"}, CLASSES)
    with pytest.raises(ValueError, match="no reference for z"):
        score_emotions(ref, {**ref, "z": "neu"}, CLASSES)


# ----------------------------------------------------------------------------- WER


def test_wer_substitution_and_insertion():
    wer = word_error_rate([["a", "b", "c", "d"]], [["a", "x", "c", "d", "e"]])
    assert wer == {"errors": 2, "ref_words": 4, "wer": 0.5, "sub": 1, "ins": 1, "del": 0}


def test_wer_deletion_and_corpus_sum():
    wer = word_error_rate([["a", "b", "c"], ["d", "e"]], [["a", "c"], ["d", "e"]])
    assert wer == {"errors": 1, "ref_words": 5, "wer": 0.2, "sub": 0, "ins": 0, "del": 1}


def test_wer_ignores_special_tokens_on_both_sides():
    wer = word_error_rate(
        [["<sos/eos>", "hello", "world", "<sos/eos>"]],
        [["<blank>", "hello", "<eos>", "world", "<sos>"]],
    )
    assert wer == {"errors": 0, "ref_words": 2, "wer": 0.0, "sub": 0, "ins": 0, "del": 0}
    # The ignore set is configurable.
    assert word_error_rate([["uh", "yes"]], [["yes"]], ignore=["uh"])["errors"] == 0


def test_wer_empty_reference_counts_insertions_and_empty_corpus_is_undefined():
    wer = word_error_rate([[], ["a"]], [["x", "y"], ["a"]])
    assert wer == {"errors": 2, "ref_words": 1, "wer": 2.0, "sub": 0, "ins": 2, "del": 0}
    empty = word_error_rate([[]], [["x"]])
    assert empty["wer"] is None and empty["ins"] == 1
    assert word_error_rate([[]], [[]])["wer"] is None
    assert word_error_rate([["a", "b"]], [[]])["del"] == 2


def test_wer_tie_breaking_prefers_substitutions():
    # "a b" -> "b a": two substitutions or a deletion plus an insertion; both cost 2.
    wer = word_error_rate([["a", "b"]], [["b", "a"]])
    assert (wer["errors"], wer["sub"], wer["ins"], wer["del"]) == (2, 2, 0, 0)


def _edit_distance(ref, hyp):
    """Textbook recursion, independent of the implementation under test."""
    if not ref or not hyp:
        return len(ref) + len(hyp)
    return min(
        _edit_distance(ref[1:], hyp[1:]) + (ref[0] != hyp[0]),
        _edit_distance(ref[1:], hyp) + 1,
        _edit_distance(ref, hyp[1:]) + 1,
    )


def test_wer_errors_equal_edit_distance_on_random_pairs():
    rng = random.Random(0)
    for _ in range(50):
        ref = rng.choices("abc", k=rng.randint(0, 6))
        hyp = rng.choices("abc", k=rng.randint(0, 6))
        wer = word_error_rate([ref], [hyp])
        assert wer["errors"] == _edit_distance(ref, hyp) == wer["sub"] + wer["ins"] + wer["del"]
        # Every reference word is matched, substituted or deleted; likewise for hyp words.
        assert wer["ins"] - wer["del"] == len(hyp) - len(ref)


def test_wer_rejects_unsplit_strings():
    with pytest.raises(TypeError, match="sequence of words"):
        word_error_rate(["a b"], [["a", "b"]])


def test_score_transcripts_splits_words_and_checks_ids():
    wer = score_transcripts({"u1": "a b  c", "u2": ""}, {"u2": "x", "u1": "a c"})
    assert (wer["ref_words"], wer["del"], wer["ins"], wer["errors"]) == (3, 1, 1, 2)
    with pytest.raises(ValueError, match="transcript: no hypothesis for u2"):
        score_transcripts({"u1": "a", "u2": "b"}, {"u1": "a"})


# ----------------------------------------------------------------------------- Kaldi reader


# The settings for files that need not be sorted nor end in a newline.
ANY_LAYOUT = dict(check_sorted=False, check_final_newline=False)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_read_table_values(tmp_path):
    path = _write(
        tmp_path / "text",
        "u1 HELLO  WORLD \nu2\nu3\tneu\nu4 caf\u00e9 \u3000ok".encode("utf-8"),
    )
    assert read_table(path, allow_empty_value=True, **ANY_LAYOUT) == {
        "u1": "HELLO  WORLD",
        "u2": "",
        "u3": "neu",
        # Only ASCII spaces and tabs separate fields; U+3000 stays inside the value.
        "u4": "caf\u00e9 \u3000ok",
    }
    assert read_table(_write(tmp_path / "empty", b"")) == {}


@pytest.mark.parametrize(
    "data, line_no, message",
    [
        (b"u1 neu\nu2 sad\nu1 ang\n", 3, "duplicate utterance id 'u1' (first on line 1)"),
        (b"u1 neu\r\nu2 sad\r\n", 1, "CRLF"),
        (b"u1 neu\nu2 \xff\xfe\n", 2, "not valid UTF-8"),
        (b"\xef\xbb\xbfu1 neu\n", 1, "byte-order mark"),
        (b"u1 neu\n\nu2 sad\n", 2, "empty line"),
        (b"u1 neu\n u2 sad\n", 2, "starts with whitespace"),
    ],
)
def test_read_table_rejects_malformed_files(tmp_path, data, line_no, message):
    path = _write(tmp_path / "utt2emo", data)
    with pytest.raises(KaldiTableError) as info:
        read_table(path, **ANY_LAYOUT)
    assert str(info.value).startswith(f"{path}:{line_no}: ")
    assert message in str(info.value)
    assert info.value.line_no == line_no


@pytest.mark.parametrize(
    "data, line_no, message",
    [
        (b"u2 sad\nu1 neu\n", 2, "key 'u1' sorts before the previous key 'u2'"),
        (b"u1 neu\nu2 sad", 2, "missing newline at the end of the file"),
        (b"u1 neu\nu2 s\x07d\n", 2, "control character U+0007 in entry 'u2'"),
    ],
)
def test_read_table_strict_defaults(tmp_path, data, line_no, message):
    # Control characters are always refused; order and the final newline only by default.
    path = _write(tmp_path / "utt2emo", data)
    with pytest.raises(KaldiTableError, match=rf"^{re.escape(str(path))}:{line_no}: "):
        read_table(path)
    with pytest.raises(KaldiTableError, match=re.escape(message)):
        read_table(path)
    if b"\x07" not in data:
        assert len(read_table(path, **ANY_LAYOUT)) == 2


def test_read_table_can_allow_empty_values(tmp_path):
    path = _write(tmp_path / "utt2emo", b"u1 neu\nu2\n")
    assert read_table(path, allow_empty_value=True)["u2"] == ""
    with pytest.raises(KaldiTableError, match=r":2: utterance 'u2' has no value"):
        read_table(path)


# ----------------------------------------------------------------------------- CLI


def _kaldi_file(path, entries):
    path.write_text("".join(f"{k} {v}".rstrip() + "\n" for k, v in entries), encoding="utf-8")
    return str(path)


@pytest.fixture
def score_inputs(tmp_path):
    ids = [f"Ses01F_impro01_F{k:03d}" for k in range(len(REFS))]
    return {
        "ref_emotion": _kaldi_file(tmp_path / "ref_emo", zip(ids, REFS)),
        "hyp_emotion": _kaldi_file(tmp_path / "hyp_emo", zip(ids, HYPS)),
        "ref_text": _kaldi_file(
            tmp_path / "ref_text", zip(ids, ["a b c d", ""] + ["yes"] * (len(ids) - 2))
        ),
        "hyp_text": _kaldi_file(
            tmp_path / "hyp_text", zip(ids, ["a x c d e", "oh"] + ["yes"] * (len(ids) - 2))
        ),
    }


def test_score_cli_end_to_end(tmp_path, score_inputs, capsys):
    out_json, out_md = tmp_path / "out" / "scores.json", tmp_path / "out" / "scores.md"
    argv = [
        *("--ref_emotion", score_inputs["ref_emotion"]),
        *("--hyp_emotion", score_inputs["hyp_emotion"]),
        *("--ref_text", score_inputs["ref_text"]),
        *("--hyp_text", score_inputs["hyp_text"]),
        *("--classes", *CLASSES),
        *("--output_json", str(out_json)),
        *("--output_md", str(out_md)),
    ]
    assert score_main(argv) == 0

    scores = json.loads(out_json.read_text())
    assert scores["n"] == 10 and scores["classes"] == CLASSES
    assert scores["wa"] == pytest.approx(WA) and scores["ua"] == pytest.approx(UA)
    assert scores["confusion_matrix"] == CM
    assert scores["per_class_recall"] == pytest.approx(
        {"neu": 0.75, "hap": 0.5, "sad": 2 / 3, "ang": 1.0}
    )
    # 4 + 0 + 8 x 1 reference words; 1 sub + 1 ins, then 1 ins on the empty reference.
    assert scores["wer"] == {
        "errors": 3, "ref_words": 12, "wer": 0.25, "sub": 1, "ins": 2, "del": 0
    }

    printed = capsys.readouterr().out
    assert "WA=70.00% UA=72.92% WER=25.00%" in printed
    assert "| hap | 0 | 1 | 1 | 0 |" in printed
    markdown = out_md.read_text()
    assert "| 10 | 70.00 | 72.92 | 25.00 |" in markdown
    assert format_confusion_matrix(np.array(CM), CLASSES) in markdown


def test_score_cli_without_text_writes_null_wer(tmp_path, score_inputs):
    out_json = tmp_path / "scores.json"
    argv = [
        *("--ref_emotion", score_inputs["ref_emotion"]),
        *("--hyp_emotion", score_inputs["hyp_emotion"]),
        *("--classes", *CLASSES),
        *("--output_json", str(out_json)),
    ]
    assert score_main(argv) == 0
    assert json.loads(out_json.read_text())["wer"] is None


def test_score_cli_reports_missing_hypotheses(tmp_path, score_inputs, capsys):
    hyp = tmp_path / "hyp_short"
    lines = open(score_inputs["hyp_emotion"], encoding="utf-8").readlines()
    hyp.write_text("".join(lines[:-1]), encoding="utf-8")
    out_json = tmp_path / "scores.json"
    argv = [
        *("--ref_emotion", score_inputs["ref_emotion"]),
        *("--hyp_emotion", str(hyp)),
        *("--classes", *CLASSES),
        *("--output_json", str(out_json)),
    ]
    assert score_main(argv) == 1
    assert "no hypothesis for Ses01F_impro01_F009" in capsys.readouterr().err
    assert not out_json.exists()


def test_score_cli_needs_both_transcript_files(score_inputs, tmp_path):
    argv = [
        *("--ref_emotion", score_inputs["ref_emotion"]),
        *("--hyp_emotion", score_inputs["hyp_emotion"]),
        *("--ref_text", score_inputs["ref_text"]),
        *("--classes", *CLASSES),
        *("--output_json", str(tmp_path / "scores.json")),
    ]
    with pytest.raises(SystemExit) as info:
        score_main(argv)
    assert info.value.code == 2


def test_scoring_runs_as_a_module_without_importing_torch():
    # The scorer is run once per fold from shell recipes: it must start fast, without torch.
    check = (
        "import sys, runpy; sys.argv = ['asrser_score', '--help']\n"
        "try:\n"
        "    runpy.run_module('espnet_asrser.bin.asrser_score', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: asrser_score")


def test_edit_operations_total_is_editdistance():
    # Our alignment exists for the S/I/D split (RESULTS.md prints it); its total must be
    # the Levenshtein distance that ESPnet's own dependency computes.
    import editdistance

    rng = np.random.default_rng(0)
    words = ["A", "B", "C", "D"]
    for _ in range(300):
        ref = list(rng.choice(words, size=int(rng.integers(0, 9))))
        hyp = list(rng.choice(words, size=int(rng.integers(0, 9))))
        assert sum(_edit_operations(ref, hyp)) == editdistance.eval(ref, hyp)


def test_confusion_matrix_refuses_what_sklearn_would_drop():
    # scikit-learn's confusion_matrix(labels=...) silently leaves out a pair whose label is
    # not listed; ours refuses it, so no utterance vanishes from a score.
    with pytest.raises(ValueError, match=r"hypothesis label\(s\) \['fru'\] not in classes"):
        confusion_matrix(["ang", "hap"], ["ang", "fru"], ["ang", "hap", "neu", "sad"])
