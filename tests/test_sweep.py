"""The main job end to end: a real multirun (conftest.heads_seeds_sweep), read back with
TensorBoard."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.conftest import HEADS_SEEDS_JOBS, REPO, TINY, TINY_DATA, run_in_process

SCALARS = {"train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "lr",
           "time/epoch_seconds", "test/acc", "test/loss"}
HPARAMS = {"head", "separable", "filters", "data", "lr", "batch_size", "epochs", "seed",
           "params"}


def read_tb(run_dir: Path) -> tuple[EventAccumulator, dict]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = {k: v for k, v in data.session_start_info.hparams.items()}
    return acc, hparams


@pytest.fixture(scope="module")
def sweep_run(heads_seeds_sweep) -> tuple[Path, str]:
    """The real head=gmp,gap seed=1,2 multirun (conftest.heads_seeds_sweep): its folder and
    everything it printed."""
    sweep_dir, proc = heads_seeds_sweep
    return sweep_dir, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def sweep(sweep_run) -> Path:
    return sweep_run[0]


def test_one_folder_per_job_named_by_its_configuration(sweep: Path) -> None:
    jobs = sorted(p.name for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert len(jobs) == len(HEADS_SEEDS_JOBS) == 4
    for k, (name, (head, seed)) in enumerate(zip(jobs, HEADS_SEEDS_JOBS, strict=True)):
        assert name.startswith(f"{k}_") and f"head={head}" in name and f"seed={seed}" in name
    assert all("data.root" not in name for name in jobs)


def test_every_job_logs_scalars_and_one_hparams_record(sweep: Path) -> None:
    for job in sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir()):
        status = json.loads((job / "status.json").read_text())
        assert status["status"] == "finished"
        acc, hparams = read_tb(job / "tb" / TINY_DATA)
        assert SCALARS <= set(acc.Tags()["scalars"])
        assert len(acc.Scalars("val/acc")) == 2 and len(acc.Scalars("train/loss")) == 2
        test_acc = acc.Scalars("test/acc")[-1].value
        assert test_acc == pytest.approx(status["metrics"]["test/acc"], abs=1e-6)
        assert 0.0 <= test_acc <= 1.0
        assert HPARAMS <= set(hparams)
        assert hparams["head"].string_value in job.name
        assert hparams["params"].number_value == 12252
        assert hparams["data"].string_value == TINY_DATA
        assert "hp_metric" not in acc.Tags()["scalars"]
        lrs = [e.value for e in acc.Scalars("lr")]
        assert lrs[0] == pytest.approx(0.003) and lrs[1] == pytest.approx(0.003 / 1.319)


def test_the_multirun_narrates_each_job(sweep_run) -> None:
    _, output = sweep_run
    for k, (head, seed) in enumerate(HEADS_SEEDS_JOBS, 1):
        assert f"[job {k} of 4] start: head={head} seed={seed}" in output
        # the end line (the live view's plain progress lines share the prefix)
        line = next(ln for ln in output.splitlines()
                    if f"[job {k} of 4] head={head} seed={seed}" in ln and " -> " in ln)
        assert "-> finished: test/acc=" in line and "params=12252" in line


def test_single_run_from_another_directory(tiny_root, tmp_path) -> None:
    proc = run_in_process([f"data.root={tiny_root}", *TINY, "trainer.max_epochs=1",
                           "experiment=seed004", "hydra.run.dir=single"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "12316 trainable parameters" in proc.stderr + proc.stdout
    status = json.loads((tmp_path / "single" / "status.json").read_text())
    assert status["status"] == "finished" and status["metrics"]["params"] == 12316


def test_wheel_carries_the_configs(tmp_path) -> None:
    """Configs must be found when installed from a wheel, not only from a checkout."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                           str(tmp_path), str(REPO)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"could not build a wheel here: {proc.stderr[-300:]}")
    wheel = next(tmp_path.glob("mnist_sweep-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "mnist_sweep/conf/config.yaml" in names
    assert "mnist_sweep/conf/head/gmp.yaml" in names
    assert "mnist_sweep/conf/experiment/seed004.yaml" in names


def test_val_size_zero_trains_on_every_image_and_validates_nothing(tiny_root, tmp_path) -> None:
    import torch

    proc = run_in_process([f"data.root={tiny_root}", *TINY, "data.val_size=0",
                    "hydra.run.dir=all60k"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = tmp_path / "all60k"
    status = json.loads((job / "status.json").read_text())
    assert status["status"] == "finished" and status["signature"]["data.val_size"] == 0
    assert status["metrics"]["val/acc_best"] is None and status["metrics"]["test/acc"] > 0
    acc, _ = read_tb(job / "tb" / TINY_DATA)
    assert not {"val/acc", "val/loss"} & set(acc.Tags()["scalars"])
    # 640 tiny training images in batches of 64: 10 steps an epoch, not (640 - 128) / 64 = 8.
    ckpt = torch.load(job / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2 * 10
