"""Lightning callbacks of a job: epoch timing, progress in status.json, divergence."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from mnist_sweep.job.signals import raise_if_requested
from mnist_sweep.record.status import RUNNING, read_status_or_none, write_status


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


class EpochTimer(pl.Callback):
    """Logs `time/epoch_seconds`: wall time of one training epoch including its validation."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.log("time/epoch_seconds", time.perf_counter() - self._start, on_epoch=True)


class ProgressRecorder(pl.Callback):
    """Writes the job's progress into status.json after every epoch.

    The live view of a sweep and a resumed job's message read it from there, so progress
    is visible across processes (joblib workers, submitit jobs, other hosts).
    """

    def __init__(self, job_dir: Path, after_checkpoint: bool = False) -> None:
        self.job_dir = job_dir
        self.epoch_seconds: list[float] = []
        # With a checkpoint per epoch, an epoch's progress is written once its checkpoint is
        # in place (EpochCheckpoint): a process killed in between leaves status.json one
        # epoch behind last.ckpt, never ahead of it, so a resume never skips an epoch.
        self.after_checkpoint = after_checkpoint
        self._pending: dict[str, Any] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a resumed job keeps the times of the epochs it had already trained
        previous = read_status_or_none(self.job_dir) or {}
        self.epoch_seconds = list(previous.get("epoch_seconds") or [])[:trainer.current_epoch]
        write_status(self.job_dir, RUNNING, epoch=trainer.current_epoch,
                     max_epochs=trainer.max_epochs, epoch_seconds=self.epoch_seconds)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._start)
        metrics = trainer.callback_metrics

        def value(key: str) -> float | None:
            return float(metrics[key]) if key in metrics else None

        progress = dict(epoch=trainer.current_epoch + 1, max_epochs=trainer.max_epochs,
                        val_acc=value("val/acc"), val_acc_best=value("val/acc_best"),
                        train_loss=value("train/loss"), epoch_seconds=list(self.epoch_seconds))
        if self.after_checkpoint:
            self._pending = progress
        else:
            write_status(self.job_dir, RUNNING, **progress)

    def checkpoint_saved(self) -> None:
        """The epoch's checkpoint is in place: its progress may be recorded now."""
        if self._pending is not None:
            write_status(self.job_dir, RUNNING, **self._pending)
            self._pending = None


class EpochLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger that writes an epoch's scalars only once the epoch is
    in place, as status.json counts it: with a checkpoint per epoch, once its checkpoint is
    (EpochCheckpoint commits it).

    Lightning logs an epoch's validation scalars before it writes the epoch's checkpoint.
    A job that failed in between (a full disk) or was killed there left that epoch's points
    in TensorBoard while its record said one epoch less, and the resumed job trained the
    epoch again and wrote a second point at the same step. Held here until the commit,
    they are written once, for an epoch the record counts; a job that ends before the
    commit writes none of them. Scalars of epochs already in place (the training scalars
    Lightning logs after the checkpoint, the test's) go straight through.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.committed: int | None = None  # epochs in place; None: nothing is held
        self._held: list[tuple[dict[str, float], int]] = []

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.committed is not None and step is not None and step > self.committed:
            self._held.append((dict(metrics), step))
            return
        super().log_metrics(metrics, step)

    def hold_after(self, epochs: int) -> None:
        """Hold the scalars of the epochs after `epochs` (those trained so far) until
        commit()."""
        self.committed = epochs

    def commit(self, epochs: int) -> None:
        """`epochs` are in place: write their held scalars."""
        self.committed = epochs
        held, self._held = self._held, []
        for metrics, step in held:
            self.log_metrics(metrics, step)


class EpochCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint that tells the ProgressRecorder, and the EpochLogger,
    when its file is in place. Lightning calls checkpoint callbacks after all others at an
    epoch's end, so the recorder alone would write status.json before the checkpoint of the
    same epoch exists."""

    def __init__(self, recorder: ProgressRecorder, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recorder = recorder

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if isinstance(trainer.logger, EpochLogger):  # epochs a resumed job already holds
            trainer.logger.hold_after(trainer.current_epoch)

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's key, so checkpoints of either class resume with the other
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self.recorder.checkpoint_saved()
        if isinstance(trainer.logger, EpochLogger):
            trainer.logger.commit(trainer.current_epoch + 1)


class DivergenceGuard(pl.Callback):
    """Stops a run that blew up: a training loss that is not finite or above `max_loss`, or
    a validation loss that is not finite (one check per epoch, no sync per step).

    It asks the trainer to stop rather than raising, so the diverged epoch's metrics still
    reach TensorBoard; the job runner then records the run as diverged.
    """

    def __init__(self, max_loss: float) -> None:
        self.max_loss = max_loss
        self.reason: str | None = None

    def _stop(self, trainer: pl.Trainer, reason: str) -> None:
        if self.reason is None:
            self.reason = f"{reason} after epoch {trainer.current_epoch + 1}: lower optim.lr " \
                          f"or change the schedule"
        trainer.should_stop = True

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val/loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._stop(trainer, f"validation loss is {float(loss)}")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        if loss is None:
            return
        value = float(loss)
        if not math.isfinite(value):
            self._stop(trainer, f"training loss is {value}")
        elif value > self.max_loss:
            self._stop(trainer, f"training loss is {value:.4g}, above trainer.divergence_loss="
                                f"{self.max_loss:g}")


class StopBetweenBatches(pl.Callback):
    """Raises a Ctrl-C / SIGTERM that came during a batch at that batch's end (job/signals.py
    says why never inside it)."""

    def on_train_batch_end(self, *args: Any) -> None:
        raise_if_requested()

    def on_validation_batch_end(self, *args: Any) -> None:
        raise_if_requested()

    def on_test_batch_end(self, *args: Any) -> None:
        raise_if_requested()
