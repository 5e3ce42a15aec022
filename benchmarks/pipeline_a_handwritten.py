#!/usr/bin/env python
"""(a) The pipeline one writes by hand, the baseline mnist_sweep has to beat.

torchvision.datasets.MNIST with ToTensor() + Normalize (a PIL image per sample),
DataLoader(num_workers=2) for train and val, a plain LightningModule and a plain pl.Trainer
(no checkpointing, no progress bar) with the same network, optimiser and schedule. No memory
layout, thread or OpenMP settings: what a user gets without thinking about them.

    python benchmarks/pipeline_a_handwritten.py --data-root ../shared/datasets --epochs 1
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import time
from pathlib import Path
from typing import Any

from common import (
    BATCH_SIZE,
    LR,
    SEED,
    SPLIT_SEED,
    VAL_SIZE,
    Switches,
    device_for,
    inverse_time,
    seed004_network,
    synchronize,
    worker_main,
)


def torchvision_root(data_root: Path, workdir: Path) -> Path:
    """A torchvision-layout root in a temporary folder, with the IDX files unpacked.

    torchvision's MNIST reads the unpacked files (its download step would unpack the .gz
    files into the shared data folder, or try the network when their checksums differ from
    its own); unpacking them into a temporary folder leaves the shared copy untouched.
    """
    raw = workdir / "tv" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for src in sorted((data_root / "MNIST" / "raw").iterdir()):
        target = raw / src.name.removesuffix(".gz")
        if target.exists():
            continue
        if src.name.endswith(".gz"):
            with gzip.open(src, "rb") as fin, open(target, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        else:
            target.symlink_to(src.resolve())
    return raw.parents[1]


def run_handwritten(args: argparse.Namespace, sw: Switches, result: dict[str, Any]) -> None:
    """Train with Lightning; time each epoch with the same boundaries as (b)."""
    import pytorch_lightning as pl
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, random_split
    from torchvision import datasets, transforms

    if sw.threads:
        torch.set_num_threads(sw.threads)
    pl.seed_everything(SEED, verbose=False)
    root = torchvision_root(Path(args.data_root), Path(args.workdir))
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    full = datasets.MNIST(str(root), train=True, download=False, transform=tf)
    train_set, val_set = random_split(full, [len(full) - VAL_SIZE, VAL_SIZE],
                                      generator=torch.Generator().manual_seed(SPLIT_SEED))
    pin = device_for(args.accelerator).type == "cuda"
    train_dl = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True, num_workers=2,
                          pin_memory=pin)
    val_dl = DataLoader(val_set, batch_size=BATCH_SIZE, num_workers=2, pin_memory=pin)

    class Plain(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = seed004_network(args.filters, args.transition_channels)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self.net(x)
            self.log("val_loss", F.cross_entropy(logits, y))
            self.log("val_acc", (logits.argmax(1) == y).float().mean())

        def configure_optimizers(self):
            opt = torch.optim.Adam(self.parameters(), lr=LR)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, inverse_time)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    class Timer(pl.Callback):
        """Same boundaries as mnist_sweep's EpochTimer: epoch start -> end, validation inside."""

        def on_train_epoch_start(self, trainer, pl_module):
            synchronize(pl_module.device)
            self.t0 = time.perf_counter()
            result.setdefault("first_epoch_start", time.time())

        def on_train_epoch_end(self, trainer, pl_module):
            synchronize(pl_module.device)
            result["epoch_seconds"].append(time.perf_counter() - self.t0)
            result["val_acc"].append(float(trainer.callback_metrics["val_acc"]))

    result.update(epoch_seconds=[], val_acc=[], channels_last=False,
                  threads=torch.get_num_threads())
    trainer = pl.Trainer(
        accelerator=args.accelerator, devices=1, max_epochs=args.epochs,
        limit_train_batches=args.limit_batches or 1.0, limit_val_batches=args.limit_batches or 1.0,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[Timer()], default_root_dir=str(Path(args.workdir) / "a_logs"))
    trainer.fit(Plain(), train_dl, val_dl)
    result["train_images"], result["val_images"] = len(train_set), len(val_set)


if __name__ == "__main__":
    worker_main(run_handwritten, __doc__.split("\n\n")[0])
