#!/usr/bin/env python
"""Seconds per epoch of the seed-004 network, three ways, side by side on the same machine.

    python benchmarks/epoch_time.py --data-root ../shared/datasets

(a) pipeline_a_handwritten.py: torchvision transforms, a DataLoader with workers, a plain
    Lightning Trainer: what one writes by hand.
(b) pipeline_b_mnist_sweep.py: `python -m mnist_sweep experiment=seed004 ...` as a user runs
    it, with mnist_sweep's defaults.
(c) pipeline_c_bare.py: a bare loop over in-memory tensors, in the same memory layout and with
    the same thread handling as (b): the practical limit.

This file is the runner: every run is a fresh process (measure.py records its time, memory and
the machine's load), runs are interleaved round by round, and report_table.py prints the
ratios a/b (target >= 1.5) and b/c (target <= 1.05) under the machine's CPU capability.
`--contention N` runs (b) and (c) a second time beside N CPU-bound processes and reports
contended/idle (target <= 2). `--switch` times other settings on (b) and (c): contiguous /
channels_last (memory layout), passive (OMP_WAIT_POLICY=PASSIVE), bf16 (autocast;
trainer.precision=bf16-mixed in (b)), fp32 ((b) with trainer.precision=32-true instead of its
default `auto`, bf16 on a CPU with bf16 units; (c) is fp32 without bf16), compile,
threads=N (fixed: no thread governor), eval_bs=N, masks=torch|int16 (dropout masks; (c) uses
torch's without it), progress_bar ((b) only), joined by '+'; on 2 cores
`contiguous+threads=2` is mnist_sweep before its CPU defaults.
Profiling tools live apart: profile_steps.py, host_reads.py, threads_probe.py.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from common import ALL_SWITCHES, B_ONLY, BATCH_SIZE, EVAL_BATCH_SIZE, REPO, VAL_SIZE, Switches
from machine_rate import machine_rates, network_flops
from measure import IDLE_CORES, loadavg, others_cores_now, run_measured, wait_for_idle
from pipeline_b_mnist_sweep import collect_mnist_sweep, mnist_sweep_command
from report_table import build_report, print_report

HERE = Path(__file__).resolve().parent
WORKERS = {"a": HERE / "pipeline_a_handwritten.py", "c": HERE / "pipeline_c_bare.py"}


def summarise(result: dict[str, Any]) -> None:
    secs = result.get("epoch_seconds") or []
    result["epoch1_seconds"] = secs[0] if secs else math.nan
    later = secs[1:] or secs
    result["median_seconds"] = statistics.median(later) if later else math.nan
    if "first_epoch_start" in result:
        result["startup_seconds"] = result["first_epoch_start"] - result["launched"]


def run_mode(mode: str, args: argparse.Namespace, spec: str, workdir: Path,
             round_no: int = 1, attempt: int = 1, contention: int = 0) -> dict[str, Any]:
    sw = Switches.parse(spec, args.eval_batch_size)
    # A folder of its own per attempt: in a used folder the CLI would resume, not train.
    tag = (f"{mode}_{spec or 'baseline'}_busy{contention}_r{round_no}_{attempt}"
           .replace("=", "").replace("+", "_"))
    log_path = workdir / f"{tag}.log"
    result: dict[str, Any] = {"mode": mode, "switches": spec or "baseline", "round": round_no,
                              "settings": asdict(sw)}
    if mode == "b":
        run_dir = workdir / tag
        cmd = mnist_sweep_command(args, sw, run_dir)
        result["command"] = " ".join(cmd[1:])
        result.update(run_measured(cmd, log_path, REPO, contention, args.hog, sw.env()))
        if result["returncode"] == 0:
            collect_mnist_sweep(run_dir, result)
    else:
        out = workdir / f"{tag}.json"
        cmd = [sys.executable, str(WORKERS[mode]), "--switches", spec, "--result", str(out),
               "--data-root", str(Path(args.data_root).resolve()), "--epochs", str(args.epochs),
               "--eval-batch-size", str(args.eval_batch_size), "--filters", str(args.filters),
               "--transition-channels", str(args.transition_channels),
               "--accelerator", args.accelerator, "--workdir", str(workdir),
               "--limit-batches", str(args.limit_batches)]
        result.update(run_measured(cmd, log_path, workdir, contention, args.hog, sw.env()))
        if result["returncode"] == 0:
            result.update(json.loads(out.read_text()))
    if result["returncode"] != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-25:])
        raise SystemExit(f"Error: run {mode} ({spec or 'baseline'}) failed "
                         f"(exit {result['returncode']}); end of its log:\n{tail}")
    if len(result.get("epoch_seconds", [])) != args.epochs:
        raise SystemExit(f"Error: run {mode} ({spec or 'baseline'}) reported "
                         f"{len(result.get('epoch_seconds', []))} epochs, not {args.epochs}; "
                         f"see {log_path}")
    summarise(result)
    return result


def merge_rounds(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (mode, switches, contention): epochs 2..N of every round pooled."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["mode"], r["switches"], r["contention"]), []).append(r)
    merged = []
    for rs in groups.values():
        if len(rs) == 1:
            merged.append(rs[0])
            continue
        m = {k: v for k, v in rs[-1].items() if k != "round"}
        m["rounds"] = rs
        m["epoch1_seconds"] = statistics.median(r["epoch1_seconds"] for r in rs)
        m["median_seconds"] = statistics.median(
            s for r in rs for s in (r["epoch_seconds"][1:] or r["epoch_seconds"]))
        m["startup_seconds"] = statistics.median(r.get("startup_seconds", math.nan) for r in rs)
        m["peak_rss_mib"] = max(r["peak_rss_mib"] for r in rs)
        m["cores_used"] = statistics.mean(r["cores_used"] for r in rs)
        m["others_cores"] = max(r["others_cores"] for r in rs)
        merged.append(m)
    return merged


def run_dtype(r: dict[str, Any]) -> str:
    """bf16 or fp32: what the run trained in ((b) records what trainer.precision=auto chose)."""
    bf16 = r.get("settings", {}).get("bf16") or str(r.get("precision") or "").startswith("bf16")
    return "bf16" if bf16 else "fp32"


def add_machine_rate(report: dict[str, Any], args: argparse.Namespace) -> None:
    """The network's FLOPs and the machine's matrix-product rates on the thread counts the
    runs used, measured now (same invocation, same load), and each run's achieved rate."""
    flops = network_flops(args.filters, args.transition_channels)
    threads = sorted({int(r["threads"]) for r in report["runs"]
                      if str(r.get("threads", "")).isdigit()})
    rates = machine_rates(threads) if args.accelerator == "cpu" and threads else {}
    report["machine_rate"] = {"flops_per_train_image": flops["train"],
                              "flops_per_eval_image": flops["eval"], "gemm_gflops": rates}
    for r in report["runs"]:
        train = r.get("train_images") or report["train_images"]
        val = r.get("val_images") or VAL_SIZE
        if args.limit_batches:
            train = min(train, args.limit_batches * BATCH_SIZE)
            val = min(val, args.limit_batches * args.eval_batch_size)
        work = train * flops["train"] + val * flops["eval"]
        r["achieved_gflops"] = work / r["median_seconds"] / 1e9
        dtype = run_dtype(r)
        rate = rates.get(dtype, {}).get(int(r["threads"])) if str(
            r.get("threads", "")).isdigit() else None
        r["fraction_of_gemm"] = r["achieved_gflops"] / rate if rate else None
        r["dtype"] = dtype


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True,
                   help="folder holding MNIST/raw/ (e.g. ../shared/datasets)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    p.add_argument("--modes", default="a,b,c", help="which pipelines to run (default a,b,c)")
    p.add_argument("--switch", action="append", default=[],
                   help="also time (b) and (c) with these switches, e.g. bf16+contiguous; "
                        "repeatable")
    p.add_argument("--all-switches", action="store_true",
                   help="--switch for each of: " + ", ".join(ALL_SWITCHES))
    p.add_argument("--contention", type=int, default=0, metavar="N",
                   help="also run (b) and (c) with mnist_sweep's defaults beside N CPU-bound "
                        "processes (default 0)")
    p.add_argument("--hog", choices=["python", "torch"], default="python",
                   help="those processes: a Python busy loop (one core each) or a torch "
                        "program with libgomp's defaults (default: %(default)s)")
    p.add_argument("--eval-batch-size", type=int, default=EVAL_BATCH_SIZE,
                   help="validation batch size of (b) and (c) (mnist_sweep's default 1000)")
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu", "auto"],
                   help="cpu (default) or gpu; passed to all three runs")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the whole plan this many times, interleaved; ratios are the "
                        "median of the per-round ratios")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="before each idle-machine run, wait up to SECONDS for other processes "
                        f"to use under {IDLE_CORES} cores, and repeat (up to 3 times) a run they "
                        "disturbed; for a shared machine. Default: do not wait")
    p.add_argument("--overhead", action="store_true",
                   help="measure the framework's cost per step: (b) and (c) with a 1-filter "
                        "network, whose compute is next to nothing")
    p.add_argument("--filters", type=int, default=16, help=argparse.SUPPRESS)
    p.add_argument("--transition-channels", type=int, default=10, help=argparse.SUPPRESS)
    p.add_argument("--limit-batches", type=int, default=0, metavar="N",
                   help="train and validate N batches per epoch: checks that every run works "
                        "(benchmarks/gpu_check.sh --smoke); the figures are then not epochs")
    p.add_argument("--json", type=Path, help="also write the raw numbers to this file")
    p.add_argument("--keep", action="store_true", help="keep the runs' folders and logs")
    args = p.parse_args(argv)
    if args.all_switches:
        args.switch = [*args.switch, *(s for s in ALL_SWITCHES if s not in args.switch)]
    if args.overhead:
        args.filters, args.transition_channels, args.modes = 1, 1, "b,c"
    if args.epochs < 1 or args.rounds < 1 or args.contention < 0:
        p.error("--epochs and --rounds must be >= 1, --contention >= 0")
    return args


def plan_of(args: argparse.Namespace) -> list[tuple[int, str, str, int]]:
    """(round, mode, switches, busy processes) of every run, in the order they run."""
    plan = [(m.strip(), "") for m in args.modes.split(",") if m.strip()]
    for spec in args.switch:
        plan += [(m, spec) for m in ("c", "b") if not (m == "c" and set(spec.split("+")) & B_ONLY)]
    # Contention: (b) and (c) with mnist_sweep's defaults, each right after its idle run.
    return [(k, mode, spec, n) for k in range(1, args.rounds + 1) for mode, spec in plan
            for n in ([0, args.contention] if args.contention and mode in "bc" and not spec
                      else [0])]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raw = Path(args.data_root) / "MNIST" / "raw"
    if not raw.is_dir():
        raise SystemExit(f"Error: {raw} does not exist; pass --data-root <folder holding "
                         f"MNIST/raw/>, e.g. ../shared/datasets")
    for spec in args.switch:
        Switches.parse(spec, args.eval_batch_size)  # fail on a typo before hours of runs
    load_before = loadavg()
    busy = others_cores_now(3.0)
    print(f"other processes use {busy:.2f} cores right now (load average {load_before:.2f})"
          + ("; timings will be slower than on an idle machine (see --wait-idle)"
             if busy > IDLE_CORES else ""), flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="epoch_time_"))
    runs = []
    steps = plan_of(args)
    try:
        for i, (k, mode, spec, n_busy) in enumerate(steps, 1):
            for attempt in range(1, 4):
                if args.wait_idle > 0:
                    wait_for_idle(args.wait_idle)
                print(f"[{i}/{len(steps)}] run {mode} {spec or 'baseline'}"
                      + (f" beside {n_busy} busy process(es)" if n_busy else "")
                      + (f" (round {k})" if args.rounds > 1 else "") + " ...", flush=True)
                r = run_mode(mode, args, spec, workdir, k, attempt, n_busy)
                print(f"    epochs {', '.join(f'{s:.2f}' for s in r['epoch_seconds'])} s; "
                      f"others used {r['others_cores']:.2f} cores", flush=True)
                # With --wait-idle, a run that other processes disturbed is done again (at
                # most three times; the last attempt is kept whatever its load). The busy
                # processes of --contention count as others; allow for them.
                if (args.wait_idle <= 0 or r["others_cores"] <= IDLE_CORES + n_busy
                        or attempt == 3):
                    break
                print("    disturbed by other processes: running it again", flush=True)
            runs.append(r)
    finally:
        if args.keep:
            print(f"runs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report = build_report(args, merge_rounds(runs), load_before, busy)
    report["rounds"] = args.rounds
    add_machine_rate(report, args)
    if args.overhead and "b/c" in report["ratios"]:
        b, c = (next(r for r in report["runs"] if r["mode"] == m and r["switches"] == "baseline"
                     and not r["contention"]) for m in "bc")
        steps_per_epoch = math.ceil(report["train_images"] / BATCH_SIZE)
        report["overhead_ms_per_step"] = ((b["median_seconds"] - c["median_seconds"])
                                          / steps_per_epoch * 1e3)
    print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"raw numbers written to {args.json}")


if __name__ == "__main__":
    main()
