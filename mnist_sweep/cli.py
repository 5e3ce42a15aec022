"""`python -m mnist_sweep [overrides] [-m]`: Hydra's command line around one training job."""

from __future__ import annotations

import os
import sys
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_sweep.paths import config_dir
from mnist_sweep.resolvers import register_resolvers
from mnist_sweep.sweep.callbacks import DRY_RUN_ENV
from mnist_sweep.sweep.signals import (
    in_joblib_worker,
    sweep_ends_soon,
    worker_of_an_ended_sweep,
)

register_resolvers()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def hydra_entry(cfg: DictConfig) -> float | None:
    """Hydra's task function; returns the optimised metric (for the Optuna sweeper)."""
    # heavy imports after Hydra parsed the command line
    from mnist_sweep.job.train import JobInterrupted, run_job

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    job_num = hydra_cfg.job.num if multirun else None
    if worker_of_an_ended_sweep():  # the sweep was stopped: start none of its queued jobs
        os._exit(143)
    try:
        return run_job(cfg, hydra_cfg.runtime.output_dir, job_num=job_num, multirun=multirun)
    except JobInterrupted as exc:
        if exc.code != 143 or not in_joblib_worker():
            raise
        # SIGTERM in a joblib worker. From a stopped sweep (sweep/signals.py), whose process
        # ends moments after passing it on: the worker then starts no queued job. To this
        # worker alone: its job ends interrupted, as a cancelled Slurm job does, and the
        # sweep goes on with the others (and lists it at its end).
        if sweep_ends_soon():
            os._exit(143)
        return None


def main() -> None:
    # `mnist-sweep watch <sweep dir>`: follow a sweep from its folder (no override has this
    # form: overrides hold `=`), see sweep/watch.py
    if sys.argv[1:2] == ["watch"]:
        from mnist_sweep.sweep.watch import main as watch

        watch(sys.argv[2:])
        return
    # `--dry-run` is ours, not Hydra's: list what would happen to every job, train nothing.
    if "--dry-run" in sys.argv:
        sys.argv.remove("--dry-run")
        os.environ[DRY_RUN_ENV] = "1"
    # Hydra's argparse stops at the first override, so `head=gmp,gap -m data.root=x` would
    # fail: lift -m/--multirun in front of the overrides, wherever the user typed it.
    flags = [a for a in sys.argv[1:] if a in ("-m", "--multirun")]
    sys.argv = [sys.argv[0], *flags, *(a for a in sys.argv[1:] if a not in flags)]
    if any(a in ("-c", "--cfg") or a.startswith("--cfg=") for a in sys.argv[1:]):
        validate_before_printing(sys.argv[1:])
    try:
        hydra_entry()
    except SystemExit as exc:
        if type(exc).__name__ == "WriteFailed":  # raised only once job.train is imported
            stop_after_write_failure(exc)
        raise


# Hydra's flags that take a value: what follows them is not an override
_FLAGS_WITH_VALUE = ("-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn",
                     "--config-name", "-cd", "--config-dir", "--info", "-i",
                     "--experimental-rerun")


def validate_before_printing(args: list[str]) -> None:
    """`--cfg job` prints the composed config without running the checks a run starts with,
    so invalid values would print as if they were fine: compose and validate every job the
    command line describes first (one message and exit code 2, as a run would end)."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mnist_sweep.config import ConfigError, validate

    overrides, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in _FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            overrides.append(arg)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        jobs = [list(job) for batch in BasicSweeper.split_arguments(parsed, None)
                for job in batch] if any(o.is_sweep_override() for o in parsed) else [overrides]
    except Exception:  # left to Hydra, which explains a malformed override itself
        return
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for job in jobs:
            try:
                validate(compose(config_name="config", overrides=job, return_hydra_config=True))
            except ConfigError as exc:
                print(f"Error: {exc}", file=sys.stderr)
                raise SystemExit(2) from None
            except Exception:  # composition errors: Hydra reports them when it composes
                return


def stop_after_write_failure(exc: Any) -> None:
    """A job could not write its folder: stop the sweep with one message and whatever
    report the disk still takes (the jobs after it would fail the same way)."""
    print(f"Error: {exc.message}", file=sys.stderr)
    if exc.sweep_dir is not None:
        from mnist_sweep.report import build_report

        try:
            build_report(exc.sweep_dir)
        except Exception as report_exc:  # the same full disk, most likely
            print(f"The sweep's report could not be written either ({report_exc}); run "
                  f"`mnist-sweep-report {exc.sweep_dir}` once there is space.", file=sys.stderr)
    raise SystemExit(1) from None


if __name__ == "__main__":
    main()
