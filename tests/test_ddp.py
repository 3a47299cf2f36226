"""Distributed data-parallel training through ESPnet's own trainer, on CPU.

ESPnet runs DDP without GPUs: with ``--ngpu 0`` and ``--dist_world_size 2`` each process
is one "node" of one process (``espnet2/train/distributed_utils.py:
resolve_distributed_mode``), joined by ``torch.distributed`` over ``--dist_backend gloo``;
the trainer wraps the model in ``DistributedDataParallel`` on CPU and the iterator gives
each rank its share of every mini-batch (``batch[rank::world_size]``,
``AbsTask.build_sequence_iter_factory``). This is the multi-node launch that
``--dist_launcher slurm`` automates, here with both ranks on localhost; ESPnet's one-command
launch on one machine (``--multiprocessing_distributed true`` spawning one process per GPU)
needs ``--ngpu`` > 1 (``AbsTask.main`` asserts it) and is not run here.

The test runs one epoch of ASR-SER (``tests/configs/tiny_asrser.yaml``) on two ranks,
each ``ASRSERTask.main`` with a trainer that also saves, on every rank, the utterances it
trained on and its final weights; ESPnet's own checkpoint comes from rank 0 as usual.
"""

import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from test_task import CONFIG, data_args

from espnet_asrser.tasks.asrser import ASRSERTask

REPO = Path(__file__).resolve().parents[1]
WORLD_SIZE = 2

RANK_SCRIPT = """
import sys
from pathlib import Path

import torch

import espnet_asrser.bin.asrser_train  # noqa: F401  (the CLI's quiet start-up)
from espnet_asrser.tasks.asrser import ASRSERTask
from espnet_asrser.train.trainer import ASRSERTrainer


class RecordingTrainer(ASRSERTrainer):
    \"\"\"ASRSERTrainer that saves, on every rank, the utterance ids of each training step
    and the weights before and after training in output_dir/rank<r>.pt.\"\"\"

    steps = []

    @classmethod
    def run(cls, model, trainer_options, distributed_option, **kwargs):
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        super().run(model=model, trainer_options=trainer_options,
                    distributed_option=distributed_option, **kwargs)
        torch.save({"rank": distributed_option.dist_rank,
                    "world_size": torch.distributed.get_world_size(),
                    "steps": cls.steps, "initial": initial, "final": model.state_dict()},
                   Path(trainer_options.output_dir) / f"rank{distributed_option.dist_rank}.pt")

    @classmethod
    def train_one_epoch(cls, **kwargs):
        def recorded(iterator):
            for utt_id, batch in iterator:
                cls.steps.append(list(utt_id))
                yield utt_id, batch

        kwargs["iterator"] = recorded(kwargs["iterator"])
        return super().train_one_epoch(**kwargs)


class Task(ASRSERTask):
    trainer = RecordingTrainer


Task.main(cmd=sys.argv[1:])
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ranks(commands, logs, timeout=600):
    """Start every rank, wait for all; a failed rank stops the others, which would
    otherwise wait for it in the next collective until gloo's 30-minute timeout."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT,
                              env=env, cwd=REPO) for cmd, log in zip(commands, logs)]
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.returncode not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [p.returncode for p in procs]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, tiny_data):
    """collect_stats in this process, then one epoch of asrser mode on two gloo ranks."""
    root = tmp_path_factory.mktemp("ddp")
    d = tiny_data
    common = ["--config", str(CONFIG), "--mode", "asrser", "--token_list", str(d["token_list"]),
              *data_args(d, "train"), *data_args(d, "valid")]
    stats = root / "stats"
    ASRSERTask.main(cmd=[*common, "--collect_stats", "true", "--normalize", "none",
                         "--output_dir", str(stats),
                         "--train_shape_file", str(d["wav.scp"]),
                         "--valid_shape_file", str(d["wav.scp"])])
    script = root / "train_rank.py"
    script.write_text(textwrap.dedent(RANK_SCRIPT))
    exp = root / "exp"
    train = [*common, "--output_dir", str(exp),
             "--normalize", "global_mvn",
             "--normalize_conf", f"stats_file={stats}/train/feats_stats.npz",
             "--train_shape_file", f"{stats}/train/speech_shape",
             "--valid_shape_file", f"{stats}/valid/speech_shape",
             "--ngpu", "0", "--dist_backend", "gloo", "--multiprocessing_distributed", "true",
             "--dist_world_size", str(WORLD_SIZE), "--dist_master_addr", "127.0.0.1",
             "--dist_master_port", str(free_port())]
    commands = [[sys.executable, str(script), *train, "--dist_rank", str(r)]
                for r in range(WORLD_SIZE)]
    logs = [root / f"rank{r}.log" for r in range(WORLD_SIZE)]
    codes = run_ranks(commands, logs)
    for r, (code, log) in enumerate(zip(codes, logs)):
        assert code == 0, f"rank {r} exited with {code}:\n" + log.read_text()[-4000:]
    return exp, [log.read_text() for log in logs], [
        torch.load(exp / f"rank{r}.pt", map_location="cpu") for r in range(WORLD_SIZE)]


def test_ddp_ranks_share_each_batch(ddp_run, tiny_data):
    exp, (log0, _), ranks = ddp_run
    # ESPnet's rank 0 logs as [host:0/2]; ranks > 0 log errors only.
    assert re.search(rf"^\[\S+:0/{WORLD_SIZE}\] ", log0, re.M), log0[-3000:]
    assert "1epoch results" in log0
    assert [r["world_size"] for r in ranks] == [WORLD_SIZE] * WORLD_SIZE
    # Each of the 3 mini-batches of 4 is split 2 + 2: the same number of steps on every
    # rank, disjoint utterances, all 12 trained once.
    steps = [r["steps"] for r in ranks]
    assert [len(s) for s in steps] == [3, 3]
    assert all(len(batch) == 2 for s in steps for batch in s)
    seen = [{u for batch in s for u in batch} for s in steps]
    assert not seen[0] & seen[1]
    utts = {line.split()[0] for line in Path(tiny_data["wav.scp"]).read_text().splitlines()}
    assert seen[0] | seen[1] == utts
    # One optimizer step per shared mini-batch, not one per rank's shard.
    checkpoint = torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert {int(s["step"]) for s in checkpoint["optimizers"][0]["state"].values()} == {3}


def test_ddp_ranks_end_with_the_same_weights(ddp_run):
    exp, _, (rank0, rank1) = ddp_run
    final0, final1 = rank0["final"], rank1["final"]
    assert final0.keys() == final1.keys()
    # The ranks trained on different utterances: equal weights mean the gradients were
    # averaged across them at every step.
    different = [k for k in final0 if not torch.equal(final0[k], final1[k])]
    assert not different, f"rank 0 and rank 1 differ in {different[:10]}"
    # What ESPnet saved (rank 0) is that model, and training changed it.
    saved = torch.load(exp / "1epoch.pth", map_location="cpu")
    assert all(torch.equal(saved[k], final1[k]) for k in final1)
    assert any(k.startswith("asr.decoder.") for k in saved)
    changed = [k for k in final1 if not torch.equal(final1[k], rank1["initial"][k])]
    assert any(k.startswith("classifier.") for k in changed)
    assert any(k.startswith("asr.decoder.") for k in changed)
