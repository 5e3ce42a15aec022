"""The benchmark's report: the ratios it is judged by, and the tables, each printed under the
machine it ran on (CPU, torch's CPU capability, core count) and the load it ran under.

Ratios are medians of ratios taken within one round (runs a few minutes apart), never of
seconds from different invocations: this machine's speed drifts by ~15% over minutes.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from common import BATCH_SIZE, VAL_SIZE, describe_machine, machine
from measure import IDLE_CORES, loadavg

RSS_LIMIT_MIB = 2048
NAMES = {"a": "(a) handwritten", "b": "(b) mnist_sweep", "c": "(c) bare loop"}
TARGETS = {"a/b": (">= 1.5", lambda v: v >= 1.5), "b/c": ("<= 1.05", lambda v: v <= 1.05),
           "contended/idle": ("<= 2.0", lambda v: v <= 2.0)}


def ratio(x: dict[str, Any], y: dict[str, Any]) -> float:
    """x's seconds per epoch over y's: the median of the ratios within each round."""
    xs = {r["round"]: r["median_seconds"] for r in x.get("rounds", [x])}
    ys = {r["round"]: r["median_seconds"] for r in y.get("rounds", [y])}
    paired = [xs[k] / ys[k] for k in xs if k in ys]
    return statistics.median(paired) if paired else x["median_seconds"] / y["median_seconds"]


def build_report(args: argparse.Namespace, runs: list[dict[str, Any]],
                 load_before: float, busy_start: float) -> dict[str, Any]:
    def find(mode: str, spec: str = "baseline", contention: int = 0):
        return next((r for r in runs if r["mode"] == mode and r["switches"] == spec
                     and r["contention"] == contention), None)

    def judged(key: str, v: float) -> tuple[float, str, bool]:
        target, ok = TARGETS[key.split("[")[0]]
        return v, target, ok(v)

    a, b, c = find("a"), find("b"), find("c")
    ratios = {}
    if a and b:
        ratios["a/b"] = judged("a/b", ratio(a, b))
    if b and c:
        ratios["b/c"] = judged("b/c", ratio(b, c))
    contention = []
    for r in runs:
        idle = find(r["mode"], r["switches"]) if r["contention"] else None
        if idle:
            v = ratio(r, idle)
            contention.append({"mode": r["mode"], "switches": r["switches"],
                               "idle_s": idle["median_seconds"], "busy_s": r["median_seconds"],
                               "ratio": v, "ok": TARGETS["contended/idle"][1](v)})
    effects = []
    for spec in ["baseline", *args.switch]:
        rb, rc = find("b", spec), find("c", spec)
        effects.append({
            "switches": spec,
            "c_s": rc["median_seconds"] if rc else None,
            "c_ratio": ratio(rc, c) if rc and c else None,
            "b_s": rb["median_seconds"] if rb else None,
            "b_ratio": ratio(rb, b) if rb and b else None,
            "b_val_acc": rb["val_acc"][-1] if rb else None,
            "b_test_acc": rb.get("test_acc") if rb else None,
        })
    return {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "epochs": args.epochs, "batch_size": BATCH_SIZE, "eval_batch_size": args.eval_batch_size,
        "train_images": runs[0].get("train_images", 60000 - VAL_SIZE),
        "machine": machine(), "runs": runs, "ratios": ratios, "contention": contention,
        "switch_effects": effects if args.switch else [],
        "memory": ({"peak_rss_mib": b["peak_rss_mib"], "ok": b["peak_rss_mib"] < RSS_LIMIT_MIB}
                   if b else None),
        "load": {"before": load_before, "after": loadavg(), "others_cores_at_start": busy_start,
                 "max_others_cores": max(r["others_cores"] for r in runs if not r["contention"])
                 if any(not r["contention"] for r in runs) else math.nan},
    }


def _fmt(v: float | None, pattern: str) -> str:
    return pattern.format(v) if v is not None and not math.isnan(v) else "-"


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 170)
    load = report["load"]
    where = (f"[bold]Machine[/]: {escape(describe_machine(report['machine']))}; load average "
             f"{load['before']:.2f} before, {load['after']:.2f} after")
    n = report["epochs"]
    console.print(where)
    table = Table(title=f"Seed-004 network, batch {BATCH_SIZE}, {report['train_images']} train + "
                        f"{VAL_SIZE} val images per epoch, {n} epochs")
    for col in ("run", "switches", "busy procs", "layout", "dtype", "threads", "epoch 1 s",
                f"median 2..{n} s" if n > 1 else "epoch s", "val acc", "start-up s",
                "peak RSS MiB", "cores used", "others' cores", "GFLOP/s", "of GEMM"):
        table.add_column(col, justify="left" if col in ("run", "switches", "layout") else "right")
    for r in report["runs"]:
        table.add_row(NAMES[r["mode"]], r["switches"], str(r["contention"]),
                      "NHWC" if r.get("channels_last") else "NCHW", r.get("dtype", "?"),
                      str(r.get("threads", "?")),
                      f"{r['epoch1_seconds']:.2f}", f"{r['median_seconds']:.2f}",
                      f"{r['val_acc'][-1]:.4f}", _fmt(r.get("startup_seconds"), "{:.1f}"),
                      f"{r['peak_rss_mib']:.0f}", f"{r['cores_used']:.2f}",
                      f"{r['others_cores']:.2f}", _fmt(r.get("achieved_gflops"), "{:.1f}"),
                      _fmt(r.get("fraction_of_gemm"), "{:.0%}"))
    console.print(table)
    rate = report.get("machine_rate")
    if rate:
        console.print(f"network: {rate['flops_per_train_image'] / 1e9:.4f} GFLOP per training "
                      f"image (forward + backward), {rate['flops_per_eval_image'] / 1e9:.4f} per "
                      f"validation image (torch.utils.flop_counter); GFLOP/s = an epoch's FLOPs "
                      f"over its median seconds")
        for dtype, by_threads in rate["gemm_gflops"].items():
            console.print(f"this machine's {dtype} matrix product (1024 x 1024, now): " + ", ".join(
                f"{v:.1f} GFLOP/s on {t} thread(s)" for t, v in by_threads.items())
                + ("; 'of GEMM' compares each run with its own precision's rate"
                   if dtype == "bf16" else ""))
    for key, (value, target, ok) in report["ratios"].items():
        verdict = "[green]meets[/]" if ok else "[red]misses[/]"
        console.print(f"{escape(key)} = {value:.2f}  (target {target})  {verdict}")
    for row in report["contention"]:
        verdict = "[green]meets[/]" if row["ok"] else "[red]misses[/]"
        console.print(f"{NAMES[row['mode']]} {row['switches']}: with other CPU-bound processes "
                      f"{row['busy_s']:.2f} s vs idle {row['idle_s']:.2f} s per epoch, "
                      f"contended/idle = {row['ratio']:.2f} (target <= 2.0) {verdict}")
    for r in report["runs"]:
        if (r["mode"] == "b" and r["switches"] == "baseline" and not r["contention"]
                and r.get("epoch_cadence_seconds")):
            console.print(f"(b) epoch end to epoch end, with the checkpoint and logging between "
                          f"epochs: {statistics.median(r['epoch_cadence_seconds']):.2f} s "
                          f"(median); whole command {r['wall_seconds']:.1f} s")
    if report.get("memory"):
        mem = report["memory"]
        verdict = "[green]under[/]" if mem["ok"] else "[red]OVER[/]"
        console.print(f"peak RSS of the (b) run: {mem['peak_rss_mib']:.0f} MiB, {verdict} "
                      f"{RSS_LIMIT_MIB} MiB")
    if report["switch_effects"]:
        console.print(where)
        st = Table(title="Speed switches: median s/epoch, and vs the baseline (mnist_sweep's "
                         "defaults) of the same invocation")
        for col in ("switches", "(c) s", "(c) vs base", "(b) s", "(b) vs base", "(b) val acc",
                    "(b) test acc"):
            st.add_column(col, justify="left" if col == "switches" else "right")
        for row in report["switch_effects"]:
            st.add_row(row["switches"], _fmt(row["c_s"], "{:.2f}"), _fmt(row["c_ratio"], "{:.2f}x"),
                       _fmt(row["b_s"], "{:.2f}"), _fmt(row["b_ratio"], "{:.2f}x"),
                       _fmt(row["b_val_acc"], "{:.4f}"), _fmt(row["b_test_acc"], "{:.4f}"))
        console.print(st)
    if "overhead_ms_per_step" in report:
        console.print(f"1-filter network: (b) - (c) = {report['overhead_ms_per_step']:.2f} ms "
                      f"per training step (validation included, spread over the steps)")
    console.print(f"most CPU other processes used during any idle-machine run: "
                  f"{load['max_others_cores']:.2f} cores")
    if load["max_others_cores"] > IDLE_CORES:
        console.print("[yellow]Other processes were busy during the measurement: the "
                      "numbers are slower than on an idle machine.[/]")
