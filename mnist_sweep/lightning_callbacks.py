"""Lightning callbacks of a job: epoch timing, divergence, interruption checkpoints."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


class EpochTimer(pl.Callback):
    """Logs `time/epoch_seconds`: wall time of one training epoch including its validation."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.log("time/epoch_seconds", time.perf_counter() - self._start, on_epoch=True)


class DivergenceGuard(pl.Callback):
    """Stops a run whose epoch training loss is not finite (one check per epoch, no sync)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise DivergedError(f"training loss is {float(loss)} after epoch "
                                f"{trainer.current_epoch}: lower optim.lr or change the "
                                f"schedule")


class InterruptCheckpoint(pl.Callback):
    """On Ctrl-C or SIGTERM, save `last.ckpt` so that a resumed sweep continues the job."""

    def __init__(self, checkpoint_path: Path) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.saved = False

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.checkpoint_path.with_name(self.checkpoint_path.name + ".tmp")
            trainer.save_checkpoint(tmp)
            tmp.replace(self.checkpoint_path)
            self.saved = True
