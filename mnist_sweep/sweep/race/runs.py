"""A race's runs as its sweep folder holds them: which job folder is which (configuration,
seed), how each ended, and the job number a new run gets.

Job numbers are given in launch order and never reused. A job folder is recognised by the
overrides Hydra recorded in it (`.hydra/overrides.yaml`): a configuration's overrides plus
`seed=N`. So the same command with `hydra.sweep.dir=<folder>` finds every run it launched
before, counts the finished ones as results, and relaunches an unfinished one under its own
number, in its own folder, where the job continues from its checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_sweep.record.folders import job_folders, job_number, read_overrides
from mnist_sweep.record.status import FINISHED, StatusDamaged, read_record
from mnist_sweep.sweep.race.configs import SEED_KEY, Configuration
from mnist_sweep.sweep.refusals import refused_jobs

DAMAGED = "damaged"


@dataclass
class RaceRun:
    """One run of the race: a (configuration, seed) in its numbered job folder."""

    config: str
    seed: int
    num: int
    folder: Path
    status: str | None = None  # from status.json; None: the job has not recorded one
    value: float | None = None  # the race's metric, for a finished run
    test: float | None = None  # test/acc, reported beside the metric
    error: str | None = None

    @property
    def result(self) -> bool:
        """Whether this run counts as a result: finished, with a finite metric value."""
        return self.status == FINISHED and self.value is not None


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _split_seed(overrides: list[str]) -> tuple[int | None, tuple[str, ...]]:
    seed, rest = None, []
    for o in overrides:
        if _key(o) == SEED_KEY:
            try:
                seed = int(o.split("=", 1)[1])
            except (IndexError, ValueError):
                return None, ()
        else:
            rest.append(o)
    return seed, tuple(rest)


class Matcher:
    """Which configuration a job folder's overrides name: exactly the same overrides, else
    (a folder recorded with another data.root, say) the same ones apart from the keys that
    never change a run (hydra.job.config.override_dirname.exclude_keys)."""

    def __init__(self, configs: list[Configuration], quiet_keys: list[str]) -> None:
        self.quiet = set(quiet_keys)
        self.exact = {tuple(sorted(c.overrides)): c.name for c in configs}
        loose: dict[tuple[str, ...], list[str]] = {}
        for c in configs:
            loose.setdefault(self._loose(c.overrides), []).append(c.name)
        self.loose = {k: v[0] for k, v in loose.items() if len(v) == 1}

    def _loose(self, overrides: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(o for o in overrides if _key(o) not in self.quiet))

    def __call__(self, overrides: tuple[str, ...]) -> str | None:
        return self.exact.get(tuple(sorted(overrides))) or self.loose.get(self._loose(overrides))


def _metric(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def read_run(run: RaceRun, metric: str) -> RaceRun:
    """Refresh a run from its folder's status.json (and the sweep's refusal records)."""
    run.value = run.test = run.error = None
    refused = refused_jobs(run.folder.parent).get(run.num)
    if refused is not None:  # the folder's record is another run's
        run.status, run.error = "refused", refused["reason"]
        return run
    try:
        status = read_record(run.folder)  # damaged as the report and the plan see it
    except StatusDamaged as exc:
        run.status, run.error = DAMAGED, str(exc)
        return run
    if status is None:
        run.status = None
        return run
    run.status = status.get("status")
    run.error = status.get("error")
    if run.status == FINISHED:
        metrics = status.get("metrics") or {}
        run.value, run.test = _metric(metrics, metric), _metric(metrics, "test/acc")
        if run.value is None:
            run.error = f"finished without a value of {metric}"
    return run


@dataclass
class Found:
    """What a sweep folder holds for a race."""

    runs: dict[tuple[str, int], RaceRun]
    foreign: list[Path]  # job folders of no configuration of this race
    next_num: int  # the first number no folder uses


def scan(sweep_dir: Path, configs: list[Configuration], quiet_keys: list[str],
         metric: str) -> Found:
    """Every job folder of the sweep folder, read back."""
    match = Matcher(configs, quiet_keys)
    runs: dict[tuple[str, int], RaceRun] = {}
    foreign: list[Path] = []
    highest = -1
    for child in job_folders(sweep_dir):
        num = job_number(child.name)
        if num is None:
            continue
        highest = max(highest, num)
        overrides = read_overrides(child)
        if overrides is None:
            if (child / "status.json").is_file():
                foreign.append(child)
            continue  # a folder Hydra made but never wrote into: no run of anything
        seed, rest = _split_seed(overrides)
        name = match(rest) if seed is not None else None
        if name is None:
            foreign.append(child)
            continue
        run = read_run(RaceRun(name, seed, num, child), metric)
        earlier = runs.get((name, seed))
        # two folders of one run (copied by hand): the one holding a result counts
        if earlier is None or (run.result and not earlier.result):
            runs[(name, seed)] = run
    return Found(runs, foreign, highest + 1)
