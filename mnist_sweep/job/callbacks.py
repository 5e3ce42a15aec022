"""Lightning callbacks of a job: epoch timing, progress in status.json, divergence."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from mnist_sweep.job.status import RUNNING, read_status_or_none, write_status


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


class EpochCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint that tells the ProgressRecorder when its file is in
    place. Lightning calls checkpoint callbacks after all others at an epoch's end, so the
    recorder alone would write status.json before the checkpoint of the same epoch exists."""

    def __init__(self, recorder: ProgressRecorder, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recorder = recorder

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's key, so checkpoints of either class resume with the other
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self.recorder.checkpoint_saved()


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
