"""Hydra callbacks: check a whole sweep before it starts, narrate it, report at the end.

Hydra's basic launcher runs jobs one after another and stops at the first exception; the
jobs here record their own failures (see train.run_job), so this callback is where the
sweep's outcome is decided: the report is written and the exit code set.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_sweep.config import ConfigError, validate
from mnist_sweep.job.status import read_status_or_none as read_status

log = logging.getLogger("mnist_sweep")
NUM_JOBS_ENV = "MNIST_SWEEP_NUM_JOBS"


def fail(message: str) -> None:
    """End the command with one clear message and no traceback."""
    print(f"Error: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_config(cfg: DictConfig) -> None:
    from mnist_sweep.job.datasets import DataError, check_root

    try:
        run_cfg = validate(cfg)
        check_root(run_cfg.data.root, run_cfg.data.name, run_cfg.data.download)
    except (ConfigError, DataError) as exc:
        fail(str(exc))


def expand_basic_sweep(config: DictConfig) -> list[list[str]] | None:
    """The override list of every job of a grid sweep (None for other sweepers)."""
    if "BasicSweeper" not in str(config.hydra.sweeper.get("_target_", "")):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    batches = BasicSweeper.split_arguments(parsed, None)
    return [list(job) for batch in batches for job in batch]


class SweepCallback(Callback):
    """Grid sweeps exit non-zero when a job did not finish; in a search (Optuna) failed
    trials are part of the search and are only listed in the report."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_config(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        jobs = expand_basic_sweep(config)
        if jobs is None:
            os.environ[NUM_JOBS_ENV] = str(config.hydra.sweeper.get("n_trials", "?"))
            check_config(config)
            return
        loader = GlobalHydra.instance().config_loader()
        for overrides in jobs:
            try:
                job_cfg = loader.load_sweep_config(config, overrides)
            except Exception as exc:  # e.g. an unknown group option in one sweep value
                fail(f"{' '.join(overrides)}: {exc}")
            check_config(job_cfg)
        os.environ[NUM_JOBS_ENV] = str(len(jobs))
        log.info("sweep of %d jobs: every configuration checked", len(jobs))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode.name != "MULTIRUN":
            return
        total = os.environ.get(NUM_JOBS_ENV, "?")
        overrides = " ".join(config.hydra.overrides.task) or "(defaults)"
        log.info("[job %d of %s] start: %s", config.hydra.job.num + 1, total, overrides)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode.name != "MULTIRUN":
            return
        total = os.environ.get(NUM_JOBS_ENV, "?")
        status = read_status(Path(config.hydra.runtime.output_dir)) or {}
        metrics = status.get("metrics") or {}
        result = status.get("status", "unknown")
        if result == "finished":
            shown = [f"{k}={metrics[k]:.4f}" for k in ("test/acc", "val/acc_best")
                     if metrics.get(k) is not None]
            result += f": {' '.join(shown)} params={metrics.get('params')}"
        elif status.get("error"):
            result += f": {status['error']}"
        log.info("[job %d of %s] %s -> %s", config.hydra.job.num + 1, total,
                 " ".join(config.hydra.overrides.task) or "(defaults)", result)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mnist_sweep.report import build_report

        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            report = build_report(sweep_dir)
        except OSError as exc:  # e.g. a read-only sweep folder: the runs themselves are safe
            fail(f"the sweep finished but its report could not be written ({exc}). Run "
                 f"`python -m mnist_sweep.report {sweep_dir}` once the folder is writable.")
        if report.unsuccessful and expand_basic_sweep(config) is not None:
            print(f"{len(report.unsuccessful)} job(s) did not finish: "
                  f"{', '.join(report.unsuccessful)}. Re-run the same command with "
                  f"hydra.sweep.dir={sweep_dir} to retry them; finished jobs are skipped.",
                  file=sys.stderr)
            raise SystemExit(1)
