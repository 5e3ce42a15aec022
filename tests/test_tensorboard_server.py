"""A finished tiny sweep, opened in a real TensorBoard server: every run is there, with its
scalars, its HParams record and its final test accuracy, as the jobs' status.json say.

The server listens on 127.0.0.1 only and is always stopped; requests bypass any proxy.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.tensorboard_client import get, post, scalar_series

ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


@pytest.fixture(scope="module")
def sweep(heads_seeds_sweep) -> dict[str, dict]:
    """The real head=gmp,gap seed=1,2 sweep (conftest.heads_seeds_sweep); return TensorBoard
    run name -> the job's facts."""
    sweep_dir = heads_seeds_sweep[0]
    jobs = {}
    for status_file in sorted(sweep_dir.glob("*/status.json")):
        job = status_file.parent
        status = json.loads(status_file.read_text())
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        head = next(o.split("=", 1)[1] for o in overrides if o.startswith("head="))
        jobs[f"{job.name}/tb/{status['dataset']}"] = {"dir": sweep_dir, "status": status,
                                                      "head": head}
    assert sorted(j["head"] for j in jobs.values()) == ["gap", "gap", "gmp", "gmp"]
    return jobs


@pytest.fixture(scope="module")
def server(sweep: dict[str, dict], heads_seeds_tensorboard: str) -> str:
    """A TensorBoard on the sweep folder (conftest.heads_seeds_tensorboard), once every run
    is fully loaded (the final test/acc, the last value a job writes, is visible for each)."""
    return heads_seeds_tensorboard


def test_every_run_of_the_sweep_is_listed(server: str, sweep: dict[str, dict]) -> None:
    # "." is the sweep folder itself, which holds the HParams experiment; a seed group (the
    # seeds' mean of one configuration) is a run of its own
    groups = ["seed_groups/head=gmp", "seed_groups/head=gap"]
    assert sorted(get(server, "/data/runs")) == sorted([".", *sweep, *groups])


def test_scalars_and_final_test_accuracy(server: str, sweep: dict[str, dict]) -> None:
    tags = get(server, "/data/plugin/scalars/tags")
    for run, job in sweep.items():
        assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "lr",
                "time/epoch_seconds", "test/acc", "test/loss", "params"} <= set(tags[run])
        final = max(scalar_series(server, run, "test/acc"), key=lambda point: point[1])
        assert final[2] == job["status"]["metrics"]["test/acc"]
        assert 0.0 <= final[2] <= 1.0
        val_acc = scalar_series(server, run, "val/acc")
        assert len(val_acc) == job["status"]["metrics"]["epochs"] == 2


def test_hparams_experiment_declares_the_choices_and_metrics(server: str) -> None:
    experiment = post(server, "/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = {info["name"]: info for info in experiment["hparamInfos"]}
    names = [info["name"] for info in experiment["hparamInfos"]]
    # the swept setting comes first, so the tab opens with it ticked
    assert names[0] == "head"
    assert {"head", "separable", "filters", "data", "lr", "seed", "params"} <= set(names)
    assert infos["separable"]["type"] == "DATA_TYPE_BOOL"  # not 0.0 / 1.0
    assert infos["augment"]["type"] == "DATA_TYPE_BOOL"
    assert infos["lr"]["type"] == "DATA_TYPE_FLOAT64"
    assert sorted(v for v in infos["head"]["domainDiscrete"]) == ["gap", "gmp"]
    metrics = [info["name"]["tag"] for info in experiment["metricInfos"]]
    assert metrics == ["test/acc", "val/acc_best", "test/loss", "params"]


def test_no_series_starts_with_a_placeholder(server: str, sweep: dict[str, dict]) -> None:
    for run in sweep:
        for tag in ("test/acc", "test/loss", "val/acc_best"):
            points = scalar_series(server, run, tag)
            assert points and all(step > 0 for _, step, _ in points), (run, tag, points)


def test_hparams_session_groups_hold_each_run(server: str, sweep: dict[str, dict]) -> None:
    response = post(server, "/data/plugin/hparams/session_groups", {
        "experimentName": "", "allowedStatuses": ALL_STATUSES,
        "colParams": [{"hparam": "head"}, {"hparam": "params"},
                      {"metric": {"group": "", "tag": "test/acc"}}],
        "startIndex": 0, "sliceSize": 100,
    })
    groups = {group["name"]: group for group in response["sessionGroups"]}
    assert sorted(groups) == sorted(sweep) and response["totalSize"] == len(sweep)
    for run, job in sweep.items():
        group = groups[run]
        assert group["hparams"]["head"] == job["head"]
        assert group["hparams"]["separable"] is False
        assert group["hparams"]["params"] == job["status"]["params"] == 12252
        assert [s["name"] for s in group["sessions"]] == [run]
        assert group["sessions"][0]["status"] == "STATUS_SUCCESS"
        metrics = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        assert metrics["test/acc"] == job["status"]["metrics"]["test/acc"]
        assert metrics["val/acc_best"] == job["status"]["metrics"]["val/acc_best"]
