"""Read sweeps back from their folders and summarise them: tables, CSV, Markdown, plots."""

from mnist_sweep.report.build import build_report, build_results, main, write_results

__all__ = ["build_report", "build_results", "main", "write_results"]
