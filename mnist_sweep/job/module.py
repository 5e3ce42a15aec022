"""The LightningModule: the configured network, its loss, metrics and optimiser."""

from __future__ import annotations

import warnings
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from mnist_sweep.config import ModelConfig, OptimConfig, SchedulerConfig
from mnist_sweep.job.network import build_network, count_parameters
from mnist_sweep.job.schedules import build_optimizer, build_scheduler

BEST_VAL_ACC_KEY = "best_val_acc"


class CNNClassifier(pl.LightningModule):
    """Trains one network of the family; logs train/val/test loss and accuracy per epoch."""

    def __init__(self, model: ModelConfig, optim: OptimConfig, scheduler: SchedulerConfig) -> None:
        super().__init__()
        self.model_cfg, self.optim_cfg, self.scheduler_cfg = model, optim, scheduler
        self.net = build_network(model.head, model.separable, model.filters, model.dropout,
                                 model.transition_channels, dropout_masks=model.dropout_masks)
        self.num_parameters = count_parameters(self.net)
        if model.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # A plain attribute, not a submodule: checkpoints hold the weights once, under `net`.
        object.__setattr__(self, "_forward_fn", compile_or_eager(self.net) if model.compile
                           else self.net)
        # validate_args=False: the labels come from our own tensors (always 0..9), and the check
        # runs torch.unique on every batch, a host sync per step on a GPU.
        self.train_acc = MulticlassAccuracy(num_classes=10, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes=10, average="micro", validate_args=False)
        self.test_acc = MulticlassAccuracy(num_classes=10, average="micro", validate_args=False)
        # Best validation accuracy so far, kept in checkpoints by the hooks below. Not a buffer:
        # weight averaging (model.ema_decay) averages and swaps every buffer.
        self.best_val_acc = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.model_cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._forward_fn(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], smoothing: float = 0.0):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=smoothing)
        return loss, logits, y

    # Per step: one metric update and one self.log of a tensor, with the batch size given so
    # Lightning does not search the batch for it. Nothing here reads a value back to the host.
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, logits, y = self._step(batch, self.model_cfg.label_smoothing)
        self.train_acc.update(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        # Logged once per epoch instead of handing Lightning the Metric object every step
        # (which moves it to the device and re-checks it on each call): same value, same step.
        if self.train_acc.update_called:
            self.log("train/acc", self.train_acc.compute(), on_step=False, on_epoch=True)
        self.train_acc.reset()
        self._log_epoch_as_step(self.current_epoch + 1)

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.val_acc.update(logits, y)
        self.log("val/loss", loss, on_epoch=True, batch_size=len(y))
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True, batch_size=len(y))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        acc = self.val_acc.compute()
        self.best_val_acc = torch.maximum(self.best_val_acc.to(acc), acc.detach())
        self.log("val/acc_best", self.best_val_acc, on_epoch=True)
        self._log_epoch_as_step(self.current_epoch + 1)

    def _log_epoch_as_step(self, epoch: int) -> None:
        """A metric named `step` is the x value Lightning writes the others at (and then it
        adds no `epoch` scalar, logger_connector.log_metrics): every per-epoch series is
        logged at its epoch number, 1, 2, ..., so that runs with different batch or data
        sizes line up in TensorBoard, and a repeated epoch of a resumed run replaces its
        value instead of adding one."""
        self.log("step", float(epoch), on_step=False, on_epoch=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[BEST_VAL_ACC_KEY] = float(self.best_val_acc)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # checkpoints written before it left the state_dict hold it there
        legacy = checkpoint["state_dict"].pop(BEST_VAL_ACC_KEY, None)
        value = checkpoint.get(BEST_VAL_ACC_KEY, legacy)
        self.best_val_acc = torch.as_tensor(float(value if value is not None else 0.0))

    def on_test_epoch_start(self) -> None:
        self._test_predicted: list[torch.Tensor] = []

    def on_test_epoch_end(self) -> None:
        self._log_epoch_as_step(self.current_epoch)  # after fit: the epochs trained

    def test_step(self, batch, batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.test_acc.update(logits, y)
        # kept on the device, read back once at the end (test_predictions): no host sync
        self._test_predicted.append(logits.argmax(dim=1).to(torch.uint8))
        self.log("test/loss", loss, on_epoch=True, batch_size=len(y))
        self.log("test/acc", self.test_acc, on_epoch=True, batch_size=len(y))

    def test_predictions(self) -> torch.Tensor:
        """The predicted class of each image of the last test, in test-set order (uint8)."""
        predicted = getattr(self, "_test_predicted", [])
        return torch.cat(predicted).cpu() if predicted else torch.zeros(0, dtype=torch.uint8)

    def on_train_epoch_start(self) -> None:
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False,
                 on_epoch=True)

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.parameters(), self.optim_cfg)
        scheduler = build_scheduler(optimizer, self.scheduler_cfg, self.optim_cfg.lr,
                                    int(self.trainer.estimated_stepping_batches),
                                    self.trainer.max_epochs or 1)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def compile_or_eager(net: torch.nn.Module):
    """torch.compile, falling back to eager execution where compilation fails here."""
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True  # a failed compile runs the eager module
    try:
        return torch.compile(net)
    except Exception as exc:  # e.g. a platform torch.compile does not support
        warnings.warn(f"torch.compile is unavailable here ({type(exc).__name__}: {exc}); "
                      f"training without it.", stacklevel=2)
        return net
