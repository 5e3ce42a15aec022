"""`python -m mnist_sweep [overrides] [-m]`: Hydra's command line around one training job."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_sweep.paths import config_dir
from mnist_sweep.resolvers import register_resolvers

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
    # Hydra's argparse stops at the first override, so `head=gmp,gap -m data.root=x` would
    # fail: lift -m/--multirun in front of the overrides, wherever the user typed it.
    flags = [a for a in sys.argv[1:] if a in ("-m", "--multirun")]
    sys.argv = [sys.argv[0], *flags, *(a for a in sys.argv[1:] if a not in flags)]
    hydra_entry()


if __name__ == "__main__":
    main()
