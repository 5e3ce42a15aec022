"""One verdict per comparison, about the configuration, and plots of configurations.

The "what matters" section gives each comparison one verdict, from the seeds; the test on the
same test images is shown as evidence about the two trained networks, worded so, and a
comparison that one seed per value cannot answer says what to run. Its intervals are at the
confidence level of the Holm-adjusted test that gives the verdict, so an interval excludes 0
exactly when the verdict is `better` or `worse`. val_acc.png draws configurations (the seed
mean and its min-to-max band, the 10 best), and the results document counts pruned search
trials in one line instead of listing them as configurations without a finished run.

On real tiny sweeps run in-process, on the project's own records (docs/results.csv,
docs/results.md) and on synthetic runs where an exact outcome is needed."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from matplotlib.colors import to_rgb

from mnist_sweep.job.predictions import Predictions
from mnist_sweep.report.build import results_from_csv
from mnist_sweep.report.compare import BETTER, TIE, WORSE, what_matters
from mnist_sweep.report.plots import val_acc_figure
from mnist_sweep.report.read import Run, read_folder
from mnist_sweep.report.render import matters_markdown, results_markdown
from mnist_sweep.report.stats import describe
from tests.conftest import report_in_process, seed_one_jobs
from tests.test_report import md_table

REPO = Path(__file__).resolve().parents[1]
VERDICTS = ("better", "worse", "not distinguishable", "not tested")
WHAT_TO_RUN = "1 seed each: run seed=1,2,3, or race=seeds"
NOT_EVIDENCE = "that is not evidence about the configuration"


@pytest.fixture(scope="module")
def sweep(heads_seeds_sweep) -> tuple[Path, subprocess.CompletedProcess]:
    """head=gmp,gap with seeds 1 and 2: four real jobs (conftest.heads_seeds_sweep)."""
    return heads_seeds_sweep


@pytest.fixture(scope="module")
def one_seed(sweep, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Path, subprocess.CompletedProcess]:
    """The seed-1 jobs alone, as `head=gmp,gap -m` leaves them, reported by the real CLI."""
    folder = seed_one_jobs(sweep[0], tmp_path_factory.mktemp("one_seed") / "sweep")
    proc = report_in_process([folder])
    assert proc.returncode == 0, proc.stderr
    return folder, proc


def verdict_lines(text: str) -> list[str]:
    """The lines that state a comparison's verdict in words: `head=gap against head=gmp:`."""
    return [line for line in text.splitlines()
            if " against " in line and any(f": {v}" in line.replace("**", "")
                                           for v in VERDICTS)]


# ---- one verdict per comparison ------------------------------------------------------------

def test_one_seed_each_gets_one_verdict_and_what_to_run(one_seed) -> None:
    """`head=gmp,gap -m` (one seed each): one verdict about the configuration, from the
    seeds (which cannot give one here), the image-level test as evidence about these two
    networks, and what to run next: in summary.md and in the terminal."""
    folder, proc = one_seed
    text = (folder / "summary.md").read_text()
    for where in (text, proc.stdout):
        line, = verdict_lines(where)  # one comparison, one verdict
        plain = line.replace("**", "")
        assert plain.lstrip("- ").startswith("head=gap against head=gmp: not tested"), line
        assert WHAT_TO_RUN in plain
        assert "these two trained networks" in plain and "McNemar p" in plain
        assert "better" not in plain and "worse" not in plain
    seeds = md_table(text, "### Over seeds")
    assert [r["verdict"] for r in seeds] == ["not tested"]
    images = md_table(text, "### On the same test images")
    assert "verdict" not in images[0]  # evidence about the networks, not a second verdict
    assert images[0]["these two trained networks"] in (
        "differ on these test images", "not distinguishable on these test images")


def test_seeds_give_the_one_verdict_of_a_factorial_sweep(sweep) -> None:
    sweep_dir, proc = sweep
    text = (sweep_dir / "summary.md").read_text()
    line, = verdict_lines(text)
    assert line.replace("**", "").lstrip("- ").startswith("head=gap against head=gmp: ")
    seeds = md_table(text, "### Over seeds")
    assert [r["within"] for r in seeds] == ["all"]
    verdict = seeds[0]["verdict"]
    assert verdict in ("better", "worse", "not distinguishable") and f": {verdict}" in (
        line.replace("**", ""))
    images = md_table(text, "### On the same test images")
    assert len(images) == 2 and all("verdict" not in r for r in images)
    assert line.replace("**", "") .lstrip("- ") in proc.stdout


def predictions(correct: np.ndarray) -> Predictions:
    labels = np.arange(len(correct), dtype=np.uint8) % 10
    return Predictions(np.where(correct, labels, (labels + 1) % 10).astype(np.uint8),
                       labels, "sha256:same")


def run(acc: float, seed: int, job: int, head: str = "gmp", preds: Predictions | None = None,
        **settings) -> Run:
    config = {"model.head": head, "data.name": "mnist", "seed": seed, **settings}
    return Run(sweep=Path("sweep"), job=f"{job}_job", config=config, status="finished",
               error=None, command=None, params=1000, val_acc_best=None, test_acc=acc,
               test_loss=None, epochs_completed=1, sec_per_epoch=None, predictions=preds,
               test_images=None if preds is None else len(preds.labels))


def test_image_level_difference_is_evidence_about_the_networks_only() -> None:
    """One seed each, the networks far apart on the same images: McNemar says these two
    networks differ; the comparison's verdict stays the seeds' (none, with one seed)."""
    n = 10_000
    ref, new = np.ones(n, dtype=bool), np.ones(n, dtype=bool)
    ref[:40] = False  # only the reference misses these: gap right on 40 more
    runs = [run(ref.mean(), 1, 0, "gmp", predictions(ref)),
            run(new.mean(), 1, 1, "gap", predictions(new))]
    matters = what_matters(runs)
    assert matters.image_level[0].p < 1e-10
    text = "\n".join(matters_markdown(matters))
    line, = verdict_lines(text)
    plain = line.replace("**", "")
    assert "head=gap against head=gmp: not tested" in plain and WHAT_TO_RUN in plain
    assert (f"these two trained networks differ on these test images (McNemar p < 0.001); "
            f"{NOT_EVIDENCE}") in plain
    row, = md_table(text, "### On the same test images")
    assert row["these two trained networks"] == "differ on these test images"
    assert "better" not in " ".join(row.values())


def test_an_unresolved_difference_says_how_many_seeds() -> None:
    """Three seeds that do not resolve a difference: `not distinguishable`, and the seeds per
    value that would, as a sweep to run."""
    matters = what_matters([run(a, s, s, "gmp") for s, a in ((1, .9910), (2, .9930), (3, .9920))]
                           + [run(a, s, 3 + s, "gap") for s, a in ((1, .9925), (2, .9922),
                                                                   (3, .9931))])
    row, = matters.seed_level
    assert row.verdict == TIE and row.seeds_needed and row.seeds_needed > 3
    line, = verdict_lines("\n".join(matters_markdown(matters)))
    assert ": not distinguishable" in line.replace("**", "")
    assert f"seed=range(1,{row.seeds_needed + 1})" in line and "race=seeds" in line


# ---- intervals agree with verdicts ------------------------------------------------------------

def factorial(rng: np.random.Generator, effects: dict[str, float], seeds: int = 3,
              sd: float = 0.0012) -> list[Run]:
    """head x filters x dropout, each second value shifting accuracy by its effect
    (fractions), seeds paired; every run its own seed noise."""
    runs = []
    for head in ("gmp", "gap"):
        for filters in (16, 32):
            for dropout in (0.1, 0.2):
                shift = (effects["head"] * (head == "gap") + effects["filters"] * (filters == 32)
                         + effects["dropout"] * (dropout == 0.2))
                for seed in range(1, seeds + 1):
                    runs.append(run(0.99 + shift + rng.normal(0, sd), seed, len(runs), head,
                                    **{"model.filters": filters, "model.dropout": dropout}))
    return runs


def excludes_zero(row) -> bool:
    return row.low is not None and (row.low > 0 or row.high < 0)


def test_intervals_agree_with_verdicts_over_many_sweeps() -> None:
    """Every row's interval excludes 0 exactly when its Holm-adjusted p gives `better` or
    `worse`; with the unadjusted 95% interval, rows that are significant before the
    adjustment and not after it would contradict their verdict."""
    rng = np.random.default_rng(11)
    checked = unadjusted_only = 0
    for _ in range(60):
        matters = what_matters(factorial(rng, {"head": 0.0006, "filters": 0.0008,
                                               "dropout": 0.0}))
        for row in matters.seed_level:
            if row.p_holm is None:
                continue
            checked += 1
            assert excludes_zero(row) == (row.verdict in (BETTER, WORSE)), row
            unadjusted_only += row.p < 0.05 <= row.p_holm
    assert checked > 400 and unadjusted_only > 10  # the case that used to contradict


def test_an_interval_is_at_the_level_holm_tested_it_at() -> None:
    """Three comparisons, all `all` rows in one family: the one with the smallest p is
    tested at 0.05 / 3, so its interval is scipy's paired t interval at 1 - 0.05 / 3."""
    rng = np.random.default_rng(5)
    runs = factorial(rng, {"head": 0.01, "filters": 0.0, "dropout": 0.0}, seeds=4)
    rows = [r for r in what_matters(runs).seed_level if r.within == "all"]
    assert len(rows) == 3
    first = min(rows, key=lambda r: r.p)
    assert first.key == "model.head" and first.verdict == BETTER
    gap = {(r.config["model.filters"], r.config["model.dropout"], r.config["seed"]): r
           for r in runs if r.config["model.head"] == "gap"}
    diffs = [100 * (gap[(r.config["model.filters"], r.config["model.dropout"],
                         r.config["seed"])].test_acc - r.test_acc)
             for r in runs if r.config["model.head"] == "gmp"]
    ci = scipy.stats.ttest_1samp(diffs, 0.0).confidence_interval(1 - 0.05 / 3)
    assert (first.low, first.high) == pytest.approx((ci.low, ci.high))
    assert first.confidence == pytest.approx(1 - 0.05 / 3)


def test_the_project_s_records_no_longer_contradict_themselves() -> None:
    """docs/results.csv: `head gap vs gmp, all` and `data.val_size, all` were shown with a
    95% interval that excluded 0 beside a Holm-adjusted p of 0.21 and 0.063 and the verdict
    `not distinguishable`."""
    matters = what_matters(results_from_csv(REPO / "docs" / "results.csv").runs)
    for row in [*matters.seed_level, *matters.image_level]:
        if row.p_holm is not None and row.low is not None:
            assert excludes_zero(row) == (row.verdict in (BETTER, WORSE)), row
    rows = {(r.key, r.value): r for r in matters.seed_level if r.within == "all"}
    for key in (("model.head", "gap"), ("data.val_size", "0")):
        assert rows[key].verdict == TIE and rows[key].low < 0 < rows[key].high, rows[key]
    # the document as rendered (docs/results.md, regenerated by the command at its top)
    table = md_table((REPO / "docs" / "results.md").read_text(), "### Over seeds")
    shown = {(r["setting"], r["value"]): r for r in table if r["within"] == "all"}
    for key in (("head", "gap"), ("data.val_size", "0")):
        row = shown[key]
        low, high = (float(x) for x in row["interval (Holm)"].split(" at ")[0]
                     .strip("[]").split(", "))
        assert row["verdict"] == "not distinguishable" and low <= 0 <= high, row


# ---- plots of configurations, pruned trials in one line ------------------------------------

def test_val_acc_draws_one_line_and_band_per_configuration(sweep) -> None:
    """Four real runs, two configurations: two lines (the seed mean per epoch), two bands
    (min to max over the seeds), two legend entries, one colour each."""
    runs = read_folder(sweep[0])
    assert len(runs) == 4 and all(len(r.val_curve) == 2 for r in runs)
    fig = val_acc_figure(runs, describe(runs))
    ax = fig.axes[0]
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(texts) == len(ax.lines) == 2 == len(ax.collections)
    assert len({line.get_color() for line in ax.lines}) == 2
    for line, band, text in zip(ax.lines, ax.collections, texts, strict=True):
        head = "gap" if "head=gap" in text else "gmp"
        assert "seed" not in text.replace("2 seeds", "")  # the configuration, not a run
        curves = 100 * np.array([r.val_curve for r in runs if r.config["model.head"] == head])
        assert list(line.get_ydata()) == pytest.approx(list(curves.mean(axis=0)))
        ys = band.get_paths()[0].vertices[:, 1]
        assert min(ys) == pytest.approx(curves.min()) and max(ys) == pytest.approx(
            curves.max())
        assert to_rgb(band.get_facecolor()[0]) == pytest.approx(to_rgb(line.get_color()))


def test_val_acc_draws_the_10_best_configurations(sweep) -> None:
    first = read_folder(sweep[0])[0]
    runs = [replace(first, job=f"{i}_trial", test_acc=0.9 + i / 1000,
                    config={**first.config, "model.dropout": i / 100},
                    val_curve=[0.9 + i / 1000, 0.91 + i / 1000]) for i in range(14)]
    fig = val_acc_figure(runs, describe(runs))
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(texts) == len(fig.axes[0].lines) == 10
    assert {t.split(":")[0] for t in texts} == {str(i) for i in range(4, 14)}
    assert "4 more" in fig.axes[0].get_title()


def test_pruned_trials_are_one_line_under_the_results_tables() -> None:
    results = results_from_csv(REPO / "docs" / "results.csv")
    pruned = [r for r in results.runs if r.status == "pruned"]
    assert len(pruned) == 13
    for text in (results_markdown(results, "cmd", "records", what_matters(results.runs)),
                 (REPO / "docs" / "results.md").read_text()):
        groups = md_table(text, "## Mean over seeds")
        assert all(r["n"] != "0" for r in groups)
        assert sum(r["n"] == "1" for r in groups) + sum(int(r["n"]) > 1 for r in groups) == len(
            groups)
        assert "13 pruned search trials" in text.split("## What matters")[0]
        assert not any(r["status"].startswith("pruned") for r in md_table(text, "## Runs"))
        assert "13 pruned search trials" in text.split("## Runs")[1]
