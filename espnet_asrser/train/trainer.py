"""ASRSERTrainer: ESPnet's Trainer with non-finite losses made visible and resumes checked.

ESPnet's ``Trainer`` already skips the optimizer step when the gradient norm is not finite,
but a batch whose loss is NaN or inf can still reach an update (a non-finite term that does
not depend on the parameters leaves the gradients finite), and the reporter leaves
non-finite values out of the epoch averages, so NaN batches vanish from the results. Here:

- a batch with a non-finite loss never updates the model: its gradients are made NaN, so
  ESPnet's own check skips the step (parameters, optimizer and scheduler states stay as
  they were; with ``--accum_grad n`` the whole accumulated step is skipped);
- every such batch is logged with its utterance ids, each epoch logs how many batches it
  lost, and the stat ``nonfinite`` (the share of the epoch's utterances that were in such
  batches, train and valid) appears in the results line and the reporter history;
- before training, :func:`espnet_asrser.train.checkpoint.prepare_output_dir` checks the
  output directory (unreadable checkpoint, missing epoch file, changed config) and a copy of
  each completed epoch's checkpoint is kept, see ``docs/reliability.md``;
- ``att_ws/`` shows the A2W decoder's attention (:mod:`espnet_asrser.train.attention_plot`)
  over the reference transcript, see :meth:`ASRSERTrainer.plot_attention`.

Only ``run``, ``train_one_epoch``, ``validate_one_epoch`` and ``plot_attention`` are
extended, each around a call to ESPnet's own method.
"""

import contextlib
import logging
from pathlib import Path
from typing import Iterator, List

import torch
from espnet2.train.trainer import Trainer

from espnet_asrser.espnet_model import ESPnetASRSERModel
from espnet_asrser.train.attention_plot import AttentionPlotMixin
from espnet_asrser.train.checkpoint import (
    CheckpointError,
    keep_previous_checkpoint,
    prepare_output_dir,
)

# Utterance ids per log line; a batch of long ids would otherwise flood the log.
_MAX_IDS_SHOWN = 20


def _show_ids(ids: List[str]) -> str:
    shown = ", ".join(ids[:_MAX_IDS_SHOWN])
    hidden = len(ids) - _MAX_IDS_SHOWN
    return shown + (f", ... ({hidden} more)" if hidden > 0 else "")


def _is_main_process(distributed_option) -> bool:
    return not distributed_option.distributed or distributed_option.dist_rank == 0


class NonFiniteLossGuard(torch.nn.Module):
    """Wraps the model that ESPnet's epoch loops call; watches each batch's loss.

    Adds the stat ``nonfinite`` (1.0 where the loss is NaN/inf, else 0.0) and, in training,
    replaces a non-finite loss by one whose gradient is NaN for every trainable parameter,
    so that ESPnet skips that optimizer step even when the original gradients were finite.
    The wrapped model is ``self.module``, the attribute ESPnet reads on DDP models.
    """

    def __init__(self, module: torch.nn.Module, phase: str, epoch: int):
        super().__init__()
        self.module = module
        self.phase = phase
        self.epoch = epoch
        self.n_batches = 0
        self.nonfinite_ids: List[List[str]] = []

    def forward(self, **batch):
        retval = self.module(**batch)
        if isinstance(retval, dict):
            loss, stats = retval["loss"], retval["stats"]
        else:
            loss, stats, weight = retval
        self.n_batches += 1
        flags = torch.isfinite(loss.detach()).logical_not().float()
        stats = dict(stats, nonfinite=flags)
        if flags.any():
            ids = [str(u) for u in batch.get("utt_id", [])]
            self.nonfinite_ids.append(ids)
            training = self.training and torch.is_grad_enabled()
            logging.warning(
                f"{self.epoch}epoch {self.phase}: loss is {loss.detach().tolist()} for the batch "
                f"of {len(ids)} utterances {_show_ids(ids)}: "
                + ("this batch does not update the model"
                   if training else "left out of the epoch averages")
            )
            if training:
                # One element of each trainable parameter, times NaN: every gradient gets a
                # NaN, so the grad norm is NaN and ESPnet's own check skips the step (and,
                # under AMP, its GradScaler bookkeeping stays ESPnet's).
                anchor = sum(
                    p.reshape(-1)[0] for p in self.module.parameters() if p.requires_grad
                )
                if isinstance(anchor, torch.Tensor):
                    loss = loss + anchor * float("nan")
        if isinstance(retval, dict):
            return dict(retval, loss=loss, stats=stats)
        return loss, stats, weight

    def log_summary(self) -> None:
        """One line per epoch and phase that lost batches to a non-finite loss."""
        if not self.nonfinite_ids:
            return
        ids = [u for batch in self.nonfinite_ids for u in batch]
        logging.warning(
            f"{self.epoch}epoch {self.phase}: {len(self.nonfinite_ids)} of {self.n_batches} "
            f"batches had a non-finite loss"
            + (" and did not update the model" if self.phase == "train" else "")
            + f" ({len(ids)} utterances: {_show_ids(ids)}); see 'nonfinite' in the results"
        )


@contextlib.contextmanager
def teacher_forced_features(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, ``model`` in eval mode reads the teacher-forced ASR features.

    Validation reads greedy-decoded features (``valid_asr_feature_source``): a greedy
    search, a teacher-forced pass over its hypothesis and one over the reference for
    L_ASR, whose attention weights an attention plot would stack into one picture. With
    teacher forcing there is one decoder pass, over the reference, as ESPnet's ASR models
    plot theirs. No random number is drawn either way (eval mode). Models without L_ASR
    (``asr_weight`` 0) are left as they are: their validation data need no transcript.
    """
    models = [
        m for m in model.modules() if isinstance(m, ESPnetASRSERModel) and m.asr_weight > 0
    ]
    sources = [m.valid_asr_feature_source for m in models]
    try:
        for m in models:
            m.valid_asr_feature_source = "teacher_forcing"
        yield
    finally:
        for m, source in zip(models, sources):
            m.valid_asr_feature_source = source


class ASRSERTrainer(AttentionPlotMixin, Trainer):
    """ESPnet's Trainer with checked resumes, visible non-finite losses and the A2W
    decoder's attention in ``att_ws/``.

    Use it as a task's ``trainer`` class attribute; every ESPnet option keeps its meaning.
    """

    @classmethod
    def run(
        cls,
        model,
        optimizers,
        schedulers,
        train_iter_factory,
        valid_iter_factory,
        plot_attention_iter_factory,
        trainer_options,
        distributed_option,
    ) -> None:
        """Check and repair the output directory (rank 0), then ESPnet's ``run``."""
        error = None
        if _is_main_process(distributed_option):
            try:
                prepare_output_dir(
                    Path(trainer_options.output_dir),
                    resume=trainer_options.resume,
                    best_model_criterion=trainer_options.best_model_criterion,
                )
            except CheckpointError as e:
                error = e
        if distributed_option.distributed:
            # The other ranks must neither read checkpoint.pth before rank 0 has repaired
            # it nor wait forever for a rank 0 that refused: share the outcome.
            failed = torch.tensor(int(error is not None))
            failed = failed.to("cuda" if trainer_options.ngpu > 0 else "cpu")
            torch.distributed.all_reduce(failed)
            if failed.item() and error is None:
                raise CheckpointError("rank 0 refused to train in this output_dir: see its log")
        if error is not None:
            raise error
        super().run(
            model=model,
            optimizers=optimizers,
            schedulers=schedulers,
            train_iter_factory=train_iter_factory,
            valid_iter_factory=valid_iter_factory,
            plot_attention_iter_factory=plot_attention_iter_factory,
            trainer_options=trainer_options,
            distributed_option=distributed_option,
        )

    @classmethod
    def train_one_epoch(
        cls,
        model,
        iterator,
        optimizers,
        schedulers,
        scaler,
        reporter,
        summary_writer,
        options,
        distributed_option,
    ) -> bool:
        """ESPnet's epoch, with the model guarded and the last checkpoint kept."""
        epoch = reporter.get_epoch()
        if epoch >= 2 and _is_main_process(distributed_option):
            # checkpoint.pth now holds epoch - 1 of this run (trained or resumed here), and
            # ESPnet will overwrite it in place at the end of this epoch.
            keep_previous_checkpoint(Path(options.output_dir))
        guard = NonFiniteLossGuard(model, "train", epoch)
        all_steps_are_invalid = super().train_one_epoch(
            model=guard,
            iterator=iterator,
            optimizers=optimizers,
            schedulers=schedulers,
            scaler=scaler,
            reporter=reporter,
            summary_writer=summary_writer,
            options=options,
            distributed_option=distributed_option,
        )
        guard.log_summary()
        return all_steps_are_invalid

    @classmethod
    def validate_one_epoch(cls, model, iterator, reporter, options, distributed_option) -> None:
        """ESPnet's validation, with non-finite losses counted and logged."""
        guard = NonFiniteLossGuard(model, "valid", reporter.get_epoch())
        super().validate_one_epoch(
            model=guard,
            iterator=iterator,
            reporter=reporter,
            options=options,
            distributed_option=distributed_option,
        )
        guard.log_summary()

    @classmethod
    def plot_attention(cls, model, output_dir, summary_writer, iterator, reporter, options):
        """ESPnet's attention plots (with ours), of the teacher-forced decoder pass."""
        with teacher_forced_features(model):
            super().plot_attention(
                model=model,
                output_dir=output_dir,
                summary_writer=summary_writer,
                iterator=iterator,
                reporter=reporter,
                options=options,
            )
