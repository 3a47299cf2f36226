"""The command-line contract of the training entry points, as an ESPnet user relies on it.

* ``--print_config`` writes only YAML to stdout, every key of which the parser takes back:
  in a fresh process (where ESPnet's import-time prints would land) for ``asrser_train`` and
  ``asr_train``, and through ``main(cmd)`` for every SER mode and every debug config;
* the printed config trains for one epoch when fed back with ``--config`` (tiny synthetic
  data of tests/conftest.py, the collect-stats-then-train sequence of tests/test_task.py);
* start-up and the first training steps print no NLTK download attempt and no
  ``torch.cuda.amp`` deprecation;
* every option of our own CLIs states its default (or that it is required) in ``--help``.

A fresh ESPnet process costs ~10 s here, so only three run; the rest runs in this one.
"""

import argparse
import contextlib
import io
import subprocess
import sys
from pathlib import Path
from typing import Dict, Sequence

import pytest
import yaml

from espnet_asrser.bin import asr_train, asrser_pack, asrser_score, asrser_train
from espnet_asrser.espnet_model import MODES
from espnet_asrser.tasks.asrser import ASRSERTask
from test_pretrained_asr import data_args as asr_data_args
from test_pretrained_asr import train_and_pack_asr
from test_task import CONFIG, data_args, train

REPO = Path(__file__).resolve().parents[1]
DEBUG_CONF = REPO / "egs2" / "iemocap_asrser" / "ser1" / "conf" / "debug"
A2W_CONFIG = DEBUG_CONF / "train_a2w.yaml"
# What must never reach stderr at start-up or in the first steps.
NOISE = ("[nltk_data]", "torch.cuda.amp", "FutureWarning", "DeprecationWarning")


def run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"espnet_asrser.bin.{module}", *args],
        capture_output=True, text=True, timeout=600,
    )


def printed(main, *args: str) -> str:
    """What ``main(["--print_config", *args])`` writes to stdout; it exits 0 like ESPnet."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as info:
        main(["--print_config", *args])
    assert info.value.code == 0
    return out.getvalue()


def only_yaml(stdout: str, parser: argparse.ArgumentParser) -> Dict:
    """``stdout`` as the config it holds, after checking that it holds nothing else: a
    stray line either breaks the YAML or becomes a key the parser does not know."""
    config = yaml.safe_load(stdout)
    assert isinstance(config, dict), stdout[:200]
    unknown = set(config) - {action.dest for action in parser._actions}
    assert not unknown, f"not options of {parser.prog}: {sorted(unknown)}"
    return config


def assert_quiet(stderr: str) -> None:
    noise = [line for line in stderr.splitlines() if any(n in line for n in NOISE)]
    assert not noise, "\n".join(noise)


# ----------------------------------------------------------------------------- fresh processes
def test_asrser_train_cli_prints_only_yaml_that_trains_quietly(tmp_path, tiny_data):
    """The whole user path: print, save, train in-process (statistics and one epoch), then
    one more epoch through the CLI itself, whose stderr holds no start-up noise."""
    result = run_cli("asrser_train", "--print_config", "--config", str(CONFIG))
    assert result.returncode == 0, result.stderr
    assert only_yaml(result.stdout, ASRSERTask.get_parser())["mode"] == "asrser"
    assert_quiet(result.stderr)
    # The notice ESPnet prints at import is kept, on stderr.
    assert "Flash Attention" not in result.stdout

    config = tmp_path / "printed.yaml"
    config.write_text(result.stdout)
    exp = train("asrser", tiny_data, tmp_path, config=config)
    assert (exp / "valid.acc_ser.best.pth").exists()

    stats = tmp_path / "stats"
    result = run_cli(
        "asrser_train", "--config", str(config), "--token_list", str(tiny_data["token_list"]),
        *data_args(tiny_data, "train"), *data_args(tiny_data, "valid"),
        "--normalize", "global_mvn",
        "--normalize_conf", f"stats_file={stats}/train/feats_stats.npz",
        "--train_shape_file", f"{stats}/train/speech_shape",
        "--valid_shape_file", f"{stats}/valid/speech_shape",
        "--output_dir", str(tmp_path / "exp_cli"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "exp_cli" / "1epoch.pth").exists()
    assert_quiet(result.stderr)


def test_asr_train_cli_prints_only_yaml_quietly():
    result = run_cli("asr_train", "--print_config", "--config", str(A2W_CONFIG))
    assert result.returncode == 0, result.stderr
    config = only_yaml(result.stdout, asr_train.get_parser())
    assert config["decoder"] == "a2w" and config["preencoder"] == "stack"
    assert_quiet(result.stderr)


# ----------------------------------------------------------------------------- main(cmd)
@pytest.mark.parametrize("mode", MODES)
def test_printed_config_of_every_mode_trains_when_fed_back(mode, tmp_path, tiny_data):
    text = printed(asrser_train.main, "--config", str(CONFIG), "--mode", mode)
    assert only_yaml(text, ASRSERTask.get_parser())["mode"] == mode
    config = tmp_path / "printed.yaml"
    config.write_text(text)
    exp = train(mode, tiny_data, tmp_path, config=config)
    assert (exp / "1epoch.pth").exists()
    assert yaml.safe_load((exp / "config.yaml").read_text())["mode"] == mode


@pytest.mark.parametrize(
    "config", sorted(DEBUG_CONF.rglob("train_*.yaml")), ids=lambda p: p.stem
)
def test_printed_debug_config_reads_back_unchanged(config, tmp_path):
    is_asr = config == A2W_CONFIG
    main = asr_train.main if is_asr else asrser_train.main
    parser = (asr_train if is_asr else asrser_train).get_parser()
    first = printed(main, "--config", str(config))
    only_yaml(first, parser)
    (tmp_path / "printed.yaml").write_text(first)
    assert printed(main, "--config", str(tmp_path / "printed.yaml")) == first


def test_printed_asr_config_trains_when_fed_back(tmp_path, tiny_data, monkeypatch):
    # Word tokens, as the recipe passes them (ESPnet's default is BPE).
    text = printed(asr_train.main, "--config", str(A2W_CONFIG), "--token_type", "word")
    config = tmp_path / "printed.yaml"
    config.write_text(text)
    monkeypatch.chdir(tmp_path)
    common = ["--config", str(config), "--token_list", str(tiny_data["token_list"]),
              *asr_data_args(tiny_data, "train", emotion=False),
              *asr_data_args(tiny_data, "valid", emotion=False)]
    shape = str(tiny_data["wav.scp"])
    train_and_pack_asr(common, shape, shape, [], str(tmp_path / "asr.zip"))
    assert (tmp_path / "exp" / "asr" / "1epoch.pth").exists()


def test_print_config_in_process_rejects_an_unknown_option():
    with pytest.raises(SystemExit) as info:
        asrser_train.main(["--print_config", "--no_such_option", "1"])
    assert info.value.code == 2


# ----------------------------------------------------------------------------- --help
def _undocumented(parser: argparse.ArgumentParser, actions: Sequence[argparse.Action]):
    formatter = parser._get_formatter()
    missing = []
    for action in actions:
        if isinstance(action, argparse._HelpAction):
            continue
        text = formatter._expand_help(action) if action.help else ""
        if "default" not in text and not (action.required and "required" in text):
            missing.append("/".join(action.option_strings))
    return missing


@pytest.mark.parametrize("module", [asrser_score, asrser_pack], ids=lambda m: m.__name__)
def test_every_option_of_our_clis_states_its_default(module):
    parser = module.get_parser()
    assert _undocumented(parser, parser._actions) == []


def test_every_option_of_the_task_states_its_default():
    parser = ASRSERTask.get_parser()
    (group,) = [g for g in parser._action_groups if g.description == "SER related"]
    assert {a.dest for a in group._group_actions} >= {"mode", "emotion_classes", "model_conf"}
    assert _undocumented(parser, group._group_actions) == []
