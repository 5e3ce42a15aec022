"""What matters: which value of each swept setting is better than a reference value, and
how sure that is.

Two kinds of noise separate two runs' test accuracies: the seed (initialisation, batch order,
dropout), which only repeating the run with other seeds shows, and the test set (10,000
images are a sample too), which the per-image predictions show. Each is tested on its own:

- seed level: the difference in test accuracy between a value and the reference value, in
  percentage points, over runs that differ only in that setting. Runs are paired by seed
  within each combination of the other swept settings (a factorial sweep compares like with
  like), and the pairs of all combinations are combined into one t-test of the mean
  difference; without matching seeds, Welch's test of one combination's runs, or a t-test
  over the combinations' mean differences.
- image level: for each such pair of runs evaluated on the same test images (same
  fingerprint), McNemar's exact test on the images one run gets right and the other wrong.

p-values are adjusted with Holm's method within each family (the section's comparisons; the
combinations of one comparison; the image-level pairs of one comparison), and every interval
is at the confidence level Holm's procedure tested its row at, so that it excludes 0 exactly
when the adjusted p is below 5% (`holm_levels`).

Each comparison (a value against the reference) has one verdict about the configuration,
from the seed level (`Comparison`): `better`, `worse` or `not distinguishable` at 5%, or `not
tested` where no seed spread was seen (one seed per value). The image level is evidence about
the trained networks compared, not about the configuration: another seed may reverse it. A
seed-level difference that is not resolved gets the number of seeds that would resolve a
difference of its size with 80% power, from the spread the seeds showed. Distributions and
tests are scipy's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from mnist_sweep.record.settings import as_typed
from mnist_sweep.report.read import Run
from mnist_sweep.report.stats import describe, schema_defaults, used, varying_keys

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 1000  # beyond this, "more than 1,000 seeds": a difference too small to chase
BETTER, WORSE, TIE = "better", "worse", "not distinguishable"
UNTESTED = "not tested"  # no test: one seed per value, or no spread among the differences
# what a seed-level row can be based on
PAIRED, WELCH, OVER_CELLS, ONE_PAIR = ("paired by seed", "Welch, unpaired",
                                       "over combinations", "one pair")


@dataclass
class SeedLevel:
    """One value against the reference value, over seeds (points of test accuracy)."""

    key: str
    value: str
    reference: str
    within: str  # the combination of other settings, or "all" for the combined row
    method: str
    n: int  # pairs (paired), runs per side (Welch) or combinations (over combinations)
    diff: float  # value minus reference, points
    low: float | None = None
    high: float | None = None
    p: float | None = None
    p_holm: float | None = None
    seeds_needed: int | None = None  # None: resolved, or no spread to go by
    spread: float | None = None  # std of the differences (paired) or pooled std, points
    confidence: float | None = None  # the level of (low, high): Holm's for this row
    # (low, high) at a confidence level: scipy's interval of the test that gives p
    interval_at: Callable[[float], tuple[float, float]] | None = field(
        default=None, repr=False, compare=False)

    @property
    def verdict(self) -> str:
        return verdict(self.diff, self.p_holm)

    @property
    def one_seed(self) -> bool:
        """No seed spread on at least one side: the seeds cannot answer."""
        return self.method == ONE_PAIR or (self.method == WELCH and self.p is None)


@dataclass
class ImageLevel:
    """One pair of runs (same seed, same other settings) on the same test images."""

    key: str
    value: str
    reference: str
    within: str
    seed: str
    images: int
    reference_only: int  # images the reference run gets right and the other wrong
    value_only: int  # images the other run gets right and the reference wrong
    low: float
    high: float
    p: float
    p_holm: float | None = None
    confidence: float = 1 - ALPHA  # the level of (low, high): Holm's for this pair
    interval_at: Callable[[float], tuple[float, float]] | None = field(
        default=None, repr=False, compare=False)

    @property
    def diff(self) -> float:
        return 100.0 * (self.value_only - self.reference_only) / self.images

    @property
    def verdict(self) -> str:
        """Whether these two trained networks differ on these test images (at 5%, Holm):
        evidence about the networks, not a verdict about the configuration."""
        return verdict(self.diff, self.p_holm)

    @property
    def differ(self) -> bool:
        return self.verdict in (BETTER, WORSE)


@dataclass
class Comparison:
    """One value of a setting against the reference value, with its one verdict."""

    key: str
    value: str
    reference: str
    answer: SeedLevel  # the comparison's own row: `all`, or its only combination
    cells: list[SeedLevel]  # its combinations, where there are several
    images: list[ImageLevel]  # its pairs of runs on the same test images

    @property
    def verdict(self) -> str:
        """About the configuration, from the seeds alone."""
        return self.answer.verdict

    @property
    def images_differ(self) -> list[ImageLevel]:
        return [r for r in self.images if r.differ]


@dataclass
class WhatMatters:
    seed_level: list[SeedLevel] = field(default_factory=list)
    image_level: list[ImageLevel] = field(default_factory=list)
    # why pairs were left out of the image level (no predictions, other test images)
    image_notes: list[str] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)  # the swept settings compared

    @property
    def empty(self) -> bool:
        return not self.seed_level and not self.image_level

    @property
    def comparisons(self) -> list[Comparison]:
        """Each value against its reference, in the order compared, with its rows."""
        out: dict[tuple[str, str], Comparison] = {}
        for row in self.seed_level:
            if row.within == "all":
                out[(row.key, row.value)] = Comparison(row.key, row.value, row.reference,
                                                       row, [], [])
        for row in self.seed_level:
            if row.within != "all":
                out[(row.key, row.value)].cells.append(row)
        for row in self.image_level:
            if (row.key, row.value) in out:
                out[(row.key, row.value)].images.append(row)
        return list(out.values())

    @property
    def family_size(self) -> int:
        """The comparisons tested over seeds: the family the verdicts are adjusted over."""
        return sum(r.within == "all" and r.p is not None and bool(np.isfinite(r.p))
                   for r in self.seed_level)


def verdict(diff: float, p_holm: float | None) -> str:
    if p_holm is None or not np.isfinite(p_holm):
        return UNTESTED
    if p_holm >= ALPHA:
        return TIE
    return BETTER if diff > 0 else WORSE


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment (scipy has Benjamini-Hochberg/Yekutieli only): the i-th
    smallest of m p-values times (m - i + 1), kept non-decreasing, at most 1."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted.tolist()


def holm_levels(pvalues: list[float]) -> list[float]:
    """The confidence level of each p-value's interval that agrees with Holm's verdict: the
    level Holm's step-down procedure tested it at. Sorted by p, the i-th of m is tested at
    ALPHA / (m - i + 1) while every smaller one was rejected; the first that is not stops
    the procedure, and it and every larger one keep that step's level. An interval at
    1 - ALPHA / k excludes 0 exactly when p < ALPHA / k, so exactly the rejected rows
    (Holm-adjusted p below ALPHA) get an interval without 0."""
    p = np.asarray(pvalues, dtype=float)
    levels = np.empty_like(p)
    stop: int | None = None
    for step, i in enumerate(np.argsort(p, kind="stable")):
        k = len(p) - step
        if stop is None and p[i] * k >= ALPHA:
            stop = k
        levels[i] = 1.0 - ALPHA / (stop if stop is not None else k)
    return levels.tolist()


def seeds_for_power(diff: float, spread: float, paired: bool) -> int | None:
    """The fewest seeds per value for which a two-sided t-test at 5% detects a true
    difference `diff` with 80% power, given the seed spread `spread` (same units): the
    noncentral t distribution of the paired (or two-sample) t statistic."""
    if spread <= 0 or diff == 0 or not np.isfinite(spread):
        return None

    def power(n: int) -> float:
        df = n - 1 if paired else 2 * n - 2
        nc = abs(diff) / spread * (np.sqrt(n) if paired else np.sqrt(n / 2))
        crit = sps.t.ppf(1 - ALPHA / 2, df)
        # the far tail underflows to nan in scipy's nct.cdf for large nc: it is 0 there
        return float(sps.nct.sf(crit, df, nc) + np.nan_to_num(sps.nct.cdf(-crit, df, nc)))

    if power(MAX_SEEDS) < POWER:
        return MAX_SEEDS + 1
    low, high = 1, MAX_SEEDS  # power rises with n: bisect for the first n that reaches it
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if power(middle) >= POWER else (middle, high)
    return high


def reference_value(key: str, values: list[str]) -> str:
    """The schema's default where it is one of the values swept, else the first value."""
    default = schema_defaults().get(key)
    return default if default in values else values[0]


def _seed(run: Run) -> str:
    return as_typed(run.config.get("seed"))


def _cells(runs: list[Run], key: str, others: list[str], sides: tuple[str, str]
           ) -> dict[tuple, dict[str, dict[str, Run]]]:
    """Runs of the two values, by combination of the other swept settings, then by seed
    (the first run of a seed where one was repeated)."""
    cells: dict[tuple, dict[str, dict[str, Run]]] = {}
    for run in runs:
        value = as_typed(run.config[key])
        if value not in sides:
            continue
        # a record that does not hold a setting ran at its default (one it predates)
        cell = tuple(as_typed(run.config[k]) if used(run, k) else
                     None if k in run.config else schema_defaults().get(k) for k in others)
        cells.setdefault(cell, {s: {} for s in sides})[value].setdefault(_seed(run), run)
    return {c: sides_ for c, sides_ in cells.items() if all(sides_.values())}


def _seed_order(seed: str) -> tuple[int, float, str]:
    try:
        return (0, float(seed), seed)
    except ValueError:
        return (1, 0.0, seed)


def _acc(run: Run) -> float:
    return 100.0 * float(run.test_acc)


def _paired_row(base: dict, diffs: list[float]) -> SeedLevel:
    if len(diffs) == 1:
        return SeedLevel(**base, method=ONE_PAIR, n=1, diff=diffs[0])
    spread = float(np.std(diffs, ddof=1))
    mean = float(np.mean(diffs))
    if spread == 0:  # every seed moved by the same amount: no spread to test against
        return SeedLevel(**base, method=PAIRED, n=len(diffs), diff=mean, spread=0.0)
    res = sps.ttest_1samp(diffs, 0.0)
    return SeedLevel(**base, method=PAIRED, n=len(diffs), diff=mean, p=float(res.pvalue),
                     spread=spread, interval_at=_scipy_interval(res))


def _scipy_interval(res) -> Callable[[float], tuple[float, float]]:
    def at(confidence: float) -> tuple[float, float]:
        ci = res.confidence_interval(confidence)
        return float(ci.low), float(ci.high)
    return at


def _unpaired_row(base: dict, cells: list[dict[str, dict[str, Run]]], value: str,
                  reference: str) -> SeedLevel:
    if len(cells) == 1:
        a = [_acc(r) for r in cells[0][value].values()]
        b = [_acc(r) for r in cells[0][reference].values()]
        if len(a) < 2 or len(b) < 2:  # a side without seed spread: a difference, no test
            return SeedLevel(**base, method=WELCH, n=min(len(a), len(b)),
                             diff=float(np.mean(a) - np.mean(b)))
        res = sps.ttest_ind(a, b, equal_var=False)
        pooled = float(np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2))
        return SeedLevel(**base, method=WELCH, n=min(len(a), len(b)),
                         diff=float(np.mean(a) - np.mean(b)), p=float(res.pvalue),
                         spread=pooled, interval_at=_scipy_interval(res))
    diffs = [float(np.mean([_acc(r) for r in c[value].values()])
                   - np.mean([_acc(r) for r in c[reference].values()])) for c in cells]
    row = _paired_row(base, diffs)
    row.method = OVER_CELLS
    row.spread = None  # a spread over combinations says nothing about seeds
    return row


def _within(cell_runs: list[Run], key: str) -> list[str]:
    """Each combination named by what differs between the combinations."""
    return describe(cell_runs, skip={key, "seed"})


def what_matters(runs: Iterable[Run]) -> WhatMatters:
    """Every swept setting with two or more values, each value against the reference."""
    done = [r for r in runs if r.finished and r.test_acc is not None]
    out = WhatMatters()
    keys = varying_keys(done, skip={"seed"})
    for key in keys:
        others = [k for k in keys if k != key]
        values = list(dict.fromkeys(as_typed(r.config[key]) for r in done if used(r, key)))
        reference = reference_value(key, values)
        for value in values:
            if value == reference:
                continue
            cells = _cells([r for r in done if used(r, key)], key, others, (value, reference))
            if not cells:
                continue  # no two runs differ in this setting alone
            if key not in out.settings:
                out.settings.append(key)
            _compare(out, key, value, reference, list(cells.values()))
    _adjust(out)
    return out


def _compare(out: WhatMatters, key: str, value: str, reference: str,
             cells: list[dict[str, dict[str, Run]]]) -> None:
    names = (_within([next(iter(c[reference].values())) for c in cells], key)
             if len(cells) > 1 else ["all"])
    pairs_by_cell = [[(c[reference][s], c[value][s])
                      for s in sorted(c[value], key=_seed_order) if s in c[reference]]
                     for c in cells]
    rows: list[SeedLevel] = []
    if any(pairs_by_cell):
        diffs_all = []
        for name, pairs in zip(names, pairs_by_cell, strict=True):
            diffs = [_acc(v) - _acc(r) for r, v in pairs]
            diffs_all += diffs
            if diffs and len(cells) > 1:
                rows.append(_paired_row(dict(key=key, value=value, reference=reference,
                                             within=name), diffs))
        rows.append(_paired_row(dict(key=key, value=value, reference=reference,
                                     within="all"), diffs_all))
    else:
        rows.append(_unpaired_row(dict(key=key, value=value, reference=reference,
                                       within="all"), cells, value, reference))
    out.seed_level += rows
    for name, pairs in zip(names, pairs_by_cell, strict=True):
        for ref_run, run in pairs:
            row = _image_level(key, value, reference, name, ref_run, run, out.image_notes)
            if row:
                out.image_level.append(row)


def _image_level(key: str, value: str, reference: str, within: str, ref_run: Run,
                 run: Run, notes: list[str]) -> ImageLevel | None:
    a, b = ref_run.predictions, run.predictions
    if a is None or b is None:
        missing = [r.job for r in (ref_run, run) if r.predictions is None]
        notes.append(f"{', '.join(missing)}: no per-image predictions")
        return None
    if a.test_set != b.test_set:
        notes.append(f"{ref_run.job} and {run.job}: evaluated on different test images")
        return None
    reference_only = int(np.sum(a.correct & ~b.correct))
    value_only = int(np.sum(~a.correct & b.correct))
    discordant = reference_only + value_only
    images = len(a.labels)
    if discordant == 0:
        return ImageLevel(key, value, reference, within, _seed(run), images, 0, 0, 0.0, 0.0,
                          1.0, interval_at=lambda confidence: (0.0, 0.0))
    res = sps.binomtest(value_only, discordant, 0.5)
    # the difference is (value_only - reference_only) / images = discordant/images * (2q - 1)
    scale = 100.0 * discordant / images

    def at(confidence: float) -> tuple[float, float]:
        # Clopper-Pearson's interval: at any level it excludes q = 0.5 exactly when the
        # exact two-sided p (symmetric under q = 0.5) is below 1 - level
        ci = res.proportion_ci(confidence, method="exact")
        return scale * (2 * ci.low - 1), scale * (2 * ci.high - 1)

    low, high = at(1 - ALPHA)
    return ImageLevel(key, value, reference, within, _seed(run), images, reference_only,
                      value_only, low, high, float(res.pvalue), interval_at=at)


def _adjust(out: WhatMatters) -> None:
    """Holm's correction over each family of tests, each row's interval at the level that
    agrees with it (holm_levels), then seeds to resolve what is not resolved.

    Families: the combined seed-level rows of the whole section (one per setting and value:
    the section's answers); the per-combination rows of one comparison; the image-level
    pairs of one comparison (one per seed and combination)."""
    families: dict[tuple, list] = {}
    for row in out.seed_level:
        family = ("seeds",) if row.within == "all" else ("cells", row.key, row.value)
        families.setdefault(family, []).append(row)
    for row in out.image_level:
        families.setdefault(("images", row.key, row.value), []).append(row)
    for rows in families.values():
        tested = [r for r in rows if r.p is not None and np.isfinite(r.p)]
        if tested:
            pvalues = [r.p for r in tested]
            for row, adjusted, level in zip(tested, holm(pvalues), holm_levels(pvalues),
                                            strict=True):
                row.p_holm, row.confidence = adjusted, level
                if row.interval_at is not None:
                    row.low, row.high = row.interval_at(level)
    for row in out.seed_level:
        if row.verdict == TIE and row.spread is not None:
            row.seeds_needed = seeds_for_power(row.diff, row.spread, row.method == PAIRED)
