"""Lightning callbacks of a job: epoch timing and divergence."""

from __future__ import annotations

import math
import time

import pytorch_lightning as pl


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


class EpochTimer(pl.Callback):
    """Logs `time/epoch_seconds`: wall time of one training epoch including its validation."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.log("time/epoch_seconds", time.perf_counter() - self._start, on_epoch=True)


class DivergenceGuard(pl.Callback):
    """Stops a run whose epoch training loss is not finite (one check per epoch, no sync).

    It asks the trainer to stop rather than raising, so the diverged epoch's metrics still
    reach TensorBoard; the job runner then records the run as diverged.
    """

    def __init__(self) -> None:
        self.reason: str | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.reason = (f"training loss is {float(loss)} after epoch {trainer.current_epoch}"
                           f": lower optim.lr or change the schedule")
            trainer.should_stop = True
