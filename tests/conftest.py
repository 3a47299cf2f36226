"""Shared fixtures: a tiny synthetic ESPnet data set written the way the recipe writes one."""

import os
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import soundfile

# Two cores in CI: keep torch from oversubscribing them in every test process.
os.environ.setdefault("OMP_NUM_THREADS", "1")

WORDS = ["hello", "there", "good", "bad", "day", "night", "sad", "happy", "angry", "calm"]
EMOTIONS = ["ang", "hap", "neu", "sad"]


def write_tiny_data(root: Path, n_utts: int = 12, seed: int = 0) -> Dict[str, Path]:
    """Write wav.scp/text/emotion for ``n_utts`` random 0.3-0.8 s utterances and a
    word token list; return the paths."""
    rng = np.random.default_rng(seed)
    wav_dir = root / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    lines = {"wav.scp": [], "text": [], "emotion": []}
    for i in range(n_utts):
        utt = f"utt{i:03d}"
        wav = wav_dir / f"{utt}.wav"
        n = int(rng.integers(4800, 12800))
        soundfile.write(wav, (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
        words = rng.choice(WORDS, size=int(rng.integers(1, 5)))
        lines["wav.scp"].append(f"{utt} {wav}")
        lines["text"].append(f"{utt} {' '.join(words)}")
        lines["emotion"].append(f"{utt} {EMOTIONS[i % len(EMOTIONS)]}")
    paths = {}
    for name, content in lines.items():
        paths[name] = root / name
        paths[name].write_text("\n".join(content) + "\n", encoding="utf-8")
    paths["token_list"] = root / "tokens.txt"
    paths["token_list"].write_text(
        "\n".join(["<blank>", "<unk>", *WORDS, "<sos/eos>"]) + "\n", encoding="utf-8"
    )
    return paths


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Dict[str, Path]:
    return write_tiny_data(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def recipe(tmp_path_factory):
    """The whole recipe run once on the tiny corpora (tests/test_recipe.py), shared by the
    modules that check it or compare with it: defined here, not imported into each module,
    because pytest makes an imported fixture again for every module that imports it."""
    from test_recipe import run_whole_recipe

    return run_whole_recipe(tmp_path_factory)
