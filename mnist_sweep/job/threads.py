"""How many CPU threads torch uses: every free core, and fewer while other processes want CPU.

torch's CPU ops run on libgomp's threads, which spin between ops. Alone on the machine that
is the fastest way to run this small network; beside another CPU-bound process the spinning
threads take the time slices the working ones need and training slowed down 4-10x
(docs/benchmarks.md). Letting them sleep instead (OMP_WAIT_POLICY=PASSIVE) avoided that but
cost 28% per epoch on an idle 2-core machine. So the thread count follows the machine
instead: every couple of seconds, at a batch boundary, the job compares the CPU time the
whole machine used with its own, and uses one thread per core the others leave free (at
least one, at most what it started with). A fixed `trainer.num_threads` turns this off.

The check is a Lightning callback of the job's own Trainer, not a hook on every module:
a process-wide module hook runs on each of the ~35 module calls of a forward pass and stops
torch.compile from capturing any graph.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)

CHECK_EVERY_S = 2.0
_default_threads: int | None = None  # torch's count before the first job changed it


def _cpus() -> set[int]:
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()


def busy_seconds(cpus: set[int]) -> float | None:
    """CPU seconds the given CPUs spent busy since boot (all processes), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            lines = [ln.split() for ln in f if ln.startswith("cpu") and ln[3].isdigit()]
    except OSError:
        return None
    ticks = 0
    for fields in lines:
        if int(fields[0][3:]) in cpus:
            user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[1:8])
            ticks += user + nice + system + irq + softirq
    return ticks / os.sysconf("SC_CLK_TCK")


class ThreadGovernor(pl.Callback):
    """Checks the machine's load at batch starts (training, validation and test), acting at
    most every CHECK_EVERY_S; does nothing on a run whose model is not on the CPU.

    It runs in the training thread itself because OpenMP's thread count belongs to the
    thread that starts the parallel regions; another thread could not change it.
    """

    def __init__(self, max_threads: int, cpus: set[int]) -> None:
        self.max_threads, self.cpus = max_threads, cpus
        self.last = (time.monotonic(), busy_seconds(cpus), time.process_time())
        self.counts_used: set[int] = {torch.get_num_threads()}

    def others_cores(self) -> float | None:
        """Cores' worth of CPU other processes used since the last call."""
        now, busy, own = time.monotonic(), busy_seconds(self.cpus), time.process_time()
        t0, busy0, own0 = self.last
        self.last = (now, busy, own)
        if busy is None or busy0 is None or now <= t0:
            return None
        return max(0.0, (busy - busy0) - (own - own0)) / (now - t0)

    def threads_for(self, others: float) -> int:
        return max(1, min(self.max_threads, round(len(self.cpus) - others)))

    def check(self) -> None:
        if time.monotonic() - self.last[0] < CHECK_EVERY_S:
            return
        others = self.others_cores()
        if others is None:
            return
        threads = self.threads_for(others)
        if threads != torch.get_num_threads():
            log.info("torch %d -> %d CPU threads (other processes use %.1f cores)",
                     torch.get_num_threads(), threads, others)
            torch.set_num_threads(threads)
            self.counts_used.add(threads)

    def _on_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                        *_: Any) -> None:
        if pl_module.device.type == "cpu":
            self.check()

    on_train_batch_start = on_validation_batch_start = on_test_batch_start = _on_batch_start


def set_cpu_threads(num_threads: int | None) -> ThreadGovernor | None:
    """`trainer.num_threads`: that many threads; null: torch's own default (one per core, or
    OMP_NUM_THREADS, which the joblib launcher sets to cores // n_jobs) and the governor
    callback to add to the job's Trainer, which follows the machine from there."""
    global _default_threads
    if _default_threads is None:
        _default_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads or _default_threads)
    cpus = _cpus()
    if not num_threads and _default_threads > 1 and busy_seconds(cpus) is not None:
        return ThreadGovernor(_default_threads, cpus)
    return None
