"""What the project's own Hydra sweepers (the search and the race) share: the launcher Hydra
configured, a job's config composed from overrides, the job count the job lines announce,
and a refusal of their own settings that leaves nothing behind."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from mnist_sweep.job.signals import NUM_JOBS_ENV


class ProjectSweeper(Sweeper):
    """A sweeper whose `_prepare(arguments)` checks its settings (raising `refusal`, an
    error the user fixes on the command line) and returns what `run()`s the sweep."""

    refusal: type[Exception] = ValueError

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def sweep(self, arguments: list[str]) -> Any:
        from mnist_sweep.sweep.callbacks import abandon_sweep

        try:
            prepared = self._prepare(arguments)
        except self.refusal as exc:
            print(f"Error: {exc}", file=sys.stderr)
            abandon_sweep(self.sweep_dir)  # no lock, file or new folder left
            raise SystemExit(2) from None
        except SystemExit:  # a check that ends the command itself (callbacks.fail)
            abandon_sweep(self.sweep_dir)
            raise
        return prepared.run()

    def _prepare(self, arguments: list[str]) -> Any:
        raise NotImplementedError

    def compose(self, overrides: list[str]) -> DictConfig:
        """The config of a job with these overrides, as the launcher will compose it."""
        return self.hydra_context.config_loader.load_sweep_config(self.config, overrides)

    def set_num_jobs(self, total: int) -> None:
        """The N of the job lines' `[job k of N]`, in every process of the sweep."""
        os.environ[NUM_JOBS_ENV] = str(total)
