"""Rendering runs: the terminal table, Markdown documents and CSV records.

Every table names its runs by what differs between them and lists the settings they share
once above it (stats.py). Cells are never cut inside a word: Markdown rows are single lines,
and a terminal table printed to a file or a pipe is given the width its longest words need.
"""

from __future__ import annotations

import csv
import io
import os
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mnist_sweep.report.read import CHOICES, DAMAGED, Run, job_number
from mnist_sweep.report.stats import Group, Results, fmt, shared_overrides, substitute_datasets

COLUMNS = ["job", *CHOICES, "params", "val_acc_best", "test_acc", "test_loss",
           "epochs_completed", "sec_per_epoch", "status", "error", "command", "settings"]


# ---- cells -----------------------------------------------------------------------------

def num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def std(value: float | None) -> str:
    """Empty for a single run: not a dash, which would read as 'missing'."""
    return "" if value is None else f"{value:.4f}"


def integer(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def code(text: str | None) -> str:
    return f"`{text}`" if text else "-"


def seed(run: Run) -> str:
    return fmt(run.config["seed"]) if "seed" in run.config else "-"


def outcome(run: Run) -> str:
    """The status cell: the status, why it did not finish, and any damaged file."""
    if run.status == "pruned":
        text = f"pruned after epoch {run.epochs_completed}"
    elif run.finished or not run.error:
        text = run.status
    else:
        text = f"{run.status}: {run.error}"
    notes = [d for d in run.damage if run.status != DAMAGED or d not in (run.error or "")]
    return "; ".join([text, *notes])


def error_cell(run: Run) -> str | None:
    """The CSV's error column: why the run did not finish, and any damaged file."""
    notes = [run.error] if run.error else []
    notes += [d for d in run.damage if d not in (run.error or "")]
    return "; ".join(notes) or None


def record(run: Run) -> dict[str, Any]:
    """The CSV row of a run: one column per COLUMNS entry."""
    return {"job": run.job, **{name: run.config.get(key) for name, key in CHOICES.items()},
            "params": run.params, "val_acc_best": run.val_acc_best, "test_acc": run.test_acc,
            "test_loss": run.test_loss, "epochs_completed": run.epochs_completed,
            "sec_per_epoch": run.sec_per_epoch, "status": run.status,
            "error": error_cell(run), "command": run.command,
            "settings": " ".join([*(f"{k}={fmt(v).replace(' ', '')}"  # one token each
                                    for k, v in sorted(run.config.items())),
                                  *([] if run.all_settings else ["..."])])}


def dataset_note(runs: list[Run], markdown: bool = False) -> str | None:
    """Said wherever results are shown: which runs did not train on a full data set."""
    substitutes = substitute_datasets(runs)
    if not substitutes:
        return None
    parts = []
    for name, subset in substitutes.items():
        which = ("all runs" if len(subset) == len(runs)
                 else "job " + ", ".join(job_number(r.job) for r in subset))
        parts.append(f"{which} trained on {code(name) if markdown else name}")
    return ("Not full MNIST: " + "; ".join(parts) + " (the offline sample: 8,000 training "
            "and 2,000 test images); do not compare these numbers with full-MNIST ones.")


def common_line(common: list[str], runs: list[Run], markdown: bool = False) -> str:
    what = f"Common to all {len(runs)} runs: " if len(runs) > 1 else "Settings: "
    listed = (code(" ".join(common)) if markdown else " ".join(common)) if common else "-"
    rest = ("every other setting at its default" if all(r.all_settings for r in runs)
            else "the records hold no other settings: see each run's command")
    return f"{what}{listed}; {rest}"


# ---- Markdown --------------------------------------------------------------------------

def md_row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def md_table(header: list[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    return [md_row(header), md_row("---" for _ in header), *map(md_row, rows)]


def summary_markdown(title: str, runs: list[Run], labels: list[str], common: list[str],
                     source: str, plots: bool = True) -> str:
    """summary.md of one sweep (or one run): its table, what the runs share, its plots."""
    done = sum(r.finished for r in runs)
    lines = [f"# {title}", "",
             f"{len(runs)} job{'s' * (len(runs) != 1)}, {done} finished, {source}. "
             f"Sorted by test accuracy; "
             f"`config` is what differs between the jobs, `command` re-runs one job.", "",
             common_line(common, runs, markdown=True), ""]
    note = dataset_note(runs, markdown=True)
    lines += [note, ""] if note else []
    lines += md_table(
        ["job", "config", "params", "best val acc", "test acc", "test loss", "epochs",
         "s/epoch", "status", "command"],
        ([job_number(r.job), label, integer(r.params), num(r.val_acc_best), num(r.test_acc),
          num(r.test_loss), r.epochs_completed, num(r.sec_per_epoch, 2), outcome(r),
          code(r.command)] for r, label in zip(runs, labels, strict=True)))
    if plots:
        lines += ["", "![validation accuracy per epoch](val_acc.png)", "",
                  "![test accuracy vs parameters](acc_vs_params.png)"]
    return "\n".join([*lines, ""])


def _group_cells(group: Group) -> list[str]:
    done = group.finished
    test_mean, test_std = group.stats("test_acc")
    val_mean, val_std = group.stats("val_acc_best")
    seconds = group.stats("sec_per_epoch")[0]
    params = sorted({r.params for r in done if r.params is not None})
    return [group.label, str(len(done)), ", ".join(map(seed, done)),
            num(test_mean), std(test_std), num(val_mean), std(val_std),
            ", ".join(map(integer, params)) or "-",
            num(seconds, 2), code(shared_overrides(group) or None)]


def results_markdown(results: Results, command: str, source: str) -> str:
    """The document over several sweeps: mean and std over seeds, then every run."""
    lines = [
        "# Results", "",
        f"Generated by `{command}` from {source} of {len(results.runs)} runs; do not edit by "
        f"hand. Accuracies are fractions; std is the sample standard deviation over seeds "
        f"(n - 1), empty for a single run; only finished runs count. `config` names each "
        f"configuration by the settings that differ between them (a setting a run does not "
        f"use, such as the augmentation sizes without augmentation, is left out).", "",
        common_line(results.common, results.runs, markdown=True), ""]
    note = dataset_note(results.runs, markdown=True)
    lines += [note, ""] if note else []
    lines += ["## Mean over seeds", ""]
    lines += md_table(
        ["config", "n", "seeds", "test acc mean", "test acc std", "best val acc mean",
         "best val acc std", "params", "mean s/epoch", "overrides shared by its runs"],
        [_group_cells(g) for g in results.groups])
    lines += ["", "## Runs", ""]
    lines += md_table(
        ["config", "seed", "status", "test acc", "best val acc", "params", "s/epoch",
         "command"],
        ([g.label, seed(r), outcome(r), num(r.test_acc), num(r.val_acc_best),
          integer(r.params), num(r.sec_per_epoch, 2), code(r.command)]
         for g in results.groups for r in g.runs))
    return "\n".join([*lines, ""])


def results_records(results: Results) -> Iterable[dict[str, Any]]:
    return ({"sweep": str(r.sweep), "config": g.label, **record(r)}
            for g in results.groups for r in g.runs)


# ---- terminal --------------------------------------------------------------------------

def print_table(console: Console, title: str, runs: list[Run], labels: list[str],
                common: list[str]) -> None:
    """The table a sweep ends with. On a terminal rich fits it to the window; elsewhere
    (a log, a pipe) it gets the width that keeps every word whole."""
    header = ("job", "config", "params", "val\nbest", "test\nacc", "test\nloss", "epochs",
              "s/\nepoch", "status")
    rows = [[job_number(r.job), label, integer(r.params), num(r.val_acc_best),
             num(r.test_acc), num(r.test_loss), str(r.epochs_completed),
             num(r.sec_per_epoch, 2), outcome(r)]
            for r, label in zip(runs, labels, strict=True)]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for i, name in enumerate(header):
        right = 2 <= i <= 7
        table.add_column(name, justify="right" if right else "left", no_wrap=right)
    for run, row in zip(runs, rows, strict=True):
        table.add_row(*map(Text, row[:-1]),
                      Text(row[-1], style="green" if run.finished else "red"))
    if not console.is_terminal:  # one line per row, however long: nothing is folded
        console.width = max(console.width, Console(width=100_000).measure(table).maximum)
    console.print(Text(title), soft_wrap=True)
    console.print(common_line(common, runs), markup=False, highlight=False,
                  soft_wrap=not console.is_terminal)
    note = dataset_note(runs)
    if note:
        console.print(Text(note, style="bold yellow"), soft_wrap=not console.is_terminal)
    console.print(table)


# ---- files -----------------------------------------------------------------------------

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


def quoted(paths: Iterable[Path | str]) -> str:
    return " ".join(shlex.quote(str(p)) for p in paths)
