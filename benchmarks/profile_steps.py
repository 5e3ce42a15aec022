#!/usr/bin/env python
"""Where a training step of the bare loop (c) spends its time, per switch (torch.profiler).

    python benchmarks/profile_steps.py --steps 20 --switch contiguous --switch bf16

A profiling tool, not a benchmark: the profiler slows every op down, so its ms/step only
compares switches with each other. Random inputs; no data set needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    BATCH_SIZE,
    LR,
    REPO,
    SEED,
    Switches,
    describe_machine,
    device_for,
    machine,
    seed004_network,
    synchronize,
)

sys.path.insert(0, str(REPO))


def train_step(net, opt, x, y, bf16: bool) -> None:
    """One step of the bare loop, as in pipeline_c_bare.run_bare."""
    import torch
    import torch.nn.functional as F

    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = net(x)
    loss = F.cross_entropy(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def profile_switch(spec: str, steps: int, accelerator: str) -> dict[str, Any]:
    import torch
    from rich.console import Console
    from rich.table import Table
    from torch.profiler import ProfilerActivity, profile

    sw = Switches.parse(spec)
    torch.set_num_threads(sw.threads or os.cpu_count() or 1)
    torch.manual_seed(SEED)
    device = device_for(accelerator)
    fmt = torch.channels_last if sw.channels_last() else torch.contiguous_format
    net = seed004_network(masks=sw.masks or "torch").to(device, memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    x = torch.randn(BATCH_SIZE, 1, 28, 28, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (BATCH_SIZE,), device=device)
    for _ in range(5):
        train_step(net, opt, x, y, sw.bf16)
    synchronize(device)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            train_step(net, opt, x, y, sw.bf16)
        synchronize(device)
    wall_ms = (time.perf_counter() - t0) / steps * 1e3
    events = sorted((e for e in prof.key_averages() if e.self_cpu_time_total > 0),
                    key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    rows = [{"op": e.key, "calls_per_step": e.count / steps,
             "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps,
             "share": e.self_cpu_time_total / total} for e in events[:10]]
    table = Table(title=f"(c) training step, {spec or 'baseline'} "
                        f"({'NHWC' if sw.channels_last() else 'NCHW'}), "
                        f"{torch.get_num_threads()} threads: {wall_ms:.1f} ms/step under the "
                        f"profiler")
    for col in ("op", "calls/step", "self ms/step", "share"):
        table.add_column(col, justify="left" if col == "op" else "right")
    for r in rows:
        table.add_row(r["op"], f"{r['calls_per_step']:.0f}", f"{r['self_ms_per_step']:.2f}",
                      f"{r['share']:.0%}")
    Console(width=None if sys.stdout.isatty() else 130).print(table)
    return {"switches": spec or "baseline", "threads": torch.get_num_threads(),
            "wall_ms_per_step_profiled": wall_ms, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="profiled steps per switch")
    p.add_argument("--switch", action="append", default=[],
                   help="switches besides the baseline (see common.Switches); repeatable")
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu", "auto"])
    p.add_argument("--json", type=Path, help="also write the rows to this file")
    args = p.parse_args()
    specs = ["", *args.switch]
    for spec in specs:
        if Switches.parse(spec).compile or Switches.parse(spec).progress_bar:
            raise SystemExit(f"Error: {spec!r}: compile and progress_bar are not profiled here")
    m = machine()
    print(f"Machine: {describe_machine(m)}", flush=True)
    out = {"machine": m, "profiles": [profile_switch(s, args.steps, args.accelerator)
                                      for s in specs]}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
