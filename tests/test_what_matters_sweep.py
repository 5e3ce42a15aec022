"""A real tiny sweep, head=gmp,gap with seeds 1 and 2, end to end: every job keeps its
per-image predictions, the report prints and writes the "what matters" section (over seeds
and on the same test images, as scipy computes it from those files), and a real TensorBoard
server shows per-epoch series at their epoch number and one run per seed group, whose
`val/acc` is the seed mean with a min/max band in a custom-scalars margin chart."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from mnist_sweep.job.predictions import read_predictions
from tests.tensorboard_client import get, scalar_series
from tests.test_report import md_table


@pytest.fixture(scope="module")
def sweep(heads_seeds_sweep) -> tuple[Path, subprocess.CompletedProcess]:
    return heads_seeds_sweep


def jobs(sweep_dir: Path) -> dict[tuple[str, int], Path]:
    """(head, seed) -> the job folder."""
    out = {}
    for status_file in sorted(sweep_dir.glob("*/status.json")):
        signature = json.loads(status_file.read_text())["signature"]
        out[(signature["model.head"], signature["seed"])] = status_file.parent
    return out


def predictions_of(job: Path):
    return read_predictions(job, json.loads((job / "status.json").read_text())["predictions"])


def test_every_finished_job_keeps_its_predictions(sweep) -> None:
    found = jobs(sweep[0])
    assert sorted(found) == [("gap", 1), ("gap", 2), ("gmp", 1), ("gmp", 2)]
    fingerprints = {predictions_of(job).test_set for job in found.values()}
    assert len(fingerprints) == 1  # the same test images for every job


def test_what_matters_in_the_terminal_and_summary_md(sweep) -> None:
    sweep_dir, proc = sweep
    assert "What matters" in proc.stdout and "On the same test images" in proc.stdout
    text = (sweep_dir / "summary.md").read_text()
    seed_rows = md_table(text, "### Over seeds")
    assert [(r["setting"], r["value"], r["against"], r["within"], r["runs"])
            for r in seed_rows] == [("head", "gap", "gmp", "all", "2 pairs by seed")]
    found = jobs(sweep_dir)
    status = {k: json.loads((j / "status.json").read_text())["metrics"]["test/acc"]
              for k, j in found.items()}
    diffs = [100 * (status[("gap", s)] - status[("gmp", s)]) for s in (1, 2)]
    assert seed_rows[0]["difference (points)"] == f"{np.mean(diffs):+.2f}"
    assert seed_rows[0]["verdict"] in ("better", "worse", "not distinguishable")
    assert seed_rows[0]["verdict"] in proc.stdout

    image_rows = md_table(text, "### On the same test images")
    assert [r["seed"] for r in image_rows] == ["1", "2"]
    p_values = []
    for row, seed in zip(image_rows, (1, 2), strict=True):
        gmp, gap = predictions_of(found[("gmp", seed)]), predictions_of(found[("gap", seed)])
        only_gmp = int(np.sum(gmp.correct & ~gap.correct))
        only_gap = int(np.sum(~gmp.correct & gap.correct))
        assert (row["images"], row["right only with the reference"],
                row["right only with the value"]) == ("200", str(only_gmp), str(only_gap))
        p_values.append(scipy.stats.binomtest(only_gap, only_gmp + only_gap).pvalue
                        if only_gmp + only_gap else 1.0)
    # Holm over the two pairs, as the table prints it
    smaller = min(p_values)
    expected = [min(1.0, max(2 * smaller, p)) if p != smaller else min(1.0, 2 * p)
                for p in p_values]
    for row, p in zip(image_rows, expected, strict=True):
        assert row["p"] == (f"{p:.2g}" if p >= 0.001 else "< 0.001")


# ---- TensorBoard ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(heads_seeds_tensorboard: str) -> str:
    """A TensorBoard on the sweep folder (conftest.heads_seeds_tensorboard), once its 7 runs
    (the folder itself, 4 jobs, 2 seed groups) are loaded with their test/acc."""
    return heads_seeds_tensorboard


def test_per_epoch_series_are_logged_at_their_epoch(server: str, sweep) -> None:
    tags = get(server, "/data/plugin/scalars/tags")
    job_runs = [run for run in tags if run.split("/")[0][0].isdigit()]
    assert len(job_runs) == 4
    for run in job_runs:
        assert "epoch" not in tags[run]  # Lightning's own epoch scalar: not written
        for tag in ("val/acc", "val/loss", "train/loss", "train/acc", "lr",
                    "time/epoch_seconds"):
            assert [step for _, step, _ in scalar_series(server, run, tag)] == [1, 2], tag
        assert [step for _, step, _ in scalar_series(server, run, "test/acc")] == [2]


def test_each_seed_group_is_a_run_with_its_mean_and_band(server: str, sweep) -> None:
    runs = get(server, "/data/runs")
    assert {"seed_groups/head=gmp", "seed_groups/head=gap"} <= set(runs)
    tags = get(server, "/data/plugin/scalars/tags")
    for head in ("gmp", "gap"):
        members = [run for run in tags if run.split("/")[0][0].isdigit()
                   and f"head={head}" in run]
        curves = np.array([[v for _, _, v in scalar_series(server, run, "val/acc")]
                           for run in members])
        assert curves.shape == (2, 2)
        group = f"seed_groups/head={head}"
        series = {tag: [(step, v) for _, step, v in scalar_series(server, group, tag)]
                  for tag in ("val/acc", "val/acc_min", "val/acc_max")}
        assert [s for s, _ in series["val/acc"]] == [1, 2]
        assert [v for _, v in series["val/acc"]] == pytest.approx(curves.mean(axis=0))
        assert [v for _, v in series["val/acc_min"]] == pytest.approx(curves.min(axis=0))
        assert [v for _, v in series["val/acc_max"]] == pytest.approx(curves.max(axis=0))
        # what the margin chart fetches: the three tags of the group's run
        payload = get(server, "/data/plugin/custom_scalars/scalars", run=group,
                      tag="val/acc.*")["tag_to_events"]
        assert {"val/acc", "val/acc_min", "val/acc_max"} <= set(payload)


def test_the_layout_draws_seed_groups_as_margin_charts(server: str) -> None:
    layout = get(server, "/data/plugin/custom_scalars/layout")
    category, = [c for c in layout["category"] if c["title"] == "seed groups"]
    margins = [chart["margin"]["series"][0] for chart in category["chart"]]
    assert {"value": "val/acc", "lower": "val/acc_min", "upper": "val/acc_max"} in margins
