"""A finished tiny sweep, opened in a real TensorBoard server: every run is there, with its
scalars, its HParams record and its final test accuracy, as the jobs' status.json say.

The server listens on 127.0.0.1 only and is always stopped; requests bypass any proxy.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TINY, run_cli

STARTUP_SECONDS = 90
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(base: str, route: str, **query: str) -> Any:
    url = f"{base}{route}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with OPENER.open(url, timeout=30) as response:
        return json.load(response)


def post(base: str, route: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(f"{base}{route}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with OPENER.open(request, timeout=30) as response:
        return json.load(response)


def scalar_series(base: str, run: str, tag: str) -> list[list[float]]:
    """[[wall_time, step, value], ...]: only measured points, no placeholder at step 0."""
    return get(base, "/data/plugin/scalars/scalars", run=run, tag=tag)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, tiny_root: Path) -> dict[str, dict]:
    """Run a real head=gmp,gap sweep; return TensorBoard run name -> the job's facts."""
    work = tmp_path_factory.mktemp("tb_sweep")
    sweep_dir = work / "sweep"
    proc = run_cli(["head=gmp,gap", "-m", *TINY, "trainer.num_threads=1", f"data.root={tiny_root}",
                    f"hydra.sweep.dir={sweep_dir}"], cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = {}
    for status_file in sorted(sweep_dir.glob("*/status.json")):
        job = status_file.parent
        status = json.loads(status_file.read_text())
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        head = next(o.split("=", 1)[1] for o in overrides if o.startswith("head="))
        jobs[f"{job.name}/tb/{status['dataset']}"] = {"dir": sweep_dir, "status": status,
                                                      "head": head}
    assert sorted(j["head"] for j in jobs.values()) == ["gap", "gmp"]
    return jobs


@pytest.fixture(scope="module")
def server(sweep: dict[str, dict], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A TensorBoard on the sweep folder; yields its base URL once every run is fully loaded
    (the final test/acc, the last value a job writes, is visible for each run)."""
    sweep_dir = next(iter(sweep.values()))["dir"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("tb_server") / "tensorboard.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep_dir),
             "--host", "127.0.0.1", "--port", str(port), "--load_fast=false"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert proc.poll() is None, f"tensorboard exited: {log_path.read_text()[-3000:]}"
            try:
                runs = get(base, "/data/runs")
                if set(sweep) <= set(runs) and all(
                        any(step > 0 for _, step, _ in scalar_series(base, run, "test/acc"))
                        for run in sweep):
                    break
            except OSError:  # not listening yet, or a run not loaded yet (HTTP 400)
                pass
            assert time.monotonic() < deadline, (
                f"tensorboard did not serve the sweep within {STARTUP_SECONDS} s: "
                f"{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_every_run_of_the_sweep_is_listed(server: str, sweep: dict[str, dict]) -> None:
    # "." is the sweep folder itself, which holds the HParams experiment
    assert sorted(get(server, "/data/runs")) == sorted([".", *sweep])


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
