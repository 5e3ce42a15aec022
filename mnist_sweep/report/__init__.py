"""Read sweeps back from their folders and summarise them: tables, CSV, Markdown, plots.

read.py reads runs back, stats.py says what varies and computes statistics, render.py and
plots.py draw, build.py puts them together, cli.py is the command line.
"""

from mnist_sweep.report.build import build_report, build_results, write_results
from mnist_sweep.report.cli import main

__all__ = ["build_report", "build_results", "main", "write_results"]
