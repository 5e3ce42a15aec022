"""Which device a job trains on: checked where the job runs, a free GPU taken by lock, and
the device actually used named in the job's record.

The submitting process may have no GPU at all (a Slurm login node), so whether the requested
device exists is decided here, inside the job. In a sweep with several GPUs each job takes a
GPU that no other job of the sweep holds: joblib hands the next job to whichever worker frees
first, and a search's next trial number follows a pruned one, so "job k takes GPU k mod n"
put two jobs on one GPU while another idled.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mnist_sweep.config import CPU_PRECISION_HINT, RunConfig
from mnist_sweep.locks import hold_if_free

log = logging.getLogger(__name__)

GPU_LOCK = ".gpu{index}.lock"  # in the sweep folder, one per GPU of the machine


class DeviceUnavailable(RuntimeError):
    """The configured device does not exist where the job runs (or cannot run its precision)."""


def wants_cuda(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto"
                                               and torch.cuda.is_available())


def check_device(cfg: RunConfig) -> str:
    """The device type the job will train on ('cpu', 'cuda', 'mps'); raises
    DeviceUnavailable with the fix when the requested one is not here."""
    t = cfg.trainer
    host = socket.gethostname()
    if t.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise DeviceUnavailable(
            f"trainer.accelerator={t.accelerator}: torch sees no CUDA GPU on {host}, where "
            f"this job runs (torch {torch.__version__}, {build}). Run it where a GPU is "
            f"visible (on Slurm: a GPU partition, hydra.launcher.gpus_per_task=1), or use "
            f"trainer.accelerator=auto (the CPU when there is no GPU) or cpu.")
    if t.accelerator == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailable(f"trainer.accelerator=mps: torch sees no Apple GPU (MPS) on "
                                f"{host}; use trainer.accelerator=auto or cpu.")
    kind = ("cuda" if wants_cuda(t.accelerator) else
            "mps" if t.accelerator == "mps" or (t.accelerator == "auto"
                                                 and torch.backends.mps.is_available())
            else "cpu")
    if kind == "cpu" and str(t.precision) == "16-mixed":
        raise DeviceUnavailable(f"trainer.precision=16-mixed cannot train on {host}, which "
                                f"has no GPU: use {CPU_PRECISION_HINT}.")
    return kind


def cpu_has_bf16_units() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX), where oneDNN's
    bf16 convolutions are faster than fp32; elsewhere bf16 is emulated and slower."""
    return any(getattr(torch.cpu, probe, lambda: False)()
               for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def precision_used(precision: str, kind: str) -> str:
    """What `trainer.precision` trains in on a device of this kind: `auto` is bf16 autocast
    on a CPU with bf16 units (faster there at the same accuracy, docs/benchmarks.md) and
    32-true on any other device; any other value is the user's and stays."""
    if str(precision) != "auto":
        return str(precision)
    return "bf16-mixed" if kind == "cpu" and cpu_has_bf16_units() else "32-true"


def choose_gpu(count: int, start: int, lock_dir: Path | None) -> tuple[int, int | None]:
    """A GPU index no other job of the sweep holds, trying `start` first, then the next
    ones; returns (index, held lock's file descriptor). With every GPU held, or no sweep
    folder to lock in, the job shares GPU `start`."""
    if lock_dir is not None:
        for step in range(count):
            index = (start + step) % count
            fd = hold_if_free(lock_dir / GPU_LOCK.format(index=index))
            if fd is not None:
                return index, fd
    return start % count, None


@dataclass
class Placement:
    """What the Trainer gets, and what the job's record says it trained on."""

    accelerator: str
    devices: Any
    precision: str
    lock_fd: int | None = None

    def record(self, root_device: torch.device) -> dict[str, str]:
        """`device`: cpu | cuda | mps; `device_name`: the GPU's or the CPU's model (with
        torch's CPU capability), since seconds per epoch compare only on the same one;
        `precision`: what the job trains in (trainer.precision=auto decided here)."""
        if root_device.type == "cuda":
            name = torch.cuda.get_device_name(root_device)
        elif root_device.type == "cpu":
            name = f"{_cpu_model()} ({torch.backends.cpu.get_cpu_capability()})"
        else:
            name = root_device.type
        return {"device": root_device.type, "device_name": name, "precision": self.precision}

    def release(self) -> None:
        """Free the GPU for the sweep's next job (a joblib worker lives on after its job)."""
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() or "cpu"


def place_job(cfg: RunConfig, job_num: int | None, sweep_dir: Path | None) -> Placement:
    """Check the device and, in a sweep on a machine with several GPUs, take a free one."""
    kind = check_device(cfg)
    t = cfg.trainer
    precision = precision_used(t.precision, kind)
    if kind != "cuda" or t.devices != 1 or job_num is None:
        return Placement(t.accelerator, t.devices, precision)
    count = torch.cuda.device_count()
    if count < 2:
        return Placement(t.accelerator, t.devices, precision)
    index, fd = choose_gpu(count, job_num % count, sweep_dir)
    if fd is None:
        log.warning("every one of the %d GPUs is held by another job of this sweep: "
                    "sharing GPU %d", count, index)
    else:
        log.info("training on GPU %d of %d (the first one no other job held)", index, count)
    return Placement("gpu", [index], precision, fd)
