#!/usr/bin/env python
"""Reads of tensor values into Python during mnist_sweep's training steps, per step.

    python benchmarks/host_reads.py --data-root ../shared/datasets --steps 20

On a GPU each such read (item, bool, float, int, tolist, numpy) waits for the device. This
counts them on any device by wrapping those Tensor methods while Lightning runs the training
part of one epoch of mnist_sweep's module and data module (batch transfer, augmentation,
forward, backward, optimiser step, logging). Implicit waits inside an op (e.g. the output size
of torch.unique) are not seen: on a GPU, torch.cuda.set_sync_debug_mode finds those.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from common import REPO, SEED

sys.path.insert(0, str(REPO))

READS = ("item", "__bool__", "__float__", "__int__", "tolist", "numpy")


def count_host_reads(data_root: str, steps: int, accelerator: str) -> list[dict[str, Any]]:
    import pytorch_lightning as pl
    import torch

    from mnist_sweep.config import RunConfig
    from mnist_sweep.job.callbacks import DivergenceGuard, EpochTimer
    from mnist_sweep.job.data import MNISTDataModule
    from mnist_sweep.job.module import CNNClassifier

    reads: collections.Counter[str] = collections.Counter()
    active = [False]
    originals = {}

    def wrap(name: str):
        original = getattr(torch.Tensor, name)
        originals[name] = original

        def counted(self, *a, **k):
            if active[0]:
                frame = traceback.extract_stack(limit=2)[0]
                where = frame.filename.split("site-packages/")[-1].replace(str(REPO) + "/", "")
                reads[f"{name} of a {self.device.type} tensor at {where}:{frame.lineno}"] += 1
            return original(self, *a, **k)
        return counted

    class Window(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            active[0] = True

        def on_validation_epoch_start(self, trainer, pl_module):
            active[0] = False

    results = []
    try:
        for name in READS:
            setattr(torch.Tensor, name, wrap(name))
        for augment in (False, True):
            reads.clear()
            cfg = RunConfig()
            cfg.data.root, cfg.data.augment.enabled = data_root, augment
            cfg.model.head = "flatten"
            with tempfile.TemporaryDirectory() as tmp:
                trainer = pl.Trainer(
                    accelerator=accelerator, devices=1, max_epochs=1,
                    limit_train_batches=steps, limit_val_batches=1,
                    enable_progress_bar=False, enable_checkpointing=False, logger=False,
                    enable_model_summary=False, num_sanity_val_steps=0,
                    callbacks=[Window(), EpochTimer(), DivergenceGuard()],
                    default_root_dir=tmp)
                trainer.fit(CNNClassifier(cfg.model, cfg.optim, cfg.scheduler),
                            datamodule=MNISTDataModule(cfg.data, shuffle_seed=SEED))
            per_step = {k: v / steps for k, v in reads.most_common()}
            results.append({"augment": augment, "steps": steps, "reads_per_step": per_step})
            print(f"augment={str(augment).lower()}: {sum(reads.values()) / steps:g} reads of "
                  f"tensor values per training step"
                  + "".join(f"\n    {v:g}/step  {k}" for k, v in per_step.items()))
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, help="folder holding MNIST/raw/")
    p.add_argument("--steps", type=int, default=20, help="training steps counted")
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu", "auto"])
    p.add_argument("--json", type=Path, help="also write the counts to this file")
    args = p.parse_args()
    results = count_host_reads(args.data_root, args.steps, args.accelerator)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
