"""Running one measured process: its wall time, peak memory and CPU, the CPU everything else
used meanwhile, and, for the contention mode, a second CPU-bound process running beside it.

A benchmark on a shared machine is only as good as the load it ran under, so every run
records the others' CPU use (from /proc/stat) and the load average.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import REPO

IDLE_CORES = 0.25  # other processes' CPU use below which the machine counts as idle
# The second process of the contention mode: a pure-Python loop (one thread), or a torch
# program with torch's default threads and libgomp's default wait policy (what another user's
# training does to this one).
HOGS = {
    "python": "while True: pass",
    "torch": "import torch\na = torch.randn(64, 32, 26, 26)\nw = torch.randn(32, 32, 3, 3)\n"
             "while True: torch.nn.functional.conv2d(a, w)",
}
OMP_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_busy_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return math.nan, math.nan
    v = [int(x) for x in fields] + [0] * 10
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    return (user + nice + system + irq + softirq) / hz, steal / hz


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return math.nan


def others_cores_now(window: float) -> float:
    """Cores' worth of CPU everything else on the machine used over the next `window` s."""
    busy0, _ = cpu_busy_seconds()
    own0 = time.process_time()
    time.sleep(window)
    busy1, _ = cpu_busy_seconds()
    return max(0.0, (busy1 - busy0) - (time.process_time() - own0)) / window


def wait_for_idle(limit: float, threshold: float = IDLE_CORES, window: float = 5.0) -> float:
    """Wait (up to `limit` seconds) until other processes use under `threshold` cores."""
    deadline = time.monotonic() + limit
    while True:
        busy = others_cores_now(window)
        if busy < threshold or time.monotonic() >= deadline:
            return busy
        print(f"    waiting: other processes use {busy:.2f} cores", flush=True)


@contextlib.contextmanager
def busy_loop(processes: int = 1, kind: str = "python") -> Iterator[list[subprocess.Popen]]:
    """`processes` CPU-bound processes of `kind` (HOGS) running until the block ends.

    The stand-in for "something else is running": another training, a test suite, a compile.
    Each starts with the OpenMP variables removed from its environment, as a program that
    knows nothing of this project would.
    """
    env = {k: v for k, v in os.environ.items() if k not in OMP_KEYS}
    hogs = [subprocess.Popen([sys.executable, "-c", HOGS[kind]], env=env)
            for _ in range(processes)]
    try:
        if hogs:
            time.sleep(0.3 if kind == "python" else 3.0)  # until they reach their loop
        yield hogs
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def run_measured(cmd: list[str], log_path: Path, cwd: Path, contention: int = 0,
                 hog: str = "python", env_extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a command (beside `contention` processes of kind `hog`); return its wall time,
    peak RSS and CPU, and the CPU everything else used meanwhile (the busy loops included)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(env_extra or {})
    with busy_loop(contention, hog), open(log_path, "w") as log:
        busy0, steal0 = cpu_busy_seconds()
        load0, t0, launched = loadavg(), time.perf_counter(), time.time()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
        # wait4 gives this child's own rusage (ru_maxrss of this run, not of all children).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        busy1, steal1 = cpu_busy_seconds()
    own_cpu = usage.ru_utime + usage.ru_stime
    return {
        "returncode": proc.returncode, "launched": launched, "wall_seconds": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024, "cpu_seconds": own_cpu,
        "cores_used": own_cpu / wall, "contention": contention, "hog": hog,
        "others_cores": max(0.0, (busy1 - busy0) - own_cpu) / wall,
        "steal_cores": (steal1 - steal0) / wall, "loadavg_start": load0, "loadavg_end": loadavg(),
    }
