"""`model.ema_decay`: an exponential moving average of the weights, with a warm-up.

Lightning's WeightAveraging does the bookkeeping (validation and the final test use the
averaged weights, checkpoints keep both). Its EMA uses the full decay from the first step,
so after one epoch of MNIST (430 steps at 0.999) the average still weighs the first step's
weights 0.65 and validates near 10%: a search's pruner would stop every averaged trial at its
first rung. The decay here grows as min(decay, (1 + n) / (10 + n)) over the n updates so far
(TensorFlow's ExponentialMovingAverage with num_updates), so the average follows the training
early on and settles on the configured decay later.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import WeightAveraging
from torch.optim.swa_utils import AveragedModel


@torch.no_grad()
def update_average(average: AveragedModel, model: torch.nn.Module, decay: float) -> None:
    """One warm-up EMA step of `average` towards `model`, computed on the device.

    torch's AveragedModel.update_parameters reads its update count back to the host twice
    per call (`n_averaged == 0`, `n_averaged > 0`), and a foreach lerp with a tensor weight
    reads that weight: three waits for the GPU per optimizer step. Here the first update's
    copy is a lerp with weight 1 (exactly the model's values) and every weight stays a
    device tensor. BatchNorm's batch counters are copied, not averaged.
    """
    averaged = itertools.chain(average.module.parameters(), average.module.buffers())
    current = itertools.chain(model.parameters(), model.buffers())
    n = average.n_averaged
    copies: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
    weight = None
    for a, c in zip(averaged, current, strict=True):
        c = c.detach()
        if not a.is_floating_point():
            copies[0].append(a)
            copies[1].append(c)
            continue
        if weight is None:
            nf = n.to(a.dtype)
            weight = torch.where(n == 0, 1.0, 1.0 - torch.clamp((1.0 + nf) / (10.0 + nf),
                                                                max=decay))
        a.lerp_(c, weight.to(a.dtype))
    if copies[0]:
        torch._foreach_copy_(*copies)
    n += 1


class WarmupEMA(WeightAveraging):
    """Averages the weights and BatchNorm statistics after every optimizer step."""

    def __init__(self, decay: float) -> None:
        super().__init__(use_buffers=True)
        self.decay = decay

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        # WeightAveraging's own hook, with update_average in place of update_parameters
        if trainer.global_step > self._latest_update_step:
            assert self._average_model is not None
            update_average(self._average_model, pl_module, self.decay)
            self._latest_update_step = trainer.global_step
