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

import torch
from pytorch_lightning.callbacks import WeightAveraging
from torch import Tensor


def warmup_ema_update(decay: float):
    """AveragedModel's multi_avg_fn: one in-place update of a group of tensors, no host sync."""

    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        if not averaged[0].is_floating_point():  # BatchNorm's batch counters: keep the latest
            torch._foreach_copy_(averaged, current)
            return
        n = num_averaged.to(averaged[0].dtype)
        weight = 1.0 - torch.clamp((1.0 + n) / (10.0 + n), max=decay)
        torch._foreach_lerp_(averaged, current, weight)

    return update


class WarmupEMA(WeightAveraging):
    """Averages the weights and BatchNorm statistics after every optimizer step."""

    def __init__(self, decay: float) -> None:
        super().__init__(use_buffers=True, multi_avg_fn=warmup_ema_update(decay))
