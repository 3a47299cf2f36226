"""Interrupt anywhere, resume to the same result: the whole recipe, killed and run again.

``./run.sh --stage 1 --stop-stage 12`` runs on a fresh copy of the recipe with the same
tiny corpora and options as the uninterrupted run of tests/test_recipe.py (the ``recipe``
fixture of tests/conftest.py). Its whole process group is killed with SIGKILL, a crash, at
four points, each in the rerun after the previous kill:

* stage 3, while a feature dump job writes its ark;
* stage 7, while decoding jobs decode;
* stage 9, while two SER trainings run side by side (``--train_jobs 2``), both in their
  epoch;
* stage 11, while a fold's evaluation runs its second system.

A kill point is a state seen in the logs (the stage's start line, the jobs it started and
a line of each job's own log that shows it working), then a fixed delay; there is nothing
random. After each kill the killed run's processes must be gone and none may hold
``.run.lock``; then ``./run.sh`` runs again with the same arguments. The last rerun goes to
the end. Checked afterwards:

* its RESULTS.md equals that of the uninterrupted run, line by line, but for the line that
  says when it was written;
* no partial file survives (``partial_files`` says exactly what is looked for).

About as long as the uninterrupted run plus a minute per rerun: 10 minutes on two shared
cores (measured), the uninterrupted run (9 minutes) not counted: it is shared with
tests/test_recipe.py when both run in one session.
"""

import os
import re
import signal
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional

import pytest

from test_recipe import RESULTS, RUN_ARGS, RUN_TIMEOUT, copy_recipe, run_recipe

ARGS = ("--stage", "1", "--stop-stage", "12", *RUN_ARGS)
TOPS = ("data", "dump", "exp")


def log_shows(pattern: str) -> Callable[[Path, str], bool]:
    """The job is working once its log has a line matching ``pattern``."""
    return lambda work, job_log: bool(
        re.search(pattern, (work / job_log).read_text(encoding="utf-8", errors="replace"), re.M)
    )


def job_process(work: Path, job_log: str, script: str) -> Optional[int]:
    """The pid of the live ``script`` process (run in ``work``) that writes to ``job_log``:
    run_cmd writes the job's command line as the first line of its log."""
    try:
        command = (work / job_log).read_text(encoding="utf-8").splitlines()[0][2:]
    except (OSError, IndexError):
        return None
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            if (proc.name.isdigit() and script in cmdline and cmdline.endswith(command)
                    and os.readlink(proc / "cwd") == str(work.resolve())):
                return int(proc.name)
        except OSError:
            continue
    return None


STEP = 0.005  # seconds a frozen dump job runs between two looks


def dump_writing(work: Path, job_log: str) -> bool:
    """A dump job has features in its temporary ark (dump/fbank/<set>/split<nj>/.ark.<job>.tmp,
    renamed when the job ends). Its window is a fraction of a second, shorter than a poll of
    the main log, so the job is frozen (SIGSTOP) and run in steps of STEP until it writes,
    then left frozen for the kill: a kill mid-write, whatever the machine's speed. False
    once the job has ended without being caught (it cannot: its utterances take longer than
    a step) or if it is not running yet."""
    out, job = Path(job_log).parent.parent, job_log.rsplit(".", 2)[-2]
    pid = job_process(work, job_log, "dump_feats.py compute")
    if pid is None:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            os.kill(pid, signal.SIGSTOP)
            while stat.read_text().rsplit(")", 1)[1].split()[0] not in "TZ":
                time.sleep(0.001)  # SIGSTOP takes effect asynchronously
            if any(p.stat().st_size > 0 for p in (work / out).glob(f"split*/.ark.{job}.tmp")):
                return True
            os.kill(pid, signal.SIGCONT)
            time.sleep(STEP)
    except (ProcessLookupError, FileNotFoundError):
        pass  # the job ended (or its ark was renamed as it did)
    return False


class KillPoint(NamedTuple):
    stage: int
    jobs: int  # jobs of the stage that must be running and working, then
    working: Callable[[Path, str], bool]  # (recipe dir, the job's log) -> it works
    delay: float  # seconds from then to the kill


KILL_POINTS = (
    KillPoint(3, 1, dump_writing, 0.0),  # frozen mid-write: no delay needed
    # ESPnet builds the model from its config (then decodes, quietly: 2-5 s on 2 cores).
    KillPoint(7, 1, log_shows(r"INFO: config file: "), 0.5),
    KillPoint(9, 2, log_shows(r"1/\d+epoch started"), 2.0),  # ESPnet's trainer
    KillPoint(11, 1, log_shows(r"^# \[2/\d+\] "), 1.0),  # evaluate.py, a fold's second system
)
# Hang guards, not speed tests (a killed or resumed run is no slower than a whole one).
ORPHAN_WAIT = 30  # seconds for the killed processes to be gone; SIGKILL takes milliseconds
STAGE_LINE = re.compile(r"Stage (\d+): ")
STARTED = re.compile(r"^(\S+) .*: started, follow it in (\S+)$", re.M)
DONE = re.compile(r": (?:done|job failed, see) \(?(\S+?)\)?:?$", re.M)


def running_jobs(log: str) -> Dict[str, str]:
    """Job log -> start time, for the jobs the main log shows started and not ended."""
    started = {path: when for when, path in STARTED.findall(log)}
    for path in DONE.findall(log):
        started.pop(path, None)
    return started


def describe(log: str, elapsed: float) -> str:
    stages = STAGE_LINE.findall(log)
    jobs = running_jobs(log)
    return (
        f"after {elapsed:.0f} s it was in stage {stages[-1] if stages else '(none yet)'}, "
        f"running {', '.join(f'{p} (since {t})' for p, t in jobs.items()) or 'no job'}; "
        f"end of its log:\n{log[-3000:]}"
    )


def group_members(pgid: int) -> List[str]:
    """The live processes (zombies hold nothing) of process group ``pgid``."""
    members = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(f"pid {proc.name} ({fields[0]}): {cmdline.strip()}")
    return members


def lock_holders(lock: Path) -> List[str]:
    """Processes (of this user) with ``lock`` open: whoever keeps the recipe locked."""
    holders = []
    for proc in Path("/proc").iterdir():
        try:
            fds = list((proc / "fd").iterdir()) if proc.name.isdigit() else []
            if any(os.readlink(fd) == str(lock.resolve()) for fd in fds):
                holders.append(f"pid {proc.name}: {(proc / 'cmdline').read_bytes()!r}")
        except OSError:
            continue
    return holders


def run_and_kill(work: Path, env: Dict[str, str], point: KillPoint, log_path: Path) -> str:
    """Start run.sh in a process group of its own, SIGKILL the group at ``point``, wait
    until every process of it is gone and check that nothing holds the lock; its log."""
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as f:
        proc = subprocess.Popen(["./run.sh", *ARGS], cwd=work, env=env, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            log = log_path.read_text(encoding="utf-8")
            if proc.poll() is not None:
                hint = (" (an orphan of the killed run held the lock)"
                        if "another run (pid" in log else "")
                pytest.fail(f"the run ended (status {proc.returncode}){hint} before the kill "
                            f"point in stage {point.stage}; {describe(log, time.monotonic() - start)}")
            if time.monotonic() - start > RUN_TIMEOUT:
                pytest.fail(f"no kill point in stage {point.stage} within {RUN_TIMEOUT} s "
                            f"(hang guard); {describe(log, time.monotonic() - start)}")
            stages = STAGE_LINE.findall(log)
            if stages and int(stages[-1]) > point.stage:
                pytest.fail(f"stage {point.stage} ended before its kill point: its jobs were "
                            f"faster than the point expects; {describe(log, time.monotonic() - start)}")
            in_stage = bool(stages) and int(stages[-1]) == point.stage
            working = [job for job in running_jobs(log) if in_stage and point.working(work, job)]
            if len(working) >= point.jobs:
                break
            time.sleep(0.2)
        time.sleep(point.delay)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log = log_path.read_text(encoding="utf-8")
    assert f"Stage {point.stage} finished" not in log
    assert len(running_jobs(log)) >= point.jobs, f"the kill came after the jobs ended:\n{log[-2000:]}"
    deadline = time.monotonic() + ORPHAN_WAIT
    while group_members(proc.pid):
        assert time.monotonic() < deadline, (
            f"{ORPHAN_WAIT} s after SIGKILL of the group of run.sh (pid {proc.pid}), some "
            f"of it still runs: {group_members(proc.pid)}"
        )
        time.sleep(0.1)
    holders = lock_holders(work / ".run.lock")
    assert not holders, f"after the killed run's group is gone, .run.lock is held by {holders}"
    return log


TMP_NAME = re.compile(r"\.tmp\d*$")


def is_log(rel: Path) -> bool:
    """A log: a killed job leaves its own, and tensorboard names its event files by the
    time and pid of the process that wrote them."""
    return ".log" in rel.name or "log" in rel.parts or "tensorboard" in rel.parts


def step(done: Path) -> List[str]:
    """A ``.done`` fingerprint without its MD5 sums: the step's command line and the files it
    read. The sums differ between any two recipe directories: an ASR-SER training's
    config.yaml holds the absolute path of the ASR statistics, and the timing plots
    (images/*_time.png) and RESULTS.md's date that later steps read differ from run to run."""
    return [line.split("  ", 1)[-1] for line in done.read_text(encoding="utf-8").splitlines()]


def partial_files(work: Path, reference: Path) -> List[str]:
    """What a run cut short could leave, and a complete run must not, under data/, dump/,
    exp/:

    * a file or directory named like a temporary one: ``*.tmp`` (dump jobs' ``.ark.N.tmp``,
      ``.scp.N.tmp``, ``.nf.N.tmp``; merge's ``.tables.tmp`` directory) or ``*.tmp<pid>``
      (the trainer's ``.<file>.tmp<pid>`` of atomic saves);
    * a ``.pth`` file that is not a complete zip archive (torch's format; a truncated one
      has no central directory or fails its CRCs), or a ``.pth`` link to nothing;
    * a packed model (``exp/packed/*.zip``) that is not a complete zip archive;
    * a step's output directory without its ``.done``, or whose ``.done`` is of another
      step (``step``) than in the uninterrupted run (``reference``): every directory that
      holds a ``.done`` there;
    * a directory or file the uninterrupted run does not have (a decoding or evaluation
      abandoned half way), logs aside (``is_log``).
    """
    found = []
    ours = {p.relative_to(work) for top in TOPS for p in (work / top).rglob("*")}
    theirs = {p.relative_to(reference) for top in TOPS for p in (reference / top).rglob("*")}
    for rel in sorted(ours):
        path = work / rel
        if TMP_NAME.search(rel.name):
            found.append(f"{rel}: a temporary name")
        elif rel.suffix == ".pth" and not path.exists():
            found.append(f"{rel}: a link to nothing")
        elif rel.suffix in (".pth", ".zip") and not path.is_symlink():
            try:
                with zipfile.ZipFile(path) as archive:
                    bad = archive.testzip()
            except (zipfile.BadZipFile, OSError) as e:
                bad = repr(e)
            if bad:
                found.append(f"{rel}: not a complete zip archive ({bad})")
        if rel not in theirs and not is_log(rel):
            found.append(f"{rel}: not made by the uninterrupted run")
    for rel in sorted(p for p in theirs if p.name == ".done"):
        # The reference directory may also hold other settings' runs (test_recipe.py
        # runs them there), so only directories this run made too are compared.
        if rel.parent in ours:
            if rel not in ours:
                found.append(f"{rel.parent}: no .done")
            elif step(work / rel) != step(reference / rel):
                found.append(f"{rel}: another step than the uninterrupted run's")
    return found


# The only line of RESULTS.md that may differ: when it was written. Everything else (the
# numbers, the setup with the corpus path, the data counts, the environment and the code's
# git state) is the same for two runs of the same command on the same corpora, machine and
# checkout. (Measured: two such runs differ in that line only.)
WHEN = re.compile(r"^- Generated on \S+$")


def test_killed_anywhere_then_run_again_gives_the_same_results(recipe, tmp_path):
    # The same corpora, not a second copy generated alike: their path is in data/*/wav.scp,
    # hence in the fingerprints (.done) of dumping, which partial_files compares, and in
    # RESULTS.md ("- Corpus: `<path>`, 89 utterances: ...").
    reference, env, _ = recipe
    work = copy_recipe(tmp_path)
    for i, point in enumerate(KILL_POINTS, start=1):
        run_and_kill(work, env, point, tmp_path / f"killed{i}.log")
    rc, log = run_recipe(work, env, *ARGS, log=tmp_path / "last.log")
    assert rc == 0, log[-4000:]
    assert "another run (pid" not in log

    ours = (work / RESULTS / "RESULTS.md").read_text(encoding="utf-8").splitlines()
    theirs = (reference / RESULTS / "RESULTS.md").read_text(encoding="utf-8").splitlines()
    assert len(ours) == len(theirs)
    differ = [
        f"line {n}:\n  killed and resumed: {a}\n  uninterrupted:      {b}"
        for n, (a, b) in enumerate(zip(ours, theirs), start=1)
        if a != b and not (WHEN.match(a) and WHEN.match(b))
    ]
    assert not differ, "\n".join(differ)
    assert partial_files(work, reference) == []
