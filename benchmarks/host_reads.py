#!/usr/bin/env python
"""Reads of tensor values back to the host during mnist_sweep's training steps, per step.

    python benchmarks/host_reads.py --data-root ../shared/datasets --steps 20

On a GPU every such read waits for the device to finish all queued work. Each one, whatever
Python call made it (`.item()`, `bool(t)`, `float(t)`, `if t > 0:`), reaches torch's
dispatcher as `aten::_local_scalar_dense`, which a TorchDispatchMode sees on the CPU too. The
mode is on from the second training step to the end of the epoch's training part, over real
steps of the Trainer that `mnist_sweep.job.train.build_trainer` builds for a job (the job's
callbacks, checkpointing and TensorBoard logger included), for each configuration asked for.

Not counted: reads of the optimiser's step counter, which torch's Adam keeps on the host in a
GPU run too (no device wait); they are listed apart. Implicit waits inside an op (the output
size of torch.unique, say) do not pass through this op: on a GPU,
`torch.cuda.set_sync_debug_mode` finds those (benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any

from common import REPO, SEED

sys.path.insert(0, str(REPO))

# name -> overrides; the configurations whose steps must not wait for the device
CONFIGS = {
    "default": [],
    "ema": ["model.ema_decay=0.999"],
    "bf16": ["trainer.precision=bf16-mixed"],
    "augment": ["data.augment.enabled=true"],
}


def compose_run_config(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from mnist_sweep.config import validate
    from mnist_sweep.paths import config_dir
    from mnist_sweep.resolvers import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return validate(compose(config_name="config", overrides=overrides))


def where_called() -> str:
    """The innermost frame outside torch's own code: who asked for the value."""
    for frame in reversed(traceback.extract_stack()[:-3]):
        name = frame.filename
        if "/torch/" not in name and "benchmarks/host_reads.py" not in name:
            short = name.split("site-packages/")[-1].replace(str(REPO) + "/", "")
            return f"{short}:{frame.lineno} ({frame.name})"
    return "?"


def count_reads(overrides: list[str], steps: int) -> dict[str, Any]:
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.loggers import TensorBoardLogger
    from torch.utils._python_dispatch import TorchDispatchMode

    from mnist_sweep.job.callbacks import DivergenceGuard
    from mnist_sweep.job.data import MNISTDataModule
    from mnist_sweep.job.devices import place_job
    from mnist_sweep.job.module import CNNClassifier
    from mnist_sweep.job.quiet import quiet_lightning
    from mnist_sweep.job.threads import set_cpu_threads
    from mnist_sweep.job.train import build_trainer

    cfg = compose_run_config([*overrides, f"trainer.limit_train_batches={steps + 1}",
                              "trainer.max_epochs=1", "trainer.limit_val_batches=1"])
    reads: collections.Counter[str] = collections.Counter()
    host_counters: collections.Counter[str] = collections.Counter()
    optimizer_steps: list[Any] = []
    cuda_syncs: list[str] = []

    class Reads(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                tensor = args[0]
                where = f"{tensor.device.type} tensor at {where_called()}"
                if any(tensor is s for s in optimizer_steps):
                    host_counters[where] += 1
                else:
                    reads[where] += 1
            return func(*args, **(kwargs or {}))

    mode = Reads()
    # On a GPU, torch also warns of every synchronising CUDA call, those inside ops included
    syncs = warnings.catch_warnings(record=True)
    cuda = torch.cuda.is_available() and cfg.trainer.accelerator != "cpu"

    class Window(pl.Callback):
        """On from the second step (the first builds optimiser state) to the last step's
        end: the epoch's validation and end-of-epoch bookkeeping follow, once per epoch."""

        active = False

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 1:
                optimizer_steps.extend(s["step"] for opt in trainer.optimizers
                                       for s in opt.state.values() if "step" in s)
                mode.__enter__()
                self.active = True
                if cuda:
                    self.caught = syncs.__enter__()
                    warnings.simplefilter("always")
                    torch.cuda.set_sync_debug_mode("warn")

        def _close(self, *_):
            if self.active:
                mode.__exit__(None, None, None)
                self.active = False
                if cuda:
                    torch.cuda.set_sync_debug_mode("default")
                    syncs.__exit__(None, None, None)
                    cuda_syncs.extend(str(w.message).splitlines()[0] for w in self.caught
                                      if "synchroniz" in str(w.message))

        on_validation_start = on_train_epoch_end = _close

    quiet_lightning(False)
    placement = place_job(cfg, None, None)
    governor = set_cpu_threads(cfg.trainer.num_threads)
    with tempfile.TemporaryDirectory() as tmp:
        pl.seed_everything(SEED, verbose=False)
        logger = TensorBoardLogger(save_dir=tmp, name="tb", version="", default_hp_metric=False)
        trainer = build_trainer(cfg, Path(tmp), logger, 0, placement,
                                [Window(), DivergenceGuard(cfg.trainer.divergence_loss)]
                                + ([governor] if governor else []))
        trainer.fit(CNNClassifier(cfg.model, cfg.optim, cfg.scheduler),
                    datamodule=MNISTDataModule(cfg.data, shuffle_seed=SEED))
    return {"overrides": overrides, "steps": steps,
            "device": str(trainer.strategy.root_device),
            "reads_per_step": sum(reads.values()) / steps,
            "cuda_syncs_per_step": len(cuda_syncs) / steps if cuda else None,
            "cuda_syncs": dict(collections.Counter(cuda_syncs)),
            "reads": {k: v / steps for k, v in reads.most_common()},
            "host_counter_reads": {k: v / steps for k, v in host_counters.most_common()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, help="folder holding MNIST/raw/")
    p.add_argument("--steps", type=int, default=20, help="training steps counted")
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu", "auto"])
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"comma-separated, of {', '.join(CONFIGS)}")
    p.add_argument("--override", action="append", default=[],
                   help="one more config override for every configuration, e.g. "
                        "data.val_size=128 (repeatable)")
    p.add_argument("--json", type=Path, help="also write the counts to this file")
    args = p.parse_args()
    results = {}
    for name in args.configs.split(","):
        if name not in CONFIGS:
            raise SystemExit(f"Error: unknown configuration {name!r}; use {', '.join(CONFIGS)}")
        overrides = [*CONFIGS[name], f"data.root={args.data_root}",
                     f"trainer.accelerator={args.accelerator}", "trainer.num_threads=1",
                     "trainer.enable_progress_bar=false", *args.override]
        result = results[name] = count_reads(overrides, args.steps)
        print(f"{name} ({result['device']}): {result['reads_per_step']:g} reads of tensor "
              f"values per training step"
              + "".join(f"\n    {v:g}/step  {k}" for k, v in result["reads"].items())
              + "".join(f"\n    (not a device wait) {v:g}/step  optimizer step counter, {k}"
                        for k, v in result["host_counter_reads"].items())
              + (f"\n    torch.cuda.set_sync_debug_mode: {result['cuda_syncs_per_step']:g} "
                 f"synchronising CUDA calls per step" if result["cuda_syncs_per_step"]
                 is not None else ""))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
