"""A job's record is damaged or it is not, and the report, the live view and the re-run plan
say the same: a `finished` without its numbers, an unreadable status.json, a job config that
is empty, missing or a folder. And after a full disk, no epoch appears that the record does
not count. One tiny two-job sweep is trained once; each damage is done to a copy of it."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from mnist_sweep.config import validate
from mnist_sweep.job.folder import REFUSE, SKIP, judge
from mnist_sweep.paths import config_dir
from mnist_sweep.report import cli as report_cli
from mnist_sweep.report.read import read_run
from mnist_sweep.sweep.live import DAMAGED, SweepWatcher
from tests.conftest import TINY_DATA, run_in_process

TINY = ["data.val_size=128", "data.batch_size=64", "trainer.max_epochs=2",
        "trainer.limit_train_batches=5", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2", "trainer.enable_progress_bar=false",
        "trainer.num_threads=1"]
NUMBERED = ["hydra.sweep.subdir=${hydra.job.num}"]  # job folders 0 and 1


def sweep_args(tiny_root: Path) -> list[str]:
    return ["seed=1,2", "-m", f"data.root={tiny_root}", *TINY, *NUMBERED, "hydra.sweep.dir=s"]


@pytest.fixture(scope="module")
def trained(tiny_root, tmp_path_factory) -> Path:
    """The finished two-job sweep (seed=1,2 in folders 0 and 1): copy it before damaging."""
    cwd = tmp_path_factory.mktemp("trained")
    proc = run_in_process(sweep_args(tiny_root), cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("summary.csv", "summary.md"):  # each test's report writes its own
        (cwd / "s" / name).unlink()
    return cwd / "s"


def copy_of(sweep: Path, tmp_path: Path) -> Path:
    target = tmp_path / "s"
    shutil.copytree(sweep, target, symlinks=True)
    return target


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def status_of(job: Path) -> dict:
    return json.loads((job / "status.json").read_text())


def report(folder: Path, capsys) -> tuple[int, dict[str, dict[str, str]], str, str]:
    """The report command, in this process: its exit code, summary.csv's rows by job, and
    what it printed."""
    capsys.readouterr()
    try:
        report_cli.main([str(folder)])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    with open(folder / "summary.csv", newline="") as f:
        rows = {row["job"]: row for row in csv.DictReader(f)}
    return code, rows, out.out, out.err


def run_config(job: Path):
    """The job's configuration as the re-run composes it from the same overrides."""
    overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return validate(compose(config_name="config", overrides=overrides))


def live_states(sweep: Path) -> dict[str, object]:
    return {state.name: state for state in SweepWatcher(sweep).states()}


def assert_damaged_everywhere(sweep: Path, trained: Path, damaged_file: Path, reason: str,
                              capsys) -> dict[str, dict[str, str]]:
    """Job 0 is damaged, naming `damaged_file` and `reason`, in the report (exit 1), the
    live view and the re-run plan; job 1 is reported as finished; nothing is changed."""
    before = snapshot(sweep / "0")
    code, rows, out, err = report(sweep, capsys)
    assert code == 1, err
    assert rows["0"]["status"] == "damaged", rows["0"]
    assert str(damaged_file) in rows["0"]["error"] and reason in rows["0"]["error"]
    assert rows["0"]["test_acc"] == "" and rows["1"]["settings"]
    assert rows["1"]["status"] == "finished" and float(rows["1"]["test_acc"]) >= 0
    (line,) = [ln for ln in err.splitlines() if ln.startswith("Error: ")]
    assert str(damaged_file) in line and reason in line
    assert "Traceback" not in out + err
    assert snapshot(sweep / "0") == before  # the report neither repairs nor deletes

    live = live_states(sweep)
    assert live["0"].status == DAMAGED
    assert str(damaged_file) in live["0"].note and reason in live["0"].note
    assert live["1"].status == "finished"

    verdict = judge(sweep / "0", run_config(trained / "0"), "hydra.sweep.dir")
    assert verdict.action == REFUSE, verdict
    assert str(damaged_file) in verdict.detail and reason in verdict.detail
    assert "not run again" in verdict.detail and f"delete {sweep / '0'}" in verdict.detail
    assert judge(sweep / "1", run_config(trained / "1"), "hydra.sweep.dir").action == SKIP
    return rows


# ---- 2. `finished` without its numbers ---------------------------------------------------

@pytest.mark.parametrize("metrics", ["removed", "empty"])
def test_a_finished_record_without_metrics_is_damaged(trained, tmp_path, capsys,
                                                      metrics) -> None:
    sweep = copy_of(trained, tmp_path)
    status = status_of(sweep / "0")
    if metrics == "removed":
        del status["metrics"]
    else:
        status["metrics"] = {}
    (sweep / "0" / "status.json").write_text(json.dumps(status))
    assert_damaged_everywhere(sweep, trained, sweep / "0" / "status.json",
                              "finished, but", capsys)


def test_the_rerun_offers_to_run_a_finished_record_without_metrics_again(
        tiny_root, trained, tmp_path) -> None:
    sweep = copy_of(trained, tmp_path)
    status = status_of(sweep / "0")
    del status["metrics"]
    (sweep / "0" / "status.json").write_text(json.dumps(status))
    before = snapshot(sweep)
    again = run_in_process(sweep_args(tiny_root), cwd=tmp_path)
    assert again.returncode == 2, again.stdout[-2000:] + again.stderr[-2000:]
    assert "s/0/status.json is damaged (finished, but holds no `metrics`" in again.stderr
    assert "delete s/0 to run this job from scratch" in again.stderr
    assert "params=None" not in again.stdout + again.stderr
    assert "Traceback" not in again.stderr
    assert snapshot(sweep) == before


# ---- 3. files that cannot be read ----------------------------------------------------------

def test_a_status_json_that_cannot_be_read_damages_its_job_only(trained, tmp_path,
                                                                capsys) -> None:
    sweep = copy_of(trained, tmp_path)
    path = sweep / "0" / "status.json"
    path.unlink()
    path.mkdir()
    assert_damaged_everywhere(sweep, trained, path, "cannot be read", capsys)


@pytest.mark.parametrize("damage", ["empty", "missing", "a folder"])
def test_a_job_config_that_is_empty_missing_or_a_folder_damages_its_job_only(
        trained, tmp_path, capsys, damage) -> None:
    sweep = copy_of(trained, tmp_path)
    path = sweep / "0" / ".hydra" / "config.yaml"
    if damage == "empty":
        path.write_text("")
    else:
        path.unlink()
        if damage == "a folder":
            path.mkdir()
    rows = assert_damaged_everywhere(sweep, trained, path, "config", capsys)
    # the settings header claims nothing for the job whose settings are unknown
    assert rows["0"]["settings"] in ("", "...")  # not `data.name=...`, as if known
    (common,) = [ln for ln in (sweep / "summary.md").read_text().splitlines()
                 if ln.startswith(("Common to", "Settings"))]
    assert "Common to all 2 runs" not in common, common
    assert "job 0" in common and "unknown" in common, common


# ---- smaller: a full disk ------------------------------------------------------------------

def scalar_steps(tb_dir: Path, tag: str) -> list[int]:
    acc = EventAccumulator(str(tb_dir), size_guidance={SCALARS: 0})
    acc.Reload()
    return [event.step for event in acc.Scalars(tag)]


def test_after_a_full_disk_no_epoch_is_shown_that_the_record_does_not_count(
        tiny_root, trained, tmp_path, capsys) -> None:
    """A disk that holds the first epoch's checkpoint but not the second's (an atomic
    replace needs room for both): the job fails after epoch 1, and its curves must end at
    epoch 1 too; the run resumed elsewhere then writes epoch 2 once."""
    disk = tmp_path / "disk"
    disk.mkdir()
    job = trained / "0"  # the same configuration: seed=1
    ckpt = (job / "checkpoints" / "last.ckpt").stat().st_size
    others = sum(-(-p.stat().st_size // 4096) * 4096 for p in job.rglob("*")
                 if p.is_file() and p.suffix not in (".ckpt", ".npz"))
    size = others + ckpt + ckpt // 2 + 16 * 4096
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
            capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    args = ["seed=1", f"data.root={tiny_root}", *TINY]
    try:
        full = run_in_process([*args, f"hydra.run.dir={disk / 'r'}"], cwd=tmp_path)
        assert full.returncode == 1, full.stdout[-2000:] + full.stderr[-2000:]
        assert "No space left on device" in full.stderr, full.stderr[-2000:]
        status = status_of(disk / "r")
        assert status["status"] == "failed" and status["epoch"] == 1, status
        assert scalar_steps(disk / "r" / "tb" / TINY_DATA, "val/acc") == [1]
        shutil.copytree(disk / "r", tmp_path / "r")
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    run = tmp_path / "r"
    failed = read_run(run)
    assert failed.status == "failed" and failed.epochs_completed == 1
    assert len(failed.val_curve) == 1
    assert failed.val_acc_best == pytest.approx(status["val_acc_best"])
    code, rows, _, err = report(run, capsys)
    assert code == 0, err
    assert rows[run.name]["epochs_completed"] == "1"
    assert float(rows[run.name]["val_acc_best"]) == pytest.approx(status["val_acc_best"])

    resumed = run_in_process([*args, f"hydra.run.dir={run}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert status_of(run)["status"] == "finished"
    assert status_of(run)["resumed_from"].endswith("last.ckpt")
    for tag in ("val/acc", "val/acc_best", "train/loss"):
        assert scalar_steps(run / "tb" / TINY_DATA, tag) == [1, 2], tag
