#!/usr/bin/env python
"""How OpenMP's wait policy and the thread count hold up when another process wants the CPU.

    python benchmarks/threads_probe.py --rounds 3

torch runs its CPU ops on libgomp's thread pool. Between two parallel regions libgomp's
threads spin (300,000 iterations by default) instead of sleeping: on an idle machine that
saves a wake-up per op, but when another CPU-bound process shares the cores, the spinning
threads take the time slices the working ones need and a run slows down many times over.
This probe times training steps of the seed-004 network (batch 128, in-memory tensors, the
bare loop of benchmarks/pipeline_c_bare.py without data loading) for each setting, once on
the idle machine and once next to a busy-looping process, every run a fresh process (libgomp
reads its environment when torch loads it), the settings interleaved round by round, so the
ratios compare runs taken a few seconds apart.

A setting is `NAME:THREADS`, NAME one of the wait policies below; e.g. `passive:2`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import REPO, describe_machine, machine  # noqa: E402
from measure import OMP_KEYS, loadavg, run_measured, wait_for_idle  # noqa: E402

# The OpenMP environment of each policy; everything else in os.environ is cleared of these.
POLICIES: dict[str, dict[str, str]] = {
    "active": {},                                   # libgomp's own default: spin, then sleep
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},      # sleep at once
    "spin10k": {"GOMP_SPINCOUNT": "10000"},         # spin briefly, then sleep
}
DEFAULT_SETTINGS = ["active:2", "passive:2", "spin10k:2", "active:1"]


def child(threads: int, steps: int, warmup: int, channels_last: bool) -> None:
    """Runs in the measured process: torch first, so nothing else touches the environment."""
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(REPO))
    from mnist_sweep.job.network import build_network

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = build_network("flatten", False, 16, 0.1, 10).to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=0.003)
    x = torch.randn(steps + warmup, 128, 1, 28, 28)
    y = torch.randint(0, 10, (steps + warmup, 128))
    t0 = 0.0
    for i in range(steps + warmup):
        if i == warmup:
            t0 = time.perf_counter()
        loss = F.cross_entropy(net(x[i].contiguous(memory_format=fmt)), y[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    print(json.dumps({"ms_per_step": (time.perf_counter() - t0) / steps * 1e3,
                      "threads": torch.get_num_threads()}))


def run_one(setting: str, contended: bool, args: argparse.Namespace) -> dict[str, float]:
    """One fresh process with the setting's OpenMP environment; ms per step and the CPU other
    processes used meanwhile (the busy loop included when contended)."""
    name, _, threads = setting.partition(":")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", threads or "2",
           "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if args.contiguous:
        cmd.append("--contiguous")
    if args.wait_idle > 0 and not contended:
        wait_for_idle(args.wait_idle)
    saved = {k: os.environ.pop(k) for k in OMP_KEYS if k in os.environ}
    os.environ.update(POLICIES[name])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "child.log"
            run = run_measured(cmd, log, Path(tmp), 1 if contended else 0, args.hog)
            if run["returncode"] != 0:
                raise SystemExit(f"Error: {setting} failed:\n{log.read_text()[-2000:]}")
            out = json.loads(log.read_text().strip().splitlines()[-1])
    finally:
        for k in POLICIES[name]:
            os.environ.pop(k, None)
        os.environ.update(saved)
    return {"ms": out["ms_per_step"], "others": run["others_cores"] - (1 if contended else 0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS,
                   help=f"NAME:THREADS, NAME in {', '.join(POLICIES)} (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=40, help="timed training steps per run")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--hog", choices=["python", "torch"], default="python",
                   help="the other process: a Python busy loop, or a torch program with "
                        "libgomp's defaults (default: %(default)s)")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="before each idle-machine run, wait up to SECONDS for other processes "
                        "to leave the CPU")
    p.add_argument("--contiguous", action="store_true", help="NCHW instead of channels_last")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.steps, args.warmup, not args.contiguous)
        return
    for s in args.settings:
        if s.partition(":")[0] not in POLICIES:
            raise SystemExit(f"Error: unknown setting {s!r}; names: {', '.join(POLICIES)}")
    print(f"Machine: {describe_machine(machine())}\nload average {loadavg():.2f} before; "
          f"{args.steps} steps of batch 128 per run, "
          f"{'NCHW' if args.contiguous else 'NHWC'}; contended = beside one {args.hog} "
          f"busy process", flush=True)
    times: dict[tuple[str, bool], list[float]] = {}
    for r in range(1, args.rounds + 1):
        for s in args.settings:
            for contended in (False, True):
                one = run_one(s, contended, args)
                times.setdefault((s, contended), []).append(one["ms"])
                print(f"  round {r} {s:<10} {'contended' if contended else 'idle':<9} "
                      f"{one['ms']:7.1f} ms/step; others used {one['others']:.2f} cores",
                      flush=True)
    base = args.settings[0]
    print(f"\nmedian over {args.rounds} rounds; ratios are medians of per-round ratios; "
          f"load average after {loadavg():.2f}")
    print(f"{'setting':<12}{'idle ms':>9}{'busy ms':>9}{'busy/idle':>11}"
          f"{'idle vs ' + base:>18}")
    for s in args.settings:
        idle, busy = times[(s, False)], times[(s, True)]
        slow = statistics.median(b / i for b, i in zip(busy, idle, strict=True))
        vs = statistics.median(i / b0 for i, b0 in zip(idle, times[(base, False)], strict=True))
        print(f"{s:<12}{statistics.median(idle):9.1f}{statistics.median(busy):9.1f}"
              f"{slow:10.2f}x{vs:17.3f}x")


if __name__ == "__main__":
    main()
