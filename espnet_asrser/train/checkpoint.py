"""Checks and repairs of an ESPnet experiment directory before training resumes in it.

ESPnet's ``Trainer.run`` writes, at the end of epoch ``k``, ``checkpoint.pth`` (model,
optimizers, schedulers, AMP scaler, reporter) and then ``<k>epoch.pth`` (model only), both
with a plain ``torch.save`` into their final names, and ``AbsTask.main_worker`` overwrites
``config.yaml`` with the new arguments before training starts. With ``--resume true`` it
loads ``checkpoint.pth`` if the file exists and otherwise starts from epoch 1. So:

- a process killed while ``checkpoint.pth`` is written leaves a truncated file, the only copy
  of the optimizer and scheduler state;
- a process killed between the two saves leaves a checkpoint of epoch ``k`` without
  ``<k>epoch.pth``, which model averaging at the end of training needs;
- a missing ``checkpoint.pth`` beside epoch files silently restarts training from scratch;
- a rerun with other model settings in the same directory either fails deep inside
  ``load_state_dict`` (other sizes) or resumes the old weights under the new settings (same
  sizes), and in both cases ``config.yaml`` no longer describes the checkpoint.

:func:`prepare_output_dir` runs before ``Trainer.run`` (see
:class:`espnet_asrser.train.trainer.ASRSERTrainer`) and turns each of these into either a
logged, exact repair or an error that says what is missing and what to do. It relies on two
files of ours next to ESPnet's:

- ``checkpoint.prev.pth``: a complete copy of the previous epoch's ``checkpoint.pth``,
  refreshed when each epoch starts, i.e. once the previous save has returned;
- ``checkpoint_config.yaml``: the config of the run that wrote ``checkpoint.pth``, so that a
  rerun can be compared with it although ``config.yaml`` has already been overwritten.
"""

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import yaml
from espnet2.train.reporter import Reporter

CHECKPOINT = "checkpoint.pth"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pth"
REPLACED_CHECKPOINT = "checkpoint.replaced.pth"
CORRUPT_CHECKPOINT = "checkpoint.corrupt.pth"
CONFIG = "config.yaml"
CONFIG_RECORD = "checkpoint_config.yaml"
DISCARDED_SUFFIX = ".discarded"

# Settings that define the model, its parameter shapes or the meaning of its outputs and
# loss: a checkpoint trained under other values is another experiment. Resuming under
# changed values is refused (normalize_conf included: GlobalMVN keeps its statistics as
# buffers, so the checkpoint would silently override a new stats_file).
MODEL_KEYS = frozenset({
    "model", "model_conf", "asr_model_conf", "mode", "emotion_classes", "input_size",
    "frontend", "frontend_conf", "normalize", "normalize_conf",
    "preencoder", "preencoder_conf", "encoder", "encoder_conf",
    "postencoder", "postencoder_conf", "decoder", "decoder_conf",
    "ctc_conf", "joint_net_conf", "token_list", "token_type", "bpemodel",
})
# The saved optimizer and scheduler states only load into objects of the same class.
_STATE_CLASS_KEY = re.compile(r"^(optim|scheduler)\d*$")
# Resuming restores these from checkpoint.pth (load_state_dict of the optimizer restores
# its param_groups, lr included): a new value has no effect on a resumed run.
_RESTORED_KEY = re.compile(r"^(optim|scheduler)\d*_conf(\.|$)")
_EPOCH_FILE = re.compile(r"^(\d+)epoch\.pth$")
_REQUIRED_STATES = ("model", "reporter", "optimizers", "schedulers")


class CheckpointError(RuntimeError):
    """Training cannot resume from what the output directory holds."""


class ConfigChangeError(CheckpointError):
    """A resumed run would train under other model settings than its checkpoint."""


class ConfigChange(NamedTuple):
    key: str  # dotted, e.g. "model_conf.ser_hidden_size"
    old: object
    new: object


_MISSING = "<unset>"


# ----------------------------------------------------------------------------- files


def _fsync_dir(directory: Path) -> None:
    # Makes a rename durable across a power loss; some file systems refuse, which only
    # weakens that guarantee, never the atomicity of the rename itself.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replace_atomically(tmp: Path, dst: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dst)
    _fsync_dir(dst.parent)


def _tmp_name(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.tmp{os.getpid()}")


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` so that ``dst`` is at every moment absent, old or complete."""
    tmp = _tmp_name(dst)
    try:
        shutil.copyfile(src, tmp)
        _replace_atomically(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_torch_save(obj, dst: Path) -> None:
    """``torch.save`` that never leaves a partial ``dst`` behind."""
    tmp = _tmp_name(dst)
    try:
        torch.save(obj, tmp)
        _replace_atomically(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _relink(link: Path, target: str) -> None:
    """Point the relative symlink ``link`` at ``target`` (as ESPnet does), atomically."""
    if link.is_symlink() and os.readlink(link) == target:
        return
    tmp = _tmp_name(link)
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def epoch_files(output_dir: Path) -> Dict[int, Path]:
    """``{epoch: path}`` of the ``<n>epoch.pth`` files in ``output_dir``."""
    found = {}
    if output_dir.is_dir():
        for path in output_dir.iterdir():
            match = _EPOCH_FILE.match(path.name)
            if match and path.is_file():
                found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def load_checkpoint(path: Path) -> dict:
    """Load an ESPnet ``checkpoint.pth`` on CPU and check that it can resume a run.

    Raises :class:`CheckpointError` naming the file and the reason (truncated or otherwise
    unreadable, or missing one of the states that ``Trainer.resume`` restores).
    """
    try:
        # weights_only=False: this is the experiment's own checkpoint.pth, written by
        # ESPnet's Trainer in this output_dir (never a file a user passes; those go through
        # espnet_asrser.utils.weights_file). Its reporter state holds datetime.timedelta
        # and numpy scalars, which weights_only=True refuses, and ESPnet's Trainer.resume
        # loads the same file with weights_only=False right after this check anyway.
        states = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises RuntimeError, EOFError, pickle errors, ...
        # torch's own text goes on for lines; its first sentence names the problem
        reason = str(e).strip().split(". ")[0].splitlines()[0]
        raise CheckpointError(
            f"{path} cannot be read ({type(e).__name__}: {reason}); it is probably truncated"
        ) from e
    if not isinstance(states, dict) or any(k not in states for k in _REQUIRED_STATES):
        have = sorted(states) if isinstance(states, dict) else type(states).__name__
        raise CheckpointError(
            f"{path} is not a resumable ESPnet checkpoint: it needs {list(_REQUIRED_STATES)}, "
            f"it has {have}"
        )
    epoch = states["reporter"].get("epoch") if isinstance(states["reporter"], dict) else None
    if not isinstance(epoch, int) or epoch < 1:
        raise CheckpointError(f"{path} records no completed epoch (reporter epoch {epoch!r})")
    return states


def checkpoint_epoch(states: dict) -> int:
    """The last completed epoch recorded in a loaded checkpoint."""
    return states["reporter"]["epoch"]


# ---------------------------------------------------------------------------- config


def read_config(path: Path) -> Optional[dict]:
    """The YAML mapping in ``path``, or None when there is none to read."""
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as f:
        config = yaml.safe_load(f)
    return config if isinstance(config, dict) else None


def _flatten(config: dict, prefix: str = "") -> Dict[str, object]:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_changes(old: dict, new: dict) -> List[ConfigChange]:
    """Every setting (nested ``*_conf`` keys by dotted name) whose value differs."""
    old_flat, new_flat = _flatten(old), _flatten(new)
    return [
        ConfigChange(key, old_flat.get(key, _MISSING), new_flat.get(key, _MISSING))
        for key in sorted(set(old_flat) | set(new_flat))
        if old_flat.get(key, _MISSING) != new_flat.get(key, _MISSING)
    ]


def is_model_key(key: str) -> bool:
    """Whether a change of ``key`` makes a checkpoint unfit to resume (see MODEL_KEYS)."""
    top = key.split(".", 1)[0]
    return top in MODEL_KEYS or bool(_STATE_CLASS_KEY.match(top))


def _show(value: object) -> str:
    if isinstance(value, list) and len(value) > 6:
        # token_list: its length and ends say enough; the whole list would flood the log
        return f"[{len(value)} entries: {value[0]!r}, {value[1]!r}, ..., {value[-1]!r}]"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def describe_changes(changes: Sequence[ConfigChange]) -> str:
    """One line per change: ``key: old -> new``."""
    return "\n".join(f"  {c.key}: {_show(c.old)} -> {_show(c.new)}" for c in changes)


# ------------------------------------------------------------------------- the repair


def _find_resumable(output_dir: Path) -> Optional[Tuple[Path, dict]]:
    """The checkpoint to resume from and its states; None when there is nothing to resume.

    ``checkpoint.pth`` if readable, else the previous epoch's copy (logged), else
    :class:`CheckpointError`: epoch files without a readable checkpoint never mean "start
    again", since that would silently overwrite a trained model.
    """
    checkpoint = output_dir / CHECKPOINT
    previous = output_dir / PREVIOUS_CHECKPOINT
    if checkpoint.exists():
        try:
            return checkpoint, load_checkpoint(checkpoint)
        except CheckpointError as e:
            problem = str(e)
    elif previous.exists() or epoch_files(output_dir):
        problem = f"{checkpoint} is missing"
    else:
        return None  # a first run: ESPnet's --resume true starts from epoch 1

    if previous.exists():
        try:
            states = load_checkpoint(previous)
        except CheckpointError as e:
            problem += f"; the copy of the epoch before is unreadable too: {e}"
        else:
            epoch = checkpoint_epoch(states)
            logging.warning(
                f"{problem}. Resuming from {previous} instead, the complete checkpoint at the "
                f"end of epoch {epoch} (model, optimizer, scheduler and reporter states): "
                f"training goes on from epoch {epoch + 1}, and any later epoch is trained "
                f"again."
            )
            return previous, states

    found = epoch_files(output_dir)
    weights = ", ".join(p.name for p in found.values()) or "none"
    latest = f"{output_dir / list(found.values())[-1].name}" if found else "<n>epoch.pth"
    raise CheckpointError(
        f"Cannot resume training in {output_dir}: {problem}, and there is no readable "
        f"{PREVIOUS_CHECKPOINT} to fall back to. Model weights found: {weights}. These hold "
        f"no optimizer, scheduler or reporter state (best-model history), so continuing "
        f"from them would not be a resumed run, and is not done silently. Either start a "
        f"new experiment from those weights with a fresh optimizer: a new --output_dir and "
        f"--init_param {latest}; or train again from scratch here with --resume false "
        f"(this directory's files are then replaced)."
    )


def _repair_epoch_files(output_dir: Path, states: dict, best_model_criterion) -> None:
    """Make the epoch files agree with the checkpoint of epoch ``k`` being resumed.

    ``<k>epoch.pth`` is rewritten from the checkpoint's model when it is missing or
    unreadable (a kill between or during ESPnet's two saves). Files of epochs after ``k``
    (left by a run whose checkpoint was lost, or by an older, longer run) are renamed
    ``*.discarded``, since epoch ``k + 1`` is trained again. ``latest.pth`` and the
    ``*.best.pth`` links are pointed at files of epochs <= k, as the reporter of the
    checkpoint ranks them.
    """
    epoch = checkpoint_epoch(states)
    for e, path in epoch_files(output_dir).items():
        if e > epoch:
            os.replace(path, path.with_name(path.name + DISCARDED_SUFFIX))
            logging.warning(
                f"{path.name} is newer than the checkpoint being resumed (epoch {epoch}): "
                f"renamed {path.name}{DISCARDED_SUFFIX}; epoch {e} will be trained again"
            )
    current = output_dir / f"{epoch}epoch.pth"
    problem = None if current.exists() else "was missing"
    if problem is None:
        # ESPnet writes it in place right after checkpoint.pth: a kill during that save
        # leaves it truncated. Earlier epoch files were complete before later epochs ran.
        try:
            torch.load(current, map_location="cpu", weights_only=True)
        except Exception:
            problem = "could not be read"
    if problem is not None:
        atomic_torch_save(states["model"], current)
        logging.warning(
            f"{current.name} {problem} (the run was stopped after saving {CHECKPOINT}, before "
            f"{current.name} was complete): written again from the model state in the checkpoint"
        )
    _relink(output_dir / "latest.pth", current.name)

    reporter = Reporter()
    reporter.load_state_dict(states["reporter"])
    for phase, key, mode in best_model_criterion:
        link = output_dir / f"{phase}.{key}.best.pth"
        if not reporter.has(phase, key):
            continue
        target = f"{reporter.get_best_epoch(phase, key, mode)}epoch.pth"
        if (output_dir / target).exists():
            _relink(link, target)
        elif link.is_symlink() and not link.exists():
            link.unlink()  # dangling; ESPnet links it again when a new best epoch ends


def prepare_output_dir(
    output_dir: Path, resume: bool, best_model_criterion: Sequence[Sequence[str]] = ()
) -> Optional[int]:
    """Check ``output_dir`` before ESPnet's ``Trainer.run`` trains in it; repair what can be
    repaired exactly; return the epoch training resumes after (None: from epoch 1).

    Called after ``AbsTask.main_worker`` wrote the new ``config.yaml``. Compares it with
    the config of the run that wrote ``checkpoint.pth`` and logs every difference. When
    resuming:

    - a changed model setting (:func:`is_model_key`) raises :class:`ConfigChangeError`
      naming the keys, and ``config.yaml`` is restored to the checkpoint's config;
    - an unreadable or missing ``checkpoint.pth`` falls back to ``checkpoint.prev.pth``
      (logged; the bad file is kept as ``checkpoint.corrupt.pth``) or raises
      :class:`CheckpointError` saying what is missing and what to do;
    - the epoch files and links are made consistent with the checkpoint.

    Without ``--resume`` in a directory that holds a previous run, the previous
    ``checkpoint.pth`` is moved to ``checkpoint.replaced.pth``, so that a run killed in its
    first epoch cannot later resume the old run's state under the new config.
    """
    output_dir = Path(output_dir)
    config_path, record = output_dir / CONFIG, output_dir / CONFIG_RECORD
    new, old = read_config(config_path), read_config(record)
    changes = config_changes(old, new) if old is not None and new is not None else []
    checkpoint = output_dir / CHECKPOINT

    found = _find_resumable(output_dir) if resume else None
    resumed_epoch = None
    if found is not None:
        source, states = found
        resumed_epoch = checkpoint_epoch(states)
        refused = [c for c in changes if is_model_key(c.key)]
        if refused:
            # Keep the directory self-consistent: config.yaml describes its checkpoint.
            atomic_copy(record, config_path)
            raise ConfigChangeError(
                f"Refusing to resume {output_dir} (checkpoint of epoch {resumed_epoch}): these "
                f"model settings differ from the run that wrote it ({record.name}):\n"
                f"{describe_changes(refused)}\n"
                f"Its weights were trained under the old values. Give a new --output_dir for "
                f"the new settings (or rerun with the old ones to resume). {config_path.name} "
                f"was restored to the old config."
            )
        if changes:
            restored = [c.key for c in changes if _RESTORED_KEY.match(c.key)]
            note = (
                f"\n  ({', '.join(restored)}: the optimizer and scheduler states, learning "
                f"rate included, come from the checkpoint, so these new values have no effect "
                f"on the resumed run)" if restored else ""
            )
            logging.warning(
                f"Resuming {output_dir} after epoch {resumed_epoch} with a changed config; "
                f"differences from the run that wrote the checkpoint:\n"
                f"{describe_changes(changes)}{note}"
            )
        elif old is None:
            logging.warning(
                f"{output_dir} has no {CONFIG_RECORD} (written by an older run or another "
                f"trainer): config changes since the checkpoint cannot be checked"
            )
        if source != checkpoint:
            if checkpoint.exists():
                os.replace(checkpoint, output_dir / CORRUPT_CHECKPOINT)
                logging.warning(f"The unreadable {CHECKPOINT} was kept as {CORRUPT_CHECKPOINT}")
            atomic_copy(source, checkpoint)  # ESPnet's resume reads checkpoint.pth
        _repair_epoch_files(output_dir, states, best_model_criterion)
        del states
    else:
        previous_run = [p.name for p in (checkpoint,) if p.exists()]
        previous_run += [p.name for p in epoch_files(output_dir).values()]
        if previous_run:
            logging.warning(
                f"Starting from epoch 1 in {output_dir}, which holds a previous run "
                f"({', '.join(previous_run)}): its files are replaced as this run proceeds"
                + (f"; config differences from that run:\n{describe_changes(changes)}"
                   if changes else "")
            )
        if checkpoint.exists():
            os.replace(checkpoint, output_dir / REPLACED_CHECKPOINT)
            logging.warning(f"The previous run's {CHECKPOINT} was moved to {REPLACED_CHECKPOINT}")
        (output_dir / PREVIOUS_CHECKPOINT).unlink(missing_ok=True)

    if new is not None:
        atomic_copy(config_path, record)
    return resumed_epoch


def keep_previous_checkpoint(output_dir: Path) -> None:
    """Copy ``checkpoint.pth`` to ``checkpoint.prev.pth`` (atomically).

    Called when an epoch after the first starts: ESPnet's save of the last epoch's
    checkpoint has returned, so the copy is complete, and it survives the next save being
    cut short (ESPnet writes ``checkpoint.pth`` in place).
    """
    checkpoint = Path(output_dir) / CHECKPOINT
    if checkpoint.exists():
        atomic_copy(checkpoint, checkpoint.with_name(PREVIOUS_CHECKPOINT))
