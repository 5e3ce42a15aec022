"""A report end to end: read the runs, print the table, write the files.

Everything comes from what the jobs left behind (read.py), so the same report can be rebuilt
at any time with `python -m mnist_sweep.report FOLDER`, also for an interrupted sweep, a
single run, several sweeps combined with `--results`, or from the CSV records of a report
whose run folders are gone (`--from-csv`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from mnist_sweep.record.folders import is_job_folder
from mnist_sweep.report.compare import what_matters
from mnist_sweep.report.plots import write_plots
from mnist_sweep.report.race_section import print_race_section, race_section_markdown
from mnist_sweep.report.read import Run, read_folder, read_records
from mnist_sweep.report.render import (
    COLUMNS,
    csv_text,
    print_table,
    print_what_matters,
    quoted,
    record,
    results_markdown,
    results_records,
    summary_markdown,
    write_text,
)
from mnist_sweep.report.stats import Results, common_settings, describe, group_runs, rank

REPORT_CMD = "python -m mnist_sweep.report"


@dataclass
class Report:
    """What `build_report` found and wrote; the Hydra callback uses `unsuccessful`."""

    sweep_dir: Path
    rows: list[Run]
    unsuccessful: list[str]
    files: list[Path]


def default_console() -> Console:
    # Captured output (a log file, a CI log) would get rich's 80 columns: start wider, and
    # print_table widens further so that no word is cut.
    return Console(width=None if sys.stdout.isatty() else 140)


def _announce(console: Console, what: str, files: list[Path]) -> None:
    console.print(f"{what} written: " + ", ".join(map(str, files)), markup=False,
                  highlight=False, soft_wrap=True)


def build_report(folder: Path, console: Console | None = None) -> Report:
    """Read a sweep (or a single run's folder), print its table and write summary.csv,
    summary.md and the plots into that folder."""
    folder = Path(folder)
    console = console or default_console()
    runs = rank(read_folder(folder))
    labels, common = describe(runs), common_settings(runs)
    title = f"{'Run' if is_job_folder(folder) else 'Sweep'} {folder}"
    print_table(console, title, runs, labels, common)
    matters = what_matters(runs) if sum(r.finished for r in runs) > 1 else None
    print_what_matters(console, matters)
    print_race_section(console, folder)  # a race's sweep folder: its race.json
    source = (f"read from their TensorBoard event files and status.json by "
              f"`{REPORT_CMD} {quoted([folder])}`")
    files = [
        write_text(folder / "summary.csv", csv_text(COLUMNS, map(record, runs))),
        write_text(folder / "summary.md",
                   summary_markdown(title.replace(str(folder), folder.name), runs, labels,
                                    common, source, matters=matters)
                   + race_section_markdown(folder)),
        *write_plots(runs, labels, folder),
    ]
    _announce(console, f"Report of {folder}", files)
    return Report(folder, runs, [r.job for r in runs if not r.finished], files)


def report_from_csv(csv_path: Path, console: Console | None = None) -> list[Path]:
    """Re-render summary.md beside a summary.csv, from its records alone (the numbers as
    they were written; the plots already beside it are kept, since curves are not in it)."""
    console = console or default_console()
    folder = Path(csv_path).parent
    runs = rank(read_records(csv_path))
    labels, common = describe(runs), common_settings(runs)
    print_table(console, f"Sweep {folder.name} (from {csv_path})", runs, labels, common)
    matters = what_matters(runs) if sum(r.finished for r in runs) > 1 else None
    print_what_matters(console, matters)
    source = (f"read from their TensorBoard event files and status.json when they ran, "
              f"rendered from the records in {csv_path.name} by "
              f"`{REPORT_CMD} --from-csv {quoted([csv_path])}`")
    plots = (folder / "val_acc.png").is_file() and (folder / "acc_vs_params.png").is_file()
    files = [write_text(folder / "summary.md",
                        summary_markdown(f"Sweep {folder.name}", runs, labels, common,
                                         source, plots=plots, matters=matters))]
    _announce(console, f"Report of {csv_path}", files)
    return files


def build_results(folders: list[Path]) -> Results:
    """Every run of several sweeps, grouped into configurations that differ only in seed."""
    runs = [run for folder in folders for run in read_folder(Path(folder))]
    return group_runs(runs, [Path(f) for f in folders])


def results_from_csv(csv_path: Path, folders: list[Path] = ()) -> Results:
    """A results CSV's runs, plus the runs of `folders` (which replace their own earlier
    records, so the same command run again counts every run once)."""
    fresh = [run for folder in folders for run in read_folder(Path(folder))]
    seen = {(str(r.sweep), r.job) for r in fresh}
    kept = [r for r in read_records(csv_path) if (str(r.sweep), r.job) not in seen]
    return group_runs(kept + fresh, [Path(csv_path), *map(Path, folders)])


def write_results(results: Results, path: Path, from_csv: Path | None = None,
                  folders: list[Path] = ()) -> list[Path]:
    """The Markdown document and, beside it, the per-run CSV (with each run's group)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sweeps = list(dict.fromkeys(str(r.sweep) for r in results.runs))
    if from_csv is None:
        command = f"{REPORT_CMD} {quoted(results.sources)} --results {quoted([path])}"
        source = "the TensorBoard event files and status.json"
    else:
        command = (f"{REPORT_CMD} --from-csv {quoted([from_csv])} "
                   + (f"{quoted(folders)} " if folders else "") + f"--results {quoted([path])}")
        source = (f"the records in {from_csv} (read from the TensorBoard event files and "
                  f"status.json of the sweeps {', '.join(sweeps)})")
    return [write_text(path, results_markdown(results, command, source,
                                              what_matters(results.runs))),
            write_text(path.with_suffix(".csv"),
                       csv_text(["sweep", "config", *COLUMNS], results_records(results)))]
