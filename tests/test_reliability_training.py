"""Training faults and their handling by ASRSERTrainer (docs/reliability.md):

- a batch with a NaN/inf loss never updates the model, and each epoch says how many it lost;
- a run killed mid-epoch, or between ESPnet's two end-of-epoch saves, resumes with the same
  command from the last completed epoch, with no epoch file missing or trained twice;
- a truncated or missing checkpoint.pth falls back to the previous epoch's complete copy or
  stops with a message saying what to do, never a silent restart from scratch;
- a rerun with changed settings in the same output_dir logs the differences and refuses to
  resume under changed model settings.

Tasks and models with test hooks are subclasses defined here; the production classes have
no hooks. Runs are tiny (12 utterances, 3 batches per epoch).
"""

import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from espnet_asrser.espnet_model import ESPnetASRSERModel
from espnet_asrser.tasks.asrser import ASRSERTask
from espnet_asrser.train.checkpoint import (
    CheckpointError,
    ConfigChangeError,
    config_changes,
    is_model_key,
)
from espnet_asrser.train.trainer import ASRSERTrainer

CONFIG = Path(__file__).parent / "configs" / "tiny_asrser.yaml"
REPO = Path(__file__).resolve().parents[1]


class ReliableTask(ASRSERTask):
    """ASRSERTask with ASRSERTrainer, as espnet_asrser.tasks.asrser sets it."""

    trainer = ASRSERTrainer


# The test hook of the non-finite-loss tests: utterances whose batch gets a bad loss.
NONFINITE = {"utts": frozenset(), "value": float("nan")}


class NonFiniteLossModel(ESPnetASRSERModel):
    def forward(self, *args, utt_id=None, **kwargs):
        loss, stats, weight = super().forward(*args, **kwargs)
        if NONFINITE["utts"] & set(utt_id or ()):
            # A term without a path to the parameters: the gradients stay finite, so only a
            # check of the loss itself keeps this batch from updating the model.
            loss = loss + NONFINITE["value"]
            stats = dict(stats, loss=loss.detach())
        return loss, stats, weight


class NonFiniteTask(ReliableTask):
    @classmethod
    def build_model(cls, args):
        model = super().build_model(args)
        model.__class__ = NonFiniteLossModel  # same parameters, hooked forward
        return model


def data_args(d):
    args = []
    for split in ("train", "valid"):
        args += [f"--{split}_data_path_and_name_and_type={d['wav.scp']},speech,sound",
                 f"--{split}_data_path_and_name_and_type={d['emotion']},emotion,text",
                 f"--{split}_data_path_and_name_and_type={d['text']},text,text"]
    return args


@pytest.fixture(scope="module")
def stats(tmp_path_factory, tiny_data):
    out = tmp_path_factory.mktemp("reliability_stats")
    ASRSERTask.main(cmd=[
        "--config", str(CONFIG), "--mode", "asrser", "--token_list", str(tiny_data["token_list"]),
        *data_args(tiny_data), "--collect_stats", "true", "--normalize", "none",
        "--output_dir", str(out), "--train_shape_file", str(tiny_data["wav.scp"]),
        "--valid_shape_file", str(tiny_data["wav.scp"]),
    ])
    return out


def train_cmd(d, stats, out, *extra):
    """A training command line as the recipe writes it (--resume true), plus ``extra``."""
    return [
        "--config", str(CONFIG), "--mode", "asrser", "--token_list", str(d["token_list"]),
        *data_args(d), "--normalize", "global_mvn",
        "--normalize_conf", f"stats_file={stats}/train/feats_stats.npz",
        "--train_shape_file", f"{stats}/train/speech_shape",
        "--valid_shape_file", f"{stats}/valid/speech_shape",
        "--keep_nbest_models", "3", "--resume", "true", "--output_dir", str(out), *extra,
    ]


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory, tiny_data, stats):
    """A finished 2-epoch run; tests work on copies of it."""
    out = tmp_path_factory.mktemp("two_epochs") / "exp"
    ReliableTask.main(cmd=train_cmd(tiny_data, stats, out, "--max_epoch", "2"))
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same(a, b, where="state"):
    """Exact equality of nested state dicts / lists of tensors."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def adam_steps(states: dict) -> set:
    return {int(s["step"]) for s in states["optimizers"][0]["state"].values()}


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def epochs_on_disk(out: Path) -> list:
    return sorted(int(p.name[: -len("epoch.pth")]) for p in out.glob("*epoch.pth"))


# --------------------------------------------------------------- row 7: non-finite loss


def test_nonfinite_loss_batch_is_skipped_logged_and_counted(
    tiny_data, stats, tmp_path, caplog, monkeypatch
):
    monkeypatch.setitem(NONFINITE, "utts", frozenset({"utt005"}))
    caplog.set_level(logging.INFO)
    out = tmp_path / "exp"
    NonFiniteTask.main(cmd=train_cmd(tiny_data, stats, out))

    states = load(out / "checkpoint.pth")
    assert adam_steps(states) == {2}  # 3 batches, the one with utt005 made no step
    epoch = states["reporter"]["stats"][1]
    assert 0 < epoch["train"]["nonfinite"] < 1  # the share of utterances in skipped batches
    assert epoch["valid"]["nonfinite"] > 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("utt005" in m and "does not update the model" in m for m in warnings)
    assert any("1epoch train: 1 of 3 batches had a non-finite loss" in m for m in warnings)
    results = [m for m in caplog.messages if "1epoch results" in m]
    assert len(results) == 1 and "nonfinite=" in results[0]


def test_all_nonfinite_epoch_leaves_parameters_and_adam_state_unchanged(
    tiny_data, stats, two_epochs, tmp_path, monkeypatch
):
    out = copy_run(two_epochs, tmp_path / "exp")
    before = load(out / "checkpoint.pth")
    monkeypatch.setitem(NONFINITE, "utts", frozenset(f"utt{i:03d}" for i in range(12)))
    monkeypatch.setitem(NONFINITE, "value", float("inf"))
    NonFiniteTask.main(cmd=train_cmd(tiny_data, stats, out, "--max_epoch", "3"))

    after = load(out / "checkpoint.pth")
    assert after["reporter"]["epoch"] == 3
    assert_same(before["model"], after["model"], "model")
    assert_same(before["optimizers"], after["optimizers"], "optimizers")
    assert after["reporter"]["stats"][3]["train"]["nonfinite"] == 1.0


# ----------------------------------------------------------------- row 8: killed runs

KILL_SCRIPT = """
    import os, signal, sys
    from pathlib import Path

    import torch

    from espnet_asrser.tasks.asrser import ASRSERTask
    from espnet_asrser.train.trainer import ASRSERTrainer

    OUT = Path(sys.argv[sys.argv.index("--output_dir") + 1])
    MARKER = OUT.parent / "killed_once"  # the first run kills itself, the rerun does not


    def kill_after(iterator, n_batches):
        for i, batch in enumerate(iterator):
            if i == n_batches:
                MARKER.touch()
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch


    class KilledOnceTrainer(ASRSERTrainer):
        started = False

        @classmethod
        def train_one_epoch(cls, **kwargs):
            epoch = kwargs["reporter"].get_epoch()
            if MARKER.exists() and not cls.started:
                # What the rerun starts its first epoch with, after resuming.
                torch.save({"epoch": epoch,
                            "optimizer": kwargs["optimizers"][0].state_dict(),
                            "scheduler": kwargs["schedulers"][0].state_dict()},
                           OUT.parent / "resumed_start.pt")
            cls.started = True
            if epoch == 2 and not MARKER.exists():
                kwargs["iterator"] = kill_after(kwargs["iterator"], 2)
            return super().train_one_epoch(**kwargs)


    class Task(ASRSERTask):
        trainer = KilledOnceTrainer


    Task.main(cmd=sys.argv[1:])
"""


def test_sigkill_mid_epoch_then_same_command_resumes(tiny_data, stats, tmp_path):
    script = tmp_path / "train_killed_once.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    out = tmp_path / "exp"
    command = [sys.executable, str(script), *train_cmd(
        tiny_data, stats, out, "--max_epoch", "3",
        "--scheduler", "steplr", "--scheduler_conf", "step_size=1", "--scheduler_conf", "gamma=0.5",
    )]
    env = dict(os.environ, OMP_NUM_THREADS="1")

    first = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert epochs_on_disk(out) == [1]
    after_epoch1 = load(out / "checkpoint.pth")
    assert after_epoch1["reporter"]["epoch"] == 1

    second = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert second.returncode == 0, second.stderr[-3000:]
    log = second.stderr
    assert "The training was resumed using" in log and "2/3epoch started" in log
    assert "1epoch results" not in log
    assert log.count("2epoch results") == 1 and log.count("3epoch results") == 1

    resumed = load(tmp_path / "resumed_start.pt")
    assert resumed["epoch"] == 2
    assert_same(resumed["optimizer"], after_epoch1["optimizers"][0], "optimizer")
    assert_same(resumed["scheduler"], after_epoch1["schedulers"][0], "scheduler")
    assert resumed["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0005)

    final = load(out / "checkpoint.pth")
    assert sorted(final["reporter"]["stats"]) == [1, 2, 3]
    assert adam_steps(final) == {9}  # 3 epochs of 3 steps: the killed epoch counts once
    assert epochs_on_disk(out) == [1, 2, 3]
    assert load(out / "checkpoint.prev.pth")["reporter"]["epoch"] == 2


class Killed(BaseException):
    """Stands for SIGKILL in-process: ESPnet's run has no cleanup that it would skip."""


@pytest.mark.parametrize("when", ["before", "during"])
def test_kill_at_the_epoch_file_save_is_repaired(
    when, tiny_data, stats, tmp_path, monkeypatch, caplog
):
    out = tmp_path / "exp"
    command = train_cmd(tiny_data, stats, out, "--max_epoch", "3")
    real_save = torch.save

    def save_then_die(obj, f, *args, **kwargs):
        if Path(str(f)).name == "2epoch.pth":  # checkpoint.pth of epoch 2 is already saved
            if when == "during":
                real_save(obj, f, *args, **kwargs)
                truncate(Path(f))
            raise Killed
        return real_save(obj, f, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(torch, "save", save_then_die)
        with pytest.raises(Killed):
            ReliableTask.main(cmd=command)
    assert load(out / "checkpoint.pth")["reporter"]["epoch"] == 2
    assert (out / "2epoch.pth").exists() == (when == "during")
    epoch2 = load(out / "checkpoint.pth")["model"]

    caplog.set_level(logging.INFO)
    ReliableTask.main(cmd=command)
    problem = "was missing" if when == "before" else "could not be read"
    assert any(f"2epoch.pth {problem}" in m for m in caplog.messages)
    assert "3/3epoch started" in caplog.messages
    assert epochs_on_disk(out) == [1, 2, 3]
    assert_same(load(out / "2epoch.pth"), epoch2, "2epoch.pth")
    assert (out / "valid.acc_ser.ave.pth").exists()


# ------------------------------------------------------------ row 9: truncated checkpoint


def test_truncated_checkpoint_falls_back_to_previous_epoch(
    tiny_data, stats, two_epochs, tmp_path, caplog
):
    out = copy_run(two_epochs, tmp_path / "exp")
    truncate(out / "checkpoint.pth")
    caplog.set_level(logging.INFO)
    ReliableTask.main(cmd=train_cmd(tiny_data, stats, out, "--max_epoch", "3"))

    assert any("checkpoint.pth cannot be read" in m and "Resuming from" in m
               and "end of epoch 1" in m for m in caplog.messages)
    assert "2/3epoch started" in caplog.messages
    assert (out / "checkpoint.corrupt.pth").exists() and (out / "2epoch.pth.discarded").exists()
    final = load(out / "checkpoint.pth")
    assert sorted(final["reporter"]["stats"]) == [1, 2, 3]
    assert adam_steps(final) == {9}
    assert epochs_on_disk(out) == [1, 2, 3]


def test_truncated_checkpoint_without_fallback_stops_with_advice(
    tiny_data, stats, two_epochs, tmp_path
):
    out = copy_run(two_epochs, tmp_path / "exp")
    truncate(out / "checkpoint.pth")
    (out / "checkpoint.prev.pth").unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match=r"(?s)checkpoint.pth cannot be read.*--init_param"):
        ReliableTask.main(cmd=train_cmd(tiny_data, stats, out, "--max_epoch", "3"))
    assert epochs_on_disk(out) == [1, 2]  # nothing was trained or overwritten


def test_missing_checkpoint_beside_epoch_files_is_no_fresh_start(
    tiny_data, stats, two_epochs, tmp_path
):
    out = copy_run(two_epochs, tmp_path / "exp")
    (out / "checkpoint.pth").unlink()
    (out / "checkpoint.prev.pth").unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match=r"checkpoint.pth is missing.*1epoch.pth, 2epoch.pth"):
        ReliableTask.main(cmd=train_cmd(tiny_data, stats, out, "--max_epoch", "3"))
    assert epochs_on_disk(out) == [1, 2]


# ------------------------------------------------------------------ row 10: changed config


@pytest.mark.parametrize("setting", ["ser_hidden_size=16", "asr_weight=0.5"])
def test_resume_refused_when_model_settings_changed(
    setting, tiny_data, stats, two_epochs, tmp_path
):
    out = copy_run(two_epochs, tmp_path / "exp")
    key = setting.split("=")[0]
    with pytest.raises(ConfigChangeError, match=rf"model_conf\.{key}: .* -> "):
        ReliableTask.main(cmd=train_cmd(tiny_data, stats, out, "--max_epoch", "3",
                                        "--model_conf", setting))
    config = yaml.safe_load((out / "config.yaml").read_text())
    # config.yaml still describes the checkpoint, not the refused settings
    assert config == yaml.safe_load((out / "checkpoint_config.yaml").read_text())
    assert config["model_conf"] == yaml.safe_load(CONFIG.read_text())["model_conf"]
    assert epochs_on_disk(out) == [1, 2]


def test_resume_with_changed_training_settings_logs_the_diff(
    tiny_data, stats, two_epochs, tmp_path, caplog
):
    out = copy_run(two_epochs, tmp_path / "exp")
    caplog.set_level(logging.INFO)
    ReliableTask.main(cmd=train_cmd(tiny_data, stats, out, "--max_epoch", "3",
                                    "--optim_conf", "lr=0.002"))
    changed = [m for m in caplog.messages if "with a changed config" in m]
    assert len(changed) == 1
    assert "optim_conf.lr: 0.001 -> 0.002" in changed[0] and "max_epoch: 2 -> 3" in changed[0]
    assert "have no effect" in changed[0]  # the optimizer's lr comes from checkpoint.pth
    assert epochs_on_disk(out) == [1, 2, 3]
    record = yaml.safe_load((out / "checkpoint_config.yaml").read_text())
    assert record["optim_conf"]["lr"] == 0.002


def test_fresh_start_in_used_dir_is_announced(tiny_data, stats, two_epochs, tmp_path, caplog):
    out = copy_run(two_epochs, tmp_path / "exp")
    caplog.set_level(logging.INFO)
    ReliableTask.main(cmd=[*train_cmd(tiny_data, stats, out, "--max_epoch", "1",
                                      "--model_conf", "ser_hidden_size=16"), "--resume", "false"])
    announced = [m for m in caplog.messages if "holds a previous run" in m]
    assert len(announced) == 1 and "model_conf.ser_hidden_size: 8 -> 16" in announced[0]
    assert (out / "checkpoint.replaced.pth").exists()
    assert load(out / "checkpoint.pth")["reporter"]["epoch"] == 1


def test_config_diff_classifies_keys():
    old = {"model_conf": {"ser_hidden_size": 8}, "optim_conf": {"lr": 1e-3}, "batch_size": 4,
           "token_list": ["<blank>", "a", "b"]}
    new = {"model_conf": {"ser_hidden_size": 8}, "optim_conf": {"lr": 2e-3}, "batch_size": 4,
           "token_list": ["<blank>", "b", "a"]}
    changes = {c.key: c for c in config_changes(old, new)}
    assert set(changes) == {"optim_conf.lr", "token_list"}
    assert is_model_key("token_list") and is_model_key("encoder_conf.hidden_size")
    assert is_model_key("optim") and not is_model_key("optim_conf.lr")
    assert not is_model_key("max_epoch") and not is_model_key("batch_size")
