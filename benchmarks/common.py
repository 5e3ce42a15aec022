"""What the three pipelines and the runner share: the fixed training recipe, the switches, and
the description of the machine that every table is printed with.

The recipe (seed-004 network, batch 128, Adam at 0.003 decayed as 0.003 / (1 + 0.319 *
epoch), 55,000 / 5,000 split with seed 0) is mnist_sweep's `experiment=seed004`, written out
once here so that (a) and (c) train exactly what (b) trains.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEED = 1  # the CLI's default seed
VAL_SIZE, SPLIT_SEED, BATCH_SIZE, EVAL_BATCH_SIZE, LR, DECAY = 5000, 0, 128, 1000, 0.003, 0.319
ALL_SWITCHES = ["contiguous", "passive", "bf16", "fp32", "compile", "threads=1", "threads=2",
                "eval_bs=128", "masks=torch", "masks=int16", "progress_bar"]
# libgomp's threads sleep as soon as an op ends instead of spinning first.
PASSIVE_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
B_ONLY = {"progress_bar", "fp32"}  # (c) is fp32 already


@dataclass
class Switches:
    """Deviations from mnist_sweep's defaults, applied alike to (b) and (c).

    `layout` None means mnist_sweep's default memory layout (model.channels_last), so (c)
    always uses the layout (b) uses; `channels_last` / `contiguous` force one. `threads=N`
    fixes the thread count (mnist_sweep's thread governor is off), so on a 2-core machine
    `contiguous+threads=2` is mnist_sweep before its CPU defaults. `passive` starts the run
    with OMP_WAIT_POLICY=PASSIVE. `bf16` trains both in bf16 autocast; `fp32` gives (b)
    trainer.precision=32-true instead of its default `auto` (bf16 on a CPU with bf16 units),
    while (c), the bare loop, is fp32 unless told `bf16`.
    """

    layout: str | None = None
    bf16: bool = False
    fp32: bool = False
    compile: bool = False
    threads: int | None = None
    eval_bs: int = EVAL_BATCH_SIZE
    progress_bar: bool = False
    passive: bool = False
    masks: str | None = None

    @classmethod
    def parse(cls, spec: str, eval_bs: int = EVAL_BATCH_SIZE) -> Switches:
        s = cls(eval_bs=eval_bs)
        for part in filter(None, spec.split("+")):
            key, _, value = part.partition("=")
            if key in ("channels_last", "contiguous") and not value:
                s.layout = key
            elif key in ("bf16", "fp32", "compile", "progress_bar", "passive") and not value:
                setattr(s, key, True)
            elif key in ("threads", "eval_bs") and value.isdigit() and int(value) > 0:
                setattr(s, key, int(value))
            elif key == "masks" and value in ("torch", "int16"):
                s.masks = value
            else:
                raise SystemExit(f"Error: unknown switch {part!r}; use channels_last, "
                                 f"contiguous, passive, bf16, fp32, compile, threads=N, "
                                 f"eval_bs=N, masks=torch|int16, progress_bar, joined by "
                                 f"'+'")
        if s.bf16 and s.fp32:
            raise SystemExit(f"Error: {spec!r} asks for both bf16 and fp32; choose one")
        return s

    def channels_last(self) -> bool:
        """The layout this run trains in: the switch, else mnist_sweep's default."""
        if self.layout is not None:
            return self.layout == "channels_last"
        sys.path.insert(0, str(REPO))
        from mnist_sweep.config import default_config

        return default_config().model.channels_last

    def env(self) -> dict[str, str]:
        """Environment variables the run's process starts with."""
        return dict(PASSIVE_ENV) if self.passive else {}

    def cli_overrides(self) -> list[str]:
        """The same switches as mnist_sweep command-line overrides."""
        out = [f"data.eval_batch_size={self.eval_bs}"]
        if self.layout is not None:
            out.append(f"model.channels_last={str(self.layout == 'channels_last').lower()}")
        if self.bf16:
            out.append("trainer.precision=bf16-mixed")
        if self.fp32:
            out.append("trainer.precision=32-true")
        if self.compile:
            out.append("model.compile=true")
        if self.masks:
            out.append(f"model.dropout_masks={self.masks}")
        if self.threads:
            out.append(f"trainer.num_threads={self.threads}")
        out.append(f"trainer.enable_progress_bar={str(self.progress_bar).lower()}")
        return out


def device_for(accelerator: str):
    import torch

    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seed004_network(filters: int = 16, transition: int = 10, masks: str = "torch"):
    """The seed-004 network (head=flatten, not separable); smaller with --overhead."""
    sys.path.insert(0, str(REPO))
    from mnist_sweep.job.network import build_network

    # torch's own dropout: (c) is the plain PyTorch loop mnist_sweep is measured against
    return build_network(head="flatten", separable=False, filters=filters,
                         transition_channels=transition, dropout_masks=masks)


def inverse_time(epoch: int) -> float:
    """The seeds' Keras schedule, lr = 0.003 / (1 + 0.319 * epoch), as a LambdaLR factor."""
    return 1.0 / (1.0 + DECAY * epoch)


def cpu_capability() -> str:
    """torch's name for the vector units it dispatches to here: DEFAULT, AVX2, AVX512, ...

    The same command differs ~3x between an AVX2 and an AMX machine, so every figure is
    printed next to this.
    """
    import torch

    return torch.backends.cpu.get_cpu_capability()


def machine() -> dict[str, Any]:
    """The CPU, its capability and core count, and the software: printed with every table."""
    import torch

    cpu, flags = "?", []
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(ln for ln in lines if ln.startswith("model name")).split(":", 1)[1].strip()
        flags = next(ln for ln in lines if ln.startswith("flags")).split()
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpu_capability": cpu_capability(), "logical_cpus": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None,
            "bf16_units": [f for f in flags if f in ("avx512_bf16", "amx_bf16")],
            "torch": torch.__version__, "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def describe_machine(m: dict[str, Any]) -> str:
    """One line: what a reader needs to compare these figures with their own."""
    bf16 = ", ".join(m["bf16_units"]) or "none"
    return (f"{m['cpu']}, torch CPU capability {m['cpu_capability']}, bf16 units: {bf16}, "
            f"{m['logical_cpus']} logical CPUs ({m['affinity_cpus']} usable), torch "
            f"{m['torch']}, python {m['python']}" + (f", GPU {m['gpu']}" if m["gpu"] else ""))


def worker_main(run, description: str) -> None:
    """Command line of a pipeline run on its own: the runner starts each (a)/(c) run this way,
    a fresh process per run, and reads back the JSON it writes."""
    import argparse
    import json

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data-root", required=True, help="folder holding MNIST/raw/")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--switches", default="", help="e.g. bf16+threads=1 (see common.Switches)")
    p.add_argument("--eval-batch-size", type=int, default=EVAL_BATCH_SIZE)
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu", "auto"])
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--transition-channels", type=int, default=10)
    p.add_argument("--workdir", default=".", help="scratch folder (unpacked files, logs)")
    p.add_argument("--limit-batches", type=int, default=0,
                   help="train and validate this many batches per epoch (0: all)")
    p.add_argument("--result", help="write the epoch times here as JSON (else print them)")
    args = p.parse_args()
    result: dict[str, Any] = {}
    run(args, Switches.parse(args.switches, args.eval_batch_size), result)
    text = json.dumps(result)
    if args.result:
        Path(args.result).write_text(text)
    else:
        print(text)
