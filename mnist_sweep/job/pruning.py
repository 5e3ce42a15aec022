"""A job that is a trial of a search reports to its Optuna trial after every epoch, and
stops when the study's pruner says the trial is behind.

The trial lives in the study's storage, which the search process and the job open
separately (the job may run in another process or on another host), so the job reopens it
by number. The pruner is rebuilt from the spec the search stored with the study.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from mnist_sweep.config import RunConfig

log = logging.getLogger(__name__)


class TrialPruned(Exception):
    """The pruner stopped this job after `epoch` epochs; a final end, not a failure."""

    def __init__(self, epoch: int, value: float) -> None:
        super().__init__(f"pruned after epoch {epoch} ({value:.4f})")
        self.epoch, self.value = epoch, value


class TrialPruning(pl.Callback):
    """Reports `metric` (step = epochs trained) and asks should_prune() after every epoch."""

    def __init__(self, trial: Any, metric: str, job_dir: Path,
                 earlier: dict[int, float]) -> None:
        self.trial, self.metric, self.job_dir = trial, metric, job_dir
        self.earlier = earlier  # steps a replaced trial reported (a resumed job skips them)
        self.pruned: TrialPruned | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.trial.set_user_attr("job_dir", str(self.job_dir))
        for step, value in sorted(self.earlier.items()):
            if step <= trainer.current_epoch:  # epochs the checkpoint already holds
                self.trial.report(value, step)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if value is None or trainer.sanity_checking:
            return
        value, step = float(value), trainer.current_epoch + 1
        if not math.isfinite(value):
            return
        self.trial.report(value, step)
        if self.trial.should_prune():
            self.pruned = TrialPruned(step, value)
            trainer.should_stop = True
            # TensorBoard's HParams statuses know no "stopped early": a scalar says it
            pl_module.log("search/pruned_at_epoch", float(step), on_epoch=True)


def trial_pruning(cfg: RunConfig, job_dir: Path) -> TrialPruning | None:
    """The callback for a job that is a trial of a search, else None.

    A job whose trial has already ended (its command run again by hand) trains without
    reporting: an ended trial takes no more values.
    """
    if cfg.search_trial is None or not cfg.optimized_metric:
        return None
    import optuna
    from optuna.trial import TrialState

    from mnist_sweep.job.trial import (
        PRUNER_ATTR,
        RETRY_OF,
        frozen_trial,
        live_trial,
        make_pruner,
        open_storage,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ident = cfg.search_trial
    study = optuna.load_study(study_name=ident.study_name, storage=open_storage(ident.storage),
                              sampler=optuna.samplers.RandomSampler())
    study.pruner = make_pruner(study.user_attrs.get(PRUNER_ATTR))
    frozen = frozen_trial(study, ident.number)
    if frozen.state != TrialState.RUNNING:
        log.warning("trial %d of study %s has already ended (%s): training without reporting "
                    "to it", ident.number, ident.study_name, frozen.state.name.lower())
        return None
    earlier: dict[int, float] = {}
    if frozen.user_attrs.get(RETRY_OF) is not None:
        earlier = dict(frozen_trial(study, int(frozen.user_attrs[RETRY_OF])).intermediate_values)
    return TrialPruning(live_trial(study, ident.number), cfg.optimized_metric, job_dir, earlier)
