"""The racing sweeper: which configuration of a grid is better, with as few seeds as it takes.

The command line's comma-separated overrides are the configurations (expanded as Hydra's
basic sweeper expands them); the seeds 1, 2, 3, ... are the instances of an F-Race style
race. Each round launches the runs the race asks for next through the configured launcher
(one `launch` per round, so a round's runs go in parallel with joblib, submitit or Slurm),
reads each run's end from its status.json, and replays the race over every finished result
(mnist_sweep/report/racing.py), which drops the configurations the seeds show worse. The
state is written to <sweep dir>/race.json after every round.
"""

from __future__ import annotations

import logging
from typing import Any

from mnist_sweep.sweep.race.configs import RaceError
from mnist_sweep.sweep.sweepers import ProjectSweeper

log = logging.getLogger("mnist_sweep")
# what a job's status.json records and a race can maximise
METRICS = ("val/acc_best", "val/acc", "test/acc")


class RaceSweeper(ProjectSweeper):
    """`race=seeds` (hydra/sweeper=race): see conf/hydra/sweeper/race.yaml for the settings."""

    refusal = RaceError

    def __init__(self, min_seeds: Any = 3, max_seeds: Any = 10, alpha: Any = 0.05,
                 equivalence: Any = 0.05, max_runs: Any = None,
                 metric: Any = "val/acc_best") -> None:
        self.settings_given = {"min_seeds": min_seeds, "max_seeds": max_seeds, "alpha": alpha,
                               "equivalence": equivalence, "max_runs": max_runs}
        self.metric = metric

    def _prepare(self, arguments: list[str]) -> Any:
        from mnist_sweep.sweep.callbacks import dry_run_requested
        from mnist_sweep.sweep.race.configs import (
            RaceError,
            check_configurations,
            configurations,
        )
        from mnist_sweep.sweep.race.run import Race, race_settings

        if self.metric not in METRICS:
            raise RaceError(f"hydra.sweeper.metric={self.metric} is not valid: expected one of "
                            f"{' | '.join(METRICS)} (a race keeps the configurations with the "
                            f"highest value).")
        settings = race_settings(self.settings_given)
        configs = configurations(arguments)
        run_cfgs = check_configurations(configs, str(self.metric), self.compose)
        race = Race(self.launcher.launch, self.config, configs, run_cfgs, settings,
                    str(self.metric), self.set_num_jobs)
        if dry_run_requested():  # the standing and the next round; nothing is written
            race.dry_run()
        return race
