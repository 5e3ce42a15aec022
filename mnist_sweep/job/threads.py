"""How many CPU threads torch uses: every free core, and fewer while other processes want CPU.

torch's CPU ops run on libgomp's threads, which spin between ops. Alone on the machine that
is the fastest way to run this small network; beside another CPU-bound process the spinning
threads take the time slices the working ones need and training slowed down 4-10x
(docs/benchmarks.md). Letting them sleep instead (OMP_WAIT_POLICY=PASSIVE) avoided that but
cost 28% per epoch on an idle 2-core machine. So the thread count follows the machine
instead: every couple of seconds the job compares the CPU time the whole machine used with
its own, and uses one thread per core the others leave free (at least one, at most what it
started with). A fixed `trainer.num_threads` turns this off.
"""

from __future__ import annotations

import logging
import os
import time

import torch

log = logging.getLogger(__name__)

CHECK_EVERY_S = 2.0
_governor: torch.utils.hooks.RemovableHandle | None = None
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


class ThreadGovernor:
    """A forward pre-hook on every module: cheap to call, acts at most every CHECK_EVERY_S.

    It runs in the training thread itself because OpenMP's thread count belongs to the
    thread that starts the parallel regions; another thread could not change it.
    """

    def __init__(self, max_threads: int, cpus: set[int]) -> None:
        self.max_threads, self.cpus = max_threads, cpus
        self.last = (time.monotonic(), busy_seconds(cpus), time.process_time())

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

    def __call__(self, *_: object) -> None:
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


def set_cpu_threads(num_threads: int | None) -> None:
    """`trainer.num_threads`: that many threads; null: follow the machine (ThreadGovernor),
    starting from torch's own default (one per core, or OMP_NUM_THREADS, which the joblib
    launcher sets to cores // n_jobs)."""
    global _governor, _default_threads
    if _default_threads is None:
        _default_threads = torch.get_num_threads()
    if _governor is not None:  # a job before this one in the same process (a search's trials)
        _governor.remove()
        _governor = None
    torch.set_num_threads(num_threads or _default_threads)
    cpus = _cpus()
    if not num_threads and _default_threads > 1 and busy_seconds(cpus) is not None:
        _governor = torch.nn.modules.module.register_module_forward_pre_hook(
            ThreadGovernor(_default_threads, cpus))
