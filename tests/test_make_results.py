"""local/make_results.py on a small fake run: verdicts, numbers, sections, paper tables.

The fake run is a recipe directory with the names :mod:`espnet_asrser.recipe.layout`
gives (configs in conf/, experiments in exp/, tables in dump/). The score files are
written by the real scorer (``espnet_asrser.bin.asrser_score``, called in-process for
speed) from fake hypotheses; the training records are real ESPnet reporter states in
``checkpoint.pth``.
"""

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from espnet2.train.reporter import Reporter

from espnet_asrser.bin.asrser_score import main as score_main

RECIPE = Path(__file__).resolve().parents[1] / "egs2" / "iemocap_asrser" / "ser1"
CLASSES = ["neu", "hap", "sad", "ang"]
FOLDS = ["1", "2"]
N_PER_FOLD = 100
WORDS = "YES NO MAYBE WHAT WHY WHERE HELLO THERE GOOD BAD DAY NIGHT".split()
TRAIN_ACC = [0.3, 0.5, 0.7, 0.65]
VALID_ACC = [0.35, 0.45, 0.5, 0.48]
A2W_TRAIN_ACC = [0.2, 0.4, 0.6]
A2W_VALID_ACC = [0.25, 0.41, 0.39]
ABLATION = "ASR-SER, L_ASR summed per utterance (before the fix)"
RESULTS = Path("exp/results/all_speaker_independent_a2w")
ASR_EXP = Path("exp/asr_train_a2w")
DECODE = ASR_EXP / "decode_decode_asr_valid.acc.ave"


def load_make_results():
    spec = importlib.util.spec_from_file_location(
        "make_results", RECIPE / "local" / "make_results.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_results"] = module
    spec.loader.exec_module(module)
    return module


make_results = load_make_results()


# ----------------------------------------------------------------------------- fakes
def utterances():
    ids = {k: [f"Ses0{k}_utt{i:03d}" for i in range(N_PER_FOLD)] for k in FOLDS}
    all_ids = [u for k in FOLDS for u in ids[k]]
    refs = {u: CLASSES[i % 4] for i, u in enumerate(all_ids)}
    rng = np.random.default_rng(0)
    texts = {u: " ".join(rng.choice(WORDS, size=int(rng.integers(3, 7)))) for u in all_ids}
    return ids, all_ids, refs, texts


def systems(all_ids, refs, texts):
    """Emotion and transcript hypotheses of each result key, with known verdicts."""
    rng = np.random.default_rng(1)
    n = len(all_ids)

    def predict(right):
        return {u: refs[u] if ok else CLASSES[(CLASSES.index(refs[u]) + 1) % 4]
                for u, ok in zip(all_ids, right)}

    def transcribe(rate):
        out = {}
        for u in all_ids:
            words = texts[u].split()
            out[u] = " ".join("UH" if rng.random() < rate else w for w in words)
        return out

    combined_right = rng.random(n) < 0.9
    # Text: combined, but 4 utterances lost and 2 gained: no significant difference.
    text_right = combined_right.copy()
    text_right[np.flatnonzero(combined_right)[:4]] = False
    text_right[np.flatnonzero(~combined_right)[:2]] = True
    # ASR-SER: combined with one utterance each way: it approaches combined.
    asrser_right = combined_right.copy()
    asrser_right[np.flatnonzero(combined_right)[-1]] = False
    asrser_right[np.flatnonzero(~combined_right)[-1]] = True
    zero_shot = transcribe(0.5)
    return {
        "audio": (predict(rng.random(n) < 0.6), None),
        "text": (predict(text_right), None),
        "combined": (predict(combined_right), None),
        # Always "neu": at chance, so its claims are not testable.
        "text_asr": ({u: "neu" for u in all_ids}, zero_shot),
        "combined_asr": (predict(rng.random(n) < 0.5), zero_shot),
        "asrser": (predict(asrser_right), transcribe(0.1)),
        "asrser_uttnorm": (predict(rng.random(n) < 0.55), transcribe(0.3)),
    }


def write_table(path: Path, table: dict, ids) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{u} {table[u]}\n" for u in sorted(ids)), encoding="utf-8")
    return path


def score(ref_dir: Path, hyp_dir: Path, out: Path, with_text: bool) -> None:
    argv = ["--ref_emotion", str(ref_dir / "emotion"), "--hyp_emotion",
            str(hyp_dir / "emotion"), "--classes", *CLASSES, "--output_json", str(out)]
    if with_text:
        argv += ["--ref_text", str(ref_dir / "text"), "--hyp_text", str(hyp_dir / "text")]
    assert score_main(argv) == 0


def reporter_checkpoint(path: Path, name: str, train, valid) -> None:
    reporter = Reporter()
    for epoch, (tr, va) in enumerate(zip(train, valid), start=1):
        reporter.set_epoch(epoch)
        for phase, value in (("train", tr), ("valid", va)):
            with reporter.observe(phase) as sub:
                for _ in range(2):
                    sub.register({name: value, "loss": 1.0 - value}, weight=8)
                    sub.next()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {}, "reporter": reporter.state_dict()}, path)


def ser_experiment(exp: Path, mode: str, checkpoint: bool = True) -> None:
    exp.mkdir(parents=True, exist_ok=True)
    config = {
        "mode": mode, "max_epoch": 6, "batch_size": 8, "optim": "adam",
        "optim_conf": {"lr": 0.001}, "grad_clip": 5.0,
        "best_model_criterion": [["valid", "acc_ser", "max"]],
    }
    (exp / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (exp / "3epoch.pth").write_bytes(b"")
    os.symlink("3epoch.pth", exp / "valid.acc_ser.best.pth")
    if checkpoint:
        reporter_checkpoint(exp / "checkpoint.pth", "acc_ser", TRAIN_ACC, VALID_ACC)


def ser_exp(mode: str, k: str) -> Path:
    name = "ablation_train_asrser_uttnorm" if mode == "asrser_uttnorm" else f"train_{mode}"
    return Path("exp") / f"ser_fold{k}_{name}"


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    ids, all_ids, refs, texts = utterances()
    results = root / RESULTS
    dump = root / "dump" / "fbank"
    for k in FOLDS:
        write_table(dump / f"iemocap_fold{k}_test" / "emotion", refs, ids[k])
        write_table(dump / f"iemocap_fold{k}_test" / "text", texts, ids[k])
    for key, (emotions, transcripts) in systems(all_ids, refs, texts).items():
        for k in FOLDS:
            hyp = root / "decode" / key / f"fold{k}"
            write_table(hyp / "emotion", emotions, ids[k])
            if transcripts:
                write_table(hyp / "text", transcripts, ids[k])
            score(dump / f"iemocap_fold{k}_test", hyp, results / key / f"fold{k}.json",
                  transcripts is not None)
        pooled = results / key / "pooled"
        write_table(pooled / "ref" / "emotion", refs, all_ids)
        write_table(pooled / "emotion", emotions, all_ids)
        if transcripts:
            write_table(pooled / "ref" / "text", texts, all_ids)
            write_table(pooled / "text", transcripts, all_ids)
        score(pooled / "ref", pooled, pooled / "score.json", transcripts is not None)
        shutil.copy(pooled / "score.json", results / key / "pooled.json")

    for mode in ("audio", "text", "combined", "asrser", "asrser_uttnorm"):
        for k in FOLDS:
            # No training record for one experiment: the table says so.
            ser_experiment(root / ser_exp(mode, k), mode.split("_")[0],
                           checkpoint=(mode, k) != ("audio", "2"))
    asr_exp = root / ASR_EXP
    reporter_checkpoint(asr_exp / "checkpoint.pth", "acc", A2W_TRAIN_ACC, A2W_VALID_ACC)
    (asr_exp / "config.yaml").write_text(yaml.safe_dump({
        "max_epoch": 3, "keep_nbest_models": 2,
        "best_model_criterion": [["valid", "acc", "max"]],
    }))
    conf = root / "conf"
    (conf / "ablation").mkdir(parents=True)
    for name in ("train_a2w", "decode_asr", "train_audio", "train_text", "train_combined",
                 "train_asrser"):
        (conf / f"{name}.yaml").write_text(yaml.safe_dump({"beam_size": 4}))
    (conf / "ablation" / "train_asrser_uttnorm.yaml").write_text(f"# ablation: {ABLATION}\n")
    decode = root / DECODE
    wer = {"n": 10, "wer": {"wer": 0.2, "errors": 2, "sub": 1, "ins": 0, "del": 1,
                            "ref_words": 10}}
    for name in ["test_clean", "iemocap_all"] + [f"iemocap_fold{k}_test" for k in FOLDS]:
        (decode / name).mkdir(parents=True)
        (decode / name / "score.json").write_text(json.dumps(wer))

    data = root / "data"
    (data / "iemocap_all").mkdir(parents=True)
    (data / "iemocap_all" / ".done").write_text(json.dumps({"options": {
        "exc": "merge", "max_dur": 20, "subset": "all", "iemocap": "/corpora/IEMOCAP",
        "protocol": "speaker_independent", "valid_rule": "speaker",
    }}))
    write_table(dump / "iemocap_all" / "emotion", refs, all_ids)
    for k in FOLDS:
        for part, spk in (("train", "Ses09F"), ("valid", "Ses0{k}M"), ("test", "Ses0{k}F")):
            d = dump / f"iemocap_fold{k}_{part}"
            d.mkdir(exist_ok=True)
            utts = ids[k] if part == "test" else [f"x{part}{i}" for i in range(5)]
            speaker = spk.format(k=k)
            (d / "utt2spk").write_text("".join(f"{u} {speaker}\n" for u in utts))
            (d / "spk2utt").write_text(f"{speaker} {' '.join(utts)}\n")
    oov = data / "token_list" / "word" / "iemocap" / "oov_rate.json"
    oov.parent.mkdir(parents=True)
    oov.write_text(json.dumps({
        "vocab_entries": 100, "token_list": "tokens.txt", "oov_rate": 0.05,
        "running_words": 1000, "oov_distinct_words": 10, "distinct_words": 200,
    }))
    argv = ["--folds", " ".join(FOLDS), "--conf_dir", "conf", "--asr_pre_config", "none"]
    return {"root": root, "results": results, "decode": decode, "argv": argv,
            "refs": refs, "all_ids": all_ids}


def make(fake_run, *argv) -> int:
    """make_results.main in the fake run's recipe directory."""
    cwd = os.getcwd()
    os.chdir(fake_run["root"])
    try:
        return make_results.main([*fake_run["argv"], *argv])
    finally:
        os.chdir(cwd)


def run(fake_run, tmp_path, *extra) -> str:
    out = tmp_path / "RESULTS.md"
    assert make(fake_run, *extra, "--out", str(out)) == 0
    return out.read_text(encoding="utf-8")


def section(markdown: str, heading: str) -> str:
    start = markdown.index(heading)
    end = markdown.find("\n## ", start + 1)
    return markdown[start:] if end < 0 else markdown[start:end]


def rows(text: str):
    """Cells of the table rows in ``text``, header and separator lines left out."""
    lines = text.splitlines()
    return [
        [c.strip() for c in line.strip("|").split(" | ")]
        for line, after in zip(lines, lines[1:] + [""])
        if line.startswith("| ") and not after.startswith("|---")
    ]


def pooled(fake_run, key):
    return json.loads((fake_run["results"] / key / "pooled.json").read_text())


def pct(x):
    return f"{100 * x:.1f}"


# ----------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def markdown(fake_run, tmp_path_factory):
    (fake_run["decode"] / "listening.json").write_text(json.dumps({
        "valid_set": "dev_clean", "n": 50, "acc_own_audio": 0.62,
        "acc_shuffled_audio": 0.31, "seed": 3, "note": "fake numbers of a test",
    }))
    try:
        return run(fake_run, tmp_path_factory.mktemp("out"))
    finally:
        (fake_run["decode"] / "listening.json").unlink()


def test_claim_verdicts(markdown):
    claims = {r[0]: r for r in rows(section(markdown, "## The paper's claims"))}
    verdicts = {name: r[1] for name, r in claims.items()}
    assert verdicts["combined beats audio-only"] == "holds"
    assert verdicts["combined beats text-only"] == "not significant"
    assert verdicts["reference transcripts beat ASR transcripts, text"] == (
        "not testable: Text-based (ASR transcripts) at chance"
    )
    assert verdicts["reference transcripts beat ASR transcripts, combined"] == "holds"
    assert verdicts["ASR-SER beats combined with ASR transcripts"] == "holds"
    assert verdicts["ASR-SER beats audio-only"] == "holds"
    assert verdicts[
        "ASR-SER approaches combined with reference transcripts (WA within ±5 points)"
    ] == "holds"
    assert verdicts["joint fine-tuning lowers the IEMOCAP WER"] == "holds"
    # The chance check shows why.
    chance = {r[0]: r for r in rows(section(markdown, "## The paper's claims"))}
    assert chance["Text-based (ASR transcripts)"][-1] == "no (at chance)"
    assert chance["Audio-based"][-1] == "WA, UA"


def test_claim_numbers_are_those_of_the_score_files(fake_run, markdown):
    claims = {r[0]: r for r in rows(section(markdown, "## The paper's claims"))}
    combined, audio = pooled(fake_run, "combined"), pooled(fake_run, "audio")
    numbers = claims["combined beats audio-only"][2]
    assert numbers.startswith(f"WA {pct(combined['wa'])} vs {pct(audio['wa'])}, McNemar ")
    assert f"; UA {pct(combined['ua'])} vs {pct(audio['ua'])}, diff " in numbers
    # McNemar p of combined vs text, from the per-utterance files by hand.
    refs = fake_run["refs"]

    def correct(key):
        hyp = dict(line.split() for line in
                   (fake_run["results"] / key / "pooled" / "emotion").read_text().splitlines())
        return {u: hyp[u] == refs[u] for u in refs}

    a, b = correct("combined"), correct("text")
    only_a = sum(a[u] and not b[u] for u in refs)
    only_b = sum(b[u] and not a[u] for u in refs)
    assert (only_a, only_b) == (4, 2)
    p = 2 * sum(math.comb(6, i) for i in range(3)) / 2**6
    assert f"McNemar p = {p:.3f};" in claims["combined beats text-only"][2]
    wer = claims["joint fine-tuning lowers the IEMOCAP WER"][2]
    tuned, zero_shot = pooled(fake_run, "asrser"), pooled(fake_run, "text_asr")
    assert wer.startswith(
        f"WER {pct(tuned['wer']['wer'])} after vs {pct(zero_shot['wer']['wer'])} zero-shot, "
        f"diff {100 * (tuned['wer']['wer'] - zero_shot['wer']['wer']):+.1f} ["
    )
    # Table 1 shows the pooled files' numbers.
    table = {r[0]: r for r in rows(section(markdown, "## Table 1"))}
    for key, name in (("audio", "Audio-based"), ("asrser", "ASR-SER")):
        s = pooled(fake_run, key)
        assert table[name][1:3] == [pct(s["wa"]), pct(s["ua"])]


def test_ablation_section(fake_run, markdown):
    text = section(markdown, "## Ablation (beside ASR-SER)")
    label = ABLATION
    table = rows(text)
    pooled_rows = {r[0]: r for r in table if len(r) == 6 and r[1] not in FOLDS}
    s = pooled(fake_run, "asrser_uttnorm")
    assert pooled_rows[label][1:4] == [pct(s["wa"]), pct(s["ua"]), pct(s["wer"]["wer"])]
    assert pooled_rows[label][4].startswith("WA ") and "McNemar p" in pooled_rows[label][4]
    assert "; WER +" in pooled_rows[label][4]
    assert pooled_rows[label][5] == "holds"  # ASR-SER beats the ablation
    assert pooled_rows["ASR-SER"][4:] == ["–", "–"]
    per_fold = [r for r in table if r[1] in FOLDS]
    assert len(per_fold) == 2 * len(FOLDS)
    for r in per_fold:
        key = "asrser" if r[0] == "ASR-SER" else "asrser_uttnorm"
        f = json.loads((fake_run["results"] / key / f"fold{r[1]}.json").read_text())
        assert r[2:] == [str(f["n"]), pct(f["wa"]), pct(f["ua"]), pct(f["wer"]["wer"])]


def test_training_section(markdown):
    text = section(markdown, "## Training: best train and valid accuracy")
    table = {(r[0], r[1]): r for r in rows(text)}
    assert table["Combined", "1"][2:] == ["70.0 (epoch 3)", "50.0 (epoch 3)", "3", "4", "6"]
    assert table["ASR-SER", "2"][2:4] == ["70.0 (epoch 3)", "50.0 (epoch 3)"]
    assert table["Audio-based", "2"][2:] == ["–", "–", "3", "–", "6"]
    assert "No `checkpoint.pth` (no training record) in: " in text
    assert "ser_fold2_train_audio" in text.split("No `checkpoint.pth`")[1]
    a2w = [r for r in rows(text) if r[0].endswith("asr_train_a2w`")]
    assert a2w[0][1:] == ["60.0 (epoch 3)", "41.0 (epoch 2)", "`valid.acc.ave.pth`", "3", "3"]


def test_listening_check(markdown, fake_run, tmp_path):
    text = section(markdown, "## ASR: word error rates of the pretrained A2W model")
    assert "### Listening check of the A2W model" in text
    table = {r[0]: r[1] for r in rows(text.split("### Listening check")[1])}
    assert table == {"own": "62.0", "shuffled": "31.0", "own minus shuffled": "+31.0"}
    assert "`dev_clean` (50 utterances" in text and "Note: fake numbers of a test" in text
    # Without the file: said so.
    assert "Not measured: there is no `" in run(fake_run, tmp_path)


def test_figures_are_written_and_linked(fake_run, tmp_path):
    """Stage 12's pictures: a PNG of each system's pooled confusion matrix and of each
    fold's WA/UA, in the results directory, linked from RESULTS.md (wherever it is)."""
    from PIL import Image

    out_dir = tmp_path / "elsewhere"
    out_dir.mkdir()
    figures = section(run(fake_run, out_dir), "## Figures")
    links = re.findall(r"\]\(([^)]+)\)", figures)
    results = fake_run["results"]
    expected = [results / f"confusion_{key}.png" for key in pooled_keys(results)]
    expected += [results / f"wa_ua_fold{k}.png" for k in FOLDS]
    assert sorted((out_dir / link).resolve() for link in links) == sorted(
        p.resolve() for p in expected
    )
    assert all(not Path(link).is_absolute() for link in links)
    for path in expected:
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), path
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 100, path


def pooled_keys(results: Path):
    """The result keys of the fake run (every directory with a pooled.json)."""
    return sorted(p.parent.name for p in results.glob("*/pooled.json"))


def test_environment_names_the_commit(markdown):
    line = next(x for x in markdown.splitlines() if x.startswith("- espnet_asrser commit: "))
    assert len(line.split(": ", 1)[1].split()[0]) in (40, len("unknown"))


def test_stale_score_file_is_an_error(fake_run, tmp_path, capsys):
    path = fake_run["results"] / "audio" / "pooled.json"
    original = path.read_text()
    stale = json.loads(original)
    stale["wa"] += 0.01
    path.write_text(json.dumps(stale))
    try:
        assert make(fake_run, "--out", str(tmp_path / "R.md")) == 1
    finally:
        path.write_text(original)
    assert "one of them is stale" in capsys.readouterr().err


# ----------------------------------------------------------------------------- git state
def git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                   check=True, capture_output=True)


def test_git_state(tmp_path):
    repo = tmp_path / "repo"
    package, recipe, other = repo / "espnet_asrser", repo / "egs2" / "r", repo / "docs"
    for d in (package, recipe, other):
        d.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (recipe / "RESULTS.md").write_text("old\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "x")
    state = make_results.git_state(package, recipe, (recipe / "RESULTS.md",))
    assert len(state) == 40  # a bare commit: nothing differs
    (recipe / "RESULTS.md").write_text("new\n")  # the output itself does not count
    (other / "notes.txt").write_text("")  # untracked outside both folders: not named
    assert make_results.git_state(package, recipe, (recipe / "RESULTS.md",)) == state
    (recipe / "new.py").write_text("")
    (package / "__init__.py").write_text("x = 1\n")
    state = make_results.git_state(package, recipe, (recipe / "RESULTS.md",))
    assert state.endswith(
        " (with uncommitted changes to espnet_asrser/__init__.py; untracked files "
        "egs2/r/new.py)"
    )
    # A copy without .git.
    copy = tmp_path / "copy"
    shutil.copytree(package, copy / "espnet_asrser")
    assert make_results.git_state(copy / "espnet_asrser", copy).startswith("unknown")


@pytest.mark.parametrize(
    "subset, protocol, number",
    [("all", "speaker_independent", 1), ("improvised", "speaker_independent", 4),
     ("all", "speaker_dependent", 5)],
)
def test_each_setting_is_shown_beside_its_paper_table(fake_run, subset, protocol, number):
    from espnet_asrser.recipe.systems import paper_table

    paper = paper_table(subset, protocol)
    model = {"key": "a2w", "label": "A2W", "suffix": ""}
    table = make_results.results_table(fake_run["results"], FOLDS, [model], paper)
    assert table[0].startswith(f"## Table {number}: SER results")
    paper_columns = {r[0]: r[4:] for r in rows("\n".join(table))}
    for system in ("audio", "asrser"):
        wa, ua, wer = paper.row(system)
        expected = [make_results.paper_value(v) for v in (wa, ua, wer)]
        assert paper_columns[make_results.ROW_NAMES[system]] == expected
    # Table 4 gives only the ASR-SER row; the other rows have no paper numbers.
    if number == 4:
        assert paper_columns["Audio-based"] == ["–", "–", "–"]
    assert paper_table("improvised", "speaker_dependent") is None
