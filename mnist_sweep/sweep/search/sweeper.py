"""The search sweeper: Optuna's ask-and-tell around Hydra's launchers, one trial per launch.

Hydra's `Launcher.launch(batch)` returns when the whole batch has ended, so a sweeper that
launches batches keeps every worker waiting for the slowest trial of the batch. Here each of
`n_jobs` threads loops ask -> launch one job -> tell: a pruned or finished trial frees its
worker at once. Launchers stay as they come: joblib's and submitit's run each job in another
process and can be called from several threads (each call is its own `Parallel` / executor);
Hydra's basic launcher runs the job in this process and is not thread-safe, so with it trials
run one at a time, on the main thread (where Ctrl-C and SIGTERM reach the job).
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_sweep.job.trial import SearchError
from mnist_sweep.sweep.sweepers import ProjectSweeper

log = logging.getLogger("mnist_sweep")
DIRECTIONS = ("maximize", "minimize")


class SearchSweeper(ProjectSweeper):
    """`hydra/sweeper=optuna`: see conf/hydra/sweeper/optuna.yaml for the settings."""

    refusal = SearchError

    def __init__(self, sampler: Any = None, direction: str = "maximize",
                 study_name: str = "mnist_sweep", storage: str | None = None,
                 n_trials: int = 20, n_jobs: int = 1, params: Any = None,
                 pruner: str = "successive_halving", pruning: Any = None) -> None:
        self.sampler_cfg = sampler
        self.direction = direction
        self.study_name = study_name
        self.storage = storage
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.params = OmegaConf.to_container(params) if isinstance(params, DictConfig) else params
        self.pruner = pruner
        self.pruning = (OmegaConf.to_container(pruning) if isinstance(pruning, DictConfig)
                        else dict(pruning or {}))

    def _prepare(self, arguments: list[str]) -> Any:
        from mnist_sweep.sweep.callbacks import describe_search
        from mnist_sweep.sweep.search.check import check_space
        from mnist_sweep.sweep.search.run import Search, SearchSettings
        from mnist_sweep.sweep.search.space import parse_space

        if self.direction not in DIRECTIONS:
            raise SearchError(f"hydra.sweeper.direction={self.direction} is not valid: "
                              f"expected maximize | minimize.")
        for key in ("n_trials", "n_jobs"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise SearchError(f"hydra.sweeper.{key}={value} is not valid: expected an "
                                  f"integer >= 1.")
        metric = self.config.get("optimized_metric")
        if not metric:
            raise SearchError("a search needs the metric to optimise: set optimized_metric "
                              "(hparams_search=optuna sets val/acc_best).")
        space = parse_space(self.params, arguments)
        if not space.distributions:
            raise SearchError("the search space is empty: give hydra.sweeper.params, or "
                              "sweeps on the command line, e.g. 'optim.lr=interval(1e-4,1e-2)'.")
        check_space(space, self.compose)
        n_jobs = self.n_jobs
        if n_jobs > 1 and type(self.launcher).__name__ == "BasicLauncher":
            log.warning("hydra.sweeper.n_jobs=%d: Hydra's basic launcher runs jobs in this "
                        "process, one at a time; running trials one by one. For parallel "
                        "trials add hydra/launcher=joblib hydra.launcher.n_jobs=%d.",
                        n_jobs, n_jobs)
            n_jobs = 1
        settings = SearchSettings(
            sweep_dir=self.sweep_dir, study_name=self.study_name, direction=self.direction,
            storage=self.storage, n_trials=self.n_trials, pruner=self.pruner,
            pruning=self.pruning, sampler=self.sampler_cfg,
            max_epochs=int(self.config.trainer.max_epochs),
            folder_name_excludes=list(self.config.hydra.job.config.override_dirname.exclude_keys))
        search = Search(settings, space, str(metric), n_jobs, launch=self._launch_one,
                        announce_jobs=self.set_num_jobs)
        # the HParams experiment, once the search's own settings passed
        describe_search(self.config, self.sweep_dir)
        return search

    def _launch_one(self, overrides: list[str], num: int) -> Any:
        [ret] = self.launcher.launch([overrides], initial_job_idx=num)
        return ret
