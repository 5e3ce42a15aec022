"""Learning-rate schedules by name, each returning Lightning's scheduler dict."""

from __future__ import annotations

from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, OneCycleLR

from mnist_sweep.config import OptimConfig, SchedulerConfig

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def build_optimizer(params, cfg: OptimConfig) -> Optimizer:
    kwargs: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.name == "sgd":
        kwargs.update(momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return OPTIMIZERS[cfg.name](params, **kwargs)


def build_scheduler(optimizer: Optimizer, cfg: SchedulerConfig, base_lr: float,
                    total_steps: int, max_epochs: int) -> dict[str, Any] | None:
    """inverse_time steps per epoch (the seeds' Keras schedule); the others per batch.
    `cfg.name` is one of config.SCHEDULERS, checked with the rest of the config."""
    if cfg.name == "constant":
        return None
    if cfg.name == "inverse_time":
        decay = cfg.decay
        scheduler = LambdaLR(optimizer, lambda epoch: 1.0 / (1.0 + decay * epoch))
        return {"scheduler": scheduler, "interval": "epoch"}
    if cfg.name == "onecycle":
        max_lr = cfg.max_lr if cfg.max_lr is not None else 10 * base_lr
        scheduler = OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(total_steps, 1),
                               pct_start=cfg.pct_start, anneal_strategy="linear",
                               div_factor=max_lr / base_lr,  # starts at optim.lr
                               final_div_factor=100.0)
        return {"scheduler": scheduler, "interval": "step"}
    scheduler = CosineAnnealingLR(optimizer, T_max=max(total_steps, 1), eta_min=cfg.min_lr)
    return {"scheduler": scheduler, "interval": "step"}
