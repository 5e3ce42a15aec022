"""`python -m mnist_sweep.report` / `mnist-sweep-report`: the report's command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_sweep.report.build import (
    build_report,
    build_results,
    default_console,
    report_from_csv,
    results_from_csv,
    write_results,
)
from mnist_sweep.report.read import DAMAGED, ReportError, Run, find_jobs


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_sweep.report",
        description="Summarise sweeps from their job folders: a table, summary.csv, "
                    "summary.md, val_acc.png and acc_vs_params.png in each sweep folder.",
        epilog="Exit status: 0 when every job could be read; 1 when a job's files are "
               "damaged (each named in its row; the other jobs are reported) or the report "
               "cannot be written; 2 when a folder or file cannot be reported on at all.")
    parser.add_argument("folders", nargs="*", type=Path, metavar="FOLDER",
                        help="a sweep folder (hydra.sweep.dir, e.g. multirun/<date>/<time>) "
                             "or a single run's folder (hydra.run.dir)")
    parser.add_argument("--results", type=Path, metavar="FILE.md",
                        help="also write a Markdown document over all the given sweeps, with "
                             "mean and std over seeds, and FILE.csv beside it")
    parser.add_argument("--from-csv", type=Path, metavar="FILE.csv",
                        help="render from a report's CSV records instead of run folders: "
                             "with --results, the document over all its runs (and those of "
                             "any FOLDERs given, which replace their earlier records); "
                             "without, summary.md beside a summary.csv")
    args = parser.parse_args(argv)
    if args.from_csv and args.folders and not args.results:
        parser.error("run folders with --from-csv FILE.csv need --results FILE.md (the "
                     "document that combines them)")
    if not args.from_csv and not args.folders:
        parser.error("give at least one sweep or run folder (or --from-csv FILE.csv)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    console = default_console()
    try:
        for folder in args.folders:  # check them all before writing anything
            find_jobs(folder)
        if args.from_csv:
            if args.results:
                files = write_results(results_from_csv(args.from_csv, args.folders),
                                      args.results, from_csv=args.from_csv,
                                      folders=args.folders)
                console.print("Results written: " + ", ".join(map(str, files)),
                              markup=False, highlight=False, soft_wrap=True)
            else:
                report_from_csv(args.from_csv, console)
            return
        runs = []
        for folder in args.folders:
            runs += build_report(folder, console).rows
        if args.results:
            files = write_results(build_results(args.folders), args.results)
            console.print("Results written: " + ", ".join(map(str, files)), markup=False,
                          highlight=False, soft_wrap=True)
    except ReportError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:  # e.g. a read-only sweep folder
        print(f"Error: cannot write the report: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    fail_if_damaged(runs)


def fail_if_damaged(runs: list[Run]) -> None:
    """Exit 1 when a job's record is damaged (read.py): the report names it in its row and
    says so once here, since a damaged job may hold a result that is not counted."""
    damaged = [run for run in runs if run.status == DAMAGED]
    if not damaged:
        return
    named = "; ".join(run.damage[0] if run.damage else f"{run.job}: {run.error}"
                      for run in damaged)
    print(f"Error: {len(damaged)} job(s) hold damaged files, so their outcome is unknown "
          f"({named}). Repair the files, or delete those job folders to run the jobs "
          f"again; the other jobs are reported.", file=sys.stderr)
    raise SystemExit(1)
