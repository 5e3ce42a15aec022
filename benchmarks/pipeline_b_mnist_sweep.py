"""(b) mnist_sweep itself: the real command line, read back from its own records.

The runner starts `python -m mnist_sweep experiment=seed004 ...` in a fresh folder, with no
settings beyond the switches being timed, so (b) measures exactly what a user's command does
(Hydra, the in-memory DataModule, Lightning, TensorBoard logging, a checkpoint per epoch).
Seconds per epoch come from the run's TensorBoard `time/epoch_seconds`; the memory layout
from its composed config (`.hydra/config.yaml`); the thread count from its log.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from common import Switches

THREADS_LINE = re.compile(r"torch (\d+) CPU threads")


def mnist_sweep_command(args: argparse.Namespace, sw: Switches, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "mnist_sweep", "experiment=seed004",
            f"data.root={Path(args.data_root).resolve()}", f"trainer.max_epochs={args.epochs}",
            f"trainer.accelerator={args.accelerator}", f"hydra.run.dir={run_dir}",
            f"model.filters={args.filters}",
            f"model.transition_channels={args.transition_channels}", *sw.cli_overrides(),
            *([f"trainer.limit_train_batches={args.limit_batches}",
               f"trainer.limit_val_batches={args.limit_batches}"]
              if getattr(args, "limit_batches", 0) else [])]


def read_scalars(tb_dir: Path, tag: str) -> list[tuple[float, float]]:
    """(wall_time, value) of one scalar tag, in step order, with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        return []
    return [(e.wall_time, e.value) for e in sorted(acc.Scalars(tag), key=lambda e: e.step)]


def collect_mnist_sweep(run_dir: Path, result: dict[str, Any]) -> None:
    """Fill `result` from a finished run folder; refuse anything but a fresh full-MNIST run."""
    import yaml

    status = json.loads((run_dir / "status.json").read_text())
    if status.get("status") != "finished":
        raise RuntimeError(f"mnist_sweep run ended {status.get('status')}: {status.get('error')}")
    if status.get("resumed_from"):
        raise RuntimeError(f"mnist_sweep resumed from {status['resumed_from']} instead of "
                           f"training from scratch: the run folder {run_dir} was not new")
    if status.get("dataset") != "mnist":
        raise RuntimeError(f"mnist_sweep trained on {status.get('dataset')!r}, not the full "
                           f"MNIST: check --data-root")
    tb_dir = run_dir / "tb" / "mnist"
    times = read_scalars(tb_dir, "time/epoch_seconds")
    result["epoch_seconds"] = [v for _, v in times]
    result["val_acc"] = [v for _, v in read_scalars(tb_dir, "val/acc")]
    result["train_loss"] = [v for _, v in read_scalars(tb_dir, "train/loss")]
    result["test_acc"] = status["metrics"].get("test/acc")
    result["params"] = status.get("params")
    result["precision"] = status.get("precision")  # what trainer.precision=auto chose
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    result["channels_last"] = bool(config["model"]["channels_last"])
    log = run_dir / "cli.log"
    found = THREADS_LINE.search(log.read_text()) if log.is_file() else None
    result["threads"] = int(found.group(1)) if found else None
    if times:  # the event is written at the end of epoch 1
        result["first_epoch_start"] = times[0][0] - times[0][1]
        # Epoch end to epoch end: also counts what happens between two timed epochs
        # (the checkpoint written after each epoch, the logger's flush).
        result["epoch_cadence_seconds"] = [t1 - t0 for (t0, _), (t1, _) in
                                           zip(times, times[1:], strict=False)]
