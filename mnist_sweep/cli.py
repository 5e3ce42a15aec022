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

register_resolvers()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def hydra_entry(cfg: DictConfig) -> float | None:
    """Hydra's task function; returns the optimised metric (for the Optuna sweeper)."""
    from mnist_sweep.job.train import run_job  # heavy imports after Hydra parsed the command line

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    job_num = hydra_cfg.job.num if multirun else None
    return run_job(cfg, hydra_cfg.runtime.output_dir, job_num=job_num, multirun=multirun)


def main() -> None:
    # `--dry-run` is ours, not Hydra's: list what would happen to every job, train nothing.
    if "--dry-run" in sys.argv:
        sys.argv.remove("--dry-run")
        os.environ[DRY_RUN_ENV] = "1"
    # Hydra's argparse stops at the first override, so `head=gmp,gap -m data.root=x` would
    # fail: lift -m/--multirun in front of the overrides, wherever the user typed it.
    flags = [a for a in sys.argv[1:] if a in ("-m", "--multirun")]
    sys.argv = [sys.argv[0], *flags, *(a for a in sys.argv[1:] if a not in flags)]
    try:
        hydra_entry()
    except SystemExit as exc:
        if type(exc).__name__ == "WriteFailed":  # raised only once job.train is imported
            stop_after_write_failure(exc)
        raise


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
