"""One invocation of a search: open (or continue) the study, run trials until the study
holds n_trials, write the search's results beside the jobs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from hydra.core.utils import JobReturn
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.trial import TrialState

from mnist_sweep.job.trial import (
    ERROR,
    FOLDER_NUM,
    JOB_DIR,
    OWNER,
    PRUNER_ATTR,
    SearchError,
    frozen_trial,
    make_pruner,
    open_storage,
)
from mnist_sweep.record.folders import folder_override
from mnist_sweep.sweep.refusals import refused_jobs
from mnist_sweep.sweep.search.space import SearchSpace, format_value
from mnist_sweep.sweep.search.study import pruner_spec, storage_location
from mnist_sweep.sweep.search.trials import (
    counts_toward_budget,
    job_outcome,
    owner_id,
    settle_lost_trials,
)

log = logging.getLogger("mnist_sweep")
RESULTS_FILE = "optimization_results.yaml"
TRIAL_KEY = "search_trial"  # the job's config node naming its trial (config.SearchTrialConfig)


@dataclass(frozen=True)
class SearchSettings:
    """What the search needs of its sweeper's settings (conf/hydra/sweeper/optuna.yaml)
    and of the sweep's config."""

    sweep_dir: Path
    study_name: str
    direction: str
    storage: str | None
    n_trials: int
    pruner: str
    pruning: dict[str, Any]
    sampler: Any  # the sampler's config node, or None for Optuna's default
    max_epochs: int
    folder_name_excludes: list[str]  # hydra.job.config.override_dirname.exclude_keys


# launch(overrides, job number) -> the job's return; announce(n): the sweep's job count
Launch = Callable[[list[str], int], JobReturn]


class Search:
    def __init__(self, settings: SearchSettings, space: SearchSpace, metric: str,
                 n_jobs: int, launch: Launch, announce_jobs: Callable[[int], None]) -> None:
        self.settings, self.space, self.metric, self.n_jobs = settings, space, metric, n_jobs
        self.launch, self.announce_jobs = launch, announce_jobs
        self.location = storage_location(settings.storage, settings.sweep_dir)
        self.pruner_spec = pruner_spec(settings.pruner, settings.pruning, settings.max_epochs)
        self.study = self._open_study()
        self._lock = threading.Lock()
        self._to_ask = 0
        self._errors: list[BaseException] = []

    # ---- the study -------------------------------------------------------------------

    def _open_study(self) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(self.location)
        s = self.settings
        try:
            existing = optuna.load_study(study_name=s.study_name, storage=storage)
        except KeyError:
            existing = None
        if existing is not None and existing.direction.name.lower() != s.direction:
            raise SearchError(
                f"study {s.study_name} in {self.location} was created to "
                f"{existing.direction.name.lower()}, not to {s.direction}: use another "
                f"hydra.sweeper.study_name or hydra.sweep.dir.")
        done = len(existing.trials) if existing is not None else 0
        study = optuna.create_study(
            study_name=s.study_name, storage=storage, direction=s.direction,
            load_if_exists=True, sampler=self._sampler(done),
            pruner=make_pruner(self.pruner_spec))
        study.set_user_attr(PRUNER_ATTR, self.pruner_spec)
        return study

    def _sampler(self, done: int) -> optuna.samplers.BaseSampler | None:
        """The configured sampler; a continued study shifts its seed by the number of trials
        it holds, or its random start-up trials would repeat the first invocation's."""
        cfg = self.settings.sampler
        if cfg is None:
            return None
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        if done and cfg.get("seed") is not None:
            cfg.seed = int(cfg.seed) + done
        try:
            return instantiate(cfg)
        except Exception as exc:
            raise SearchError(f"hydra.sweeper.sampler: {exc}") from None

    # ---- running trials ----------------------------------------------------------------

    def run(self) -> list[Any]:
        for note in settle_lost_trials(self.study, self.metric):
            log.warning(note)
        trials = self.study.get_trials(deepcopy=False)
        used = sum(counts_toward_budget(t) for t in trials)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        self._to_ask = max(0, self.settings.n_trials - used)
        # job lines read "[job k of N]", k the folder number: N covers trials asked before
        self.announce_jobs(len(trials) + max(0, self._to_ask - waiting))
        log.info("search: study %s in %s: %d trial(s) held, %d to run, pruner %s, %d at a "
                 "time", self.settings.study_name, self.location, used, self._to_ask,
                 self.pruner_spec["name"], self.n_jobs)
        if self.n_jobs == 1:
            self._worker()
        else:
            threads = [threading.Thread(target=self._guarded_worker, daemon=True,
                                        name=f"search-worker-{k}") for k in range(self.n_jobs)]
            for t in threads:
                t.start()
            try:
                for t in threads:
                    t.join()
            except KeyboardInterrupt:  # the jobs' own processes got Ctrl-C too and saved
                log.error("search interrupted. Run the same command with %s to continue "
                          "it: its running trials are asked again in their folders.",
                          folder_override("hydra.sweep.dir", self.settings.sweep_dir))
                raise SystemExit(130) from None
            if self._errors:
                raise self._errors[0]
        return self._finish()

    def _guarded_worker(self) -> None:
        try:
            self._worker()
        except BaseException as exc:  # a thread's exception would otherwise vanish
            with self._lock:
                self._errors.append(exc)
                self._to_ask = 0

    def _worker(self) -> None:
        while True:
            with self._lock:
                if self._to_ask <= 0:
                    return
                self._to_ask -= 1
                trial = self.study.ask(self.space.distributions)
                trial.set_user_attr(OWNER, owner_id())
                folder_num = trial.user_attrs.get(FOLDER_NUM)
                if folder_num is None:
                    folder_num = trial.number
                    trial.set_user_attr(FOLDER_NUM, folder_num)
            self._run_trial(trial, int(folder_num))

    def _overrides(self, trial: optuna.trial.Trial) -> list[str]:
        excluded = list(self.settings.folder_name_excludes)
        if TRIAL_KEY not in excluded:
            excluded.append(TRIAL_KEY)
        identity = {"storage": self.location, "study_name": self.study.study_name,
                    "number": trial.number}
        return [
            *self.space.fixed_overrides(),
            *(f"{k}={format_value(v)}" for k, v in trial.params.items()),
            f"++{TRIAL_KEY}={format_value(identity)}",
            # the trial's identity stays out of its folder name
            "hydra.job.config.override_dirname.exclude_keys="
            f"{format_value([str(k) for k in excluded])}",
        ]

    def _run_trial(self, trial: optuna.trial.Trial, folder_num: int) -> None:
        job_dir: Path | None = None
        returned: Any = None
        try:
            ret = self.launch(self._overrides(trial), folder_num)
            if ret.hydra_cfg is not None:
                job_dir = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
            returned = ret._return_value if ret.status.name == "COMPLETED" else None
            launch_error = (None if ret.status.name == "COMPLETED"
                            else f"{type(ret._return_value).__name__}: {ret._return_value}")
        except Exception as exc:  # the launcher itself failed (a worker died, a queue error)
            launch_error = f"{type(exc).__name__}: {exc}"
            log.error("trial %d: its launcher failed: %s", trial.number, launch_error)
        with self._lock:
            # the job marks its trial with its folder when training starts (job/pruning.py):
            # without that mark (a job refused at its start) the folder's status.json is
            # another run's record, never this trial's result
            trained = JOB_DIR in frozen_trial(self.study, trial.number).user_attrs
            state, value, error = job_outcome(job_dir, returned, self.metric,
                                              own_folder=trained)
            if job_dir is not None:
                trial.set_user_attr(JOB_DIR, str(job_dir))
            if state == TrialState.FAIL:
                refused = refused_jobs(self.settings.sweep_dir).get(folder_num)
                trial.set_user_attr(ERROR, launch_error or (
                    f"refused when it started: {refused['reason']}" if refused else error))
            self.study.tell(trial, value, state=state)

    # ---- the end -----------------------------------------------------------------------

    def _finish(self) -> list[Any]:
        from mnist_sweep.sweep.search.plot import write_search_plot

        trials = self.study.get_trials(deepcopy=False)
        counts = {s: sum(t.state == s for t in trials) for s in
                  (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
        log.info("search: %d complete, %d pruned, %d failed; epochs trained: %d",
                 counts[TrialState.COMPLETE], counts[TrialState.PRUNED],
                 counts[TrialState.FAIL], sum(epochs_of(t) for t in trials))
        sweep_dir = self.settings.sweep_dir
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_search_plot(trials, self.study.direction, self.metric, sweep_dir / "search.png")
        results: dict[str, Any] = {"name": "optuna", "study_name": self.study.study_name,
                                   "storage": self.location}
        if counts[TrialState.COMPLETE]:
            best = self.study.best_trial
            results |= {"best_trial": best.number, "best_value": best.value,
                        "best_params": dict(best.params),
                        "best_job_dir": best.user_attrs.get(JOB_DIR)}
            log.info("search: best trial %d: %s=%.4f %s", best.number, self.metric, best.value,
                     " ".join(f"{k}={format_value(v)}" for k, v in best.params.items()))
        else:
            log.warning("search: no trial completed; the report lists each trial's error")
        (sweep_dir / RESULTS_FILE).write_text(yaml.safe_dump(results, sort_keys=False))
        log.info("search: inspect it with `optuna-dashboard %s`", self.location)
        return [results]


def epochs_of(trial: optuna.trial.FrozenTrial) -> int:
    """Epochs a trial trained: its last reported step (a step is an epoch)."""
    return max(trial.intermediate_values, default=0)
