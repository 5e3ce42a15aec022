"""Every number a sweep shows belongs to the run it names: refusals before anything is
written, folder locks between processes, honest statuses, faults that leave consistent
state. Real subprocesses, signals, files and a real full disk (a 2 MB tmpfs)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_sweep.sweep import live
from tests.conftest import TINY, TINY_DATA, cli_env, cli_with_hook, run_in_process
from tests.test_reliability import SLOW, _start, _wait_for, jobs_of, status_of

ONE_EPOCH = [*TINY, "trainer.max_epochs=1"]


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def strict_json(path: Path) -> dict:
    """json.loads that rejects NaN / Infinity, as strict JSON readers do."""
    def reject(constant: str) -> None:
        raise AssertionError(f"{path} holds {constant}")
    return json.loads(path.read_text(), parse_constant=reject)


def test_a_sweep_over_finished_jobs_of_another_configuration_is_refused(
        tiny_root, tmp_path) -> None:
    numbered = ["seed=1,2", "-m", f"data.root={tiny_root}", *ONE_EPOCH,
                "hydra.sweep.dir=x", "hydra.sweep.subdir=${hydra.job.num}"]
    assert run_in_process(numbered, cwd=tmp_path).returncode == 0
    before = snapshot(tmp_path / "x")
    refused = run_in_process([*numbered, "head=gap"], cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "nothing was run or written" in refused.stderr
    for job in ("x/0", "x/1"):
        assert (f"{job} holds a finished run of another configuration "
                f"(model.head: gmp -> gap)") in refused.stderr
    assert "Traceback" not in refused.stderr
    assert snapshot(tmp_path / "x") == before  # byte-identical, .hydra/ included

    # the default subdir names folders by their overrides: a different sweep into the same
    # folder would mix two sweeps with repeated job numbers in one report
    named = ["seed=1,2", "-m", f"data.root={tiny_root}", *ONE_EPOCH, "hydra.sweep.dir=y"]
    assert run_in_process(named, cwd=tmp_path).returncode == 0
    before = snapshot(tmp_path / "y")
    refused = run_in_process([*named, "head=gap"], cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.count("of another sweep") == 2
    assert snapshot(tmp_path / "y") == before
    # the dry run lists the same verdicts and writes nothing
    dry = run_in_process([*named, "head=gap", "--dry-run"], cwd=tmp_path)
    assert dry.returncode == 2 and "2 problem(s) would stop this command" in dry.stdout
    assert snapshot(tmp_path / "y") == before

    # the same command again skips both finished jobs without touching them; a third
    # seed extends the sweep
    dry = run_in_process([*named, "seed=1,2,3", "--dry-run"], cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr[-2000:]
    lines = dry.stdout.splitlines()
    assert [ln.split()[2] for ln in lines if ln.startswith("job ")] == ["skip", "skip", "run"]
    assert "1 to run, 2 to skip." in dry.stdout
    again = run_in_process(named, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    for job in jobs_of(tmp_path / "y"):
        assert {p: b for p, b in snapshot(job).items() if p.suffix != ".log"} == {
            p: b for p, b in before.items() if job in p.parents and p.suffix != ".log"}


def test_a_resumed_run_must_keep_its_configuration(tiny_root, tmp_path) -> None:
    args = [f"data.root={tiny_root}", *SLOW, "hydra.run.dir=run"]
    proc = _start(args, tmp_path)
    _wait_for(tmp_path / "run", "checkpoints/last.ckpt", proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    assert status_of(tmp_path / "run")["status"] == "interrupted"
    before = snapshot(tmp_path / "run")
    for change, shown in (("head=gap", "model.head: gmp -> gap"),
                          ("optim.lr=0.03", "optim.lr: 0.003 -> 0.03")):
        refused = run_in_process([*args, change], cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert shown in refused.stderr and "To continue it, run" in refused.stderr
        assert snapshot(tmp_path / "run") == before
    # an interrupted run shows no test result in TensorBoard and has not ended there
    acc = EventAccumulator(str(tmp_path / "run" / "tb" / TINY_DATA), size_guidance={"scalars": 0})
    acc.Reload()
    assert "test/acc" not in acc.Tags()["scalars"]
    assert "_hparams_/session_end_info" not in acc.PluginTagToContent("hparams")
    # a speed switch is not a different run: it may change on resume
    resumed = run_in_process([*args, "trainer.num_threads=1", "model.channels_last=true"],
                             cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert status_of(tmp_path / "run")["status"] == "finished"


def test_resumed_run_reproduces_the_uninterrupted_run(tiny_root, tmp_path) -> None:
    """Dropout and augmentation draw random numbers every step: the checkpoint carries the
    generators, so the interrupted-and-resumed run ends with the same numbers. On the CPU:
    cuDNN does not promise the same numbers twice."""
    args = [f"data.root={tiny_root}", *SLOW, "model.dropout=0.2", "data.augment.enabled=true",
            "trainer.accelerator=cpu"]
    whole = run_in_process([*args, "hydra.run.dir=whole"], cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]
    proc = _start([*args, "hydra.run.dir=cut"], tmp_path)
    _wait_for(tmp_path / "cut", "checkpoints/last.ckpt", proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    assert status_of(tmp_path / "cut")["epoch"] < 3
    resumed = run_in_process([*args, "hydra.run.dir=cut"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected, got = (status_of(tmp_path / d)["metrics"] for d in ("whole", "cut"))
    for key in ("test/acc", "test/loss", "val/acc_best", "val/acc", "epochs"):
        assert got[key] == expected[key], key


def start_stopped_after_first_checkpoint(args: list[str], cwd: Path) -> subprocess.Popen:
    """The real command line (mnist_sweep.cli.main) in a new process that stops itself
    (SIGSTOP) once its first checkpoint is in place: alive and holding its locks, mid-sweep,
    for as long as the test needs, on any machine. Returned once it has stopped."""
    hook = """
        import os, signal
        from mnist_sweep.job.checkpoints import AtomicCheckpointIO

        real_save = AtomicCheckpointIO.save_checkpoint

        def save_then_stop(self, *args, **kwargs):
            real_save(self, *args, **kwargs)
            os.kill(os.getpid(), signal.SIGSTOP)

        AtomicCheckpointIO.save_checkpoint = save_then_stop
    """
    proc = subprocess.Popen([*cli_with_hook(hook), *args], cwd=cwd, env=cli_env(cwd),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    stat = Path(f"/proc/{proc.pid}/stat")
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "T":  # stopped
        assert proc.poll() is None, "the command ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.1)
    return proc


def test_a_second_process_is_refused_and_a_dead_ones_lock_is_taken_over(
        tiny_root, tmp_path) -> None:
    args = ["head=gmp,gap", "-m", f"data.root={tiny_root}", *SLOW, "trainer.max_epochs=2",
            "hydra.sweep.dir=sweep"]
    first = start_stopped_after_first_checkpoint(args, tmp_path)
    try:
        second = run_in_process(args, cwd=tmp_path)
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"is in use by pid {first.pid} on " in second.stderr
        assert "started 20" in second.stderr
        # its dry run says so first, instead of listing the jobs as if they could run
        dry = run_in_process([*args, "--dry-run"], cwd=tmp_path)
        assert dry.returncode == 2, dry.stdout[-2000:]
        problems = dry.stdout.split("would stop this command:\n", 1)[1].splitlines()
        assert problems[0].startswith(
            f"  - {(tmp_path / 'sweep').resolve()} is in use by pid {first.pid} on ")
        assert problems[0].endswith("or choose another folder for this sweep.")
        # a single run into a job folder of the running sweep is refused too
        (job,) = jobs_of(tmp_path / "sweep")
        single = run_in_process([f"data.root={tiny_root}", *SLOW, f"hydra.run.dir='{job}'"],
                                cwd=tmp_path)
        assert single.returncode == 2 and "is in use by" in single.stderr
        assert first.poll() is None, "the first sweep ended before it could be killed"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    # SIGKILL left the lock file; the next process takes it over and finishes the sweep
    assert (tmp_path / "sweep" / ".mnist_sweep.lock").is_file()
    third = run_in_process(args, cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-2000:]
    assert f"left by pid {first.pid}" in third.stdout + third.stderr
    statuses = [status_of(j)["status"] for j in jobs_of(tmp_path / "sweep")]
    assert statuses == ["finished", "finished"]
    assert not list((tmp_path / "sweep").rglob(".mnist_sweep.lock"))  # clean end


def test_a_blown_up_run_ends_diverged_with_strict_json(tiny_root, tmp_path) -> None:
    proc = run_in_process([f"data.root={tiny_root}", *ONE_EPOCH, "head=gap", "optim.lr=1e9",
                    "hydra.run.dir=w"], cwd=tmp_path)
    assert proc.returncode == 1
    status = strict_json(tmp_path / "w" / "status.json")
    assert status["status"] == "diverged"
    assert re.search(r"loss is (nan|inf|\S+, above trainer.divergence_loss)", status["error"])
    # a finite loss that exploded past the documented bound is diverged too
    bound = run_in_process([f"data.root={tiny_root}", *ONE_EPOCH, "trainer.divergence_loss=0.5",
                     "hydra.run.dir=b"], cwd=tmp_path)
    assert bound.returncode == 1
    status = strict_json(tmp_path / "b" / "status.json")
    assert status["status"] == "diverged"
    assert "above trainer.divergence_loss=0.5" in status["error"]
    acc = EventAccumulator(str(tmp_path / "b" / "tb" / TINY_DATA))
    acc.Reload()
    assert "test/acc" not in acc.Tags()["scalars"]  # never tested, never shown as tested


def test_tensorboard_series_hold_only_measured_points(tiny_root, tmp_path) -> None:
    proc = run_in_process([f"data.root={tiny_root}", *TINY, "hydra.run.dir=r"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = status_of(tmp_path / "r")
    acc = EventAccumulator(str(tmp_path / "r" / "tb" / TINY_DATA), size_guidance={"scalars": 0})
    acc.Reload()
    test_acc = [(e.step, e.value) for e in acc.Scalars("test/acc")]
    assert len(test_acc) == 1 and test_acc[0][0] > 0
    assert test_acc[0][1] == pytest.approx(status["metrics"]["test/acc"], abs=1e-7)
    best = [e.step for e in acc.Scalars("val/acc_best")]
    assert len(best) == 2 and 0 not in best  # one point per epoch, no step-0 placeholder
    # the single run ends by saying what it got and where its files are
    assert f"finished: test acc {status['metrics']['test/acc']:.4f}" in proc.stdout
    assert f"files: {tmp_path / 'r'}" in proc.stdout


def test_a_damaged_status_is_never_taken_for_not_started(tiny_root, tmp_path) -> None:
    args = [f"data.root={tiny_root}", *ONE_EPOCH, "hydra.run.dir=r"]
    assert run_in_process(args, cwd=tmp_path).returncode == 0
    (tmp_path / "r" / "status.json").write_text('{"status": "finish')
    before = snapshot(tmp_path / "r")
    again = run_in_process(args, cwd=tmp_path)
    assert again.returncode == 2
    assert "status.json is damaged" in again.stderr and "not run again" in again.stderr
    assert snapshot(tmp_path / "r") == before


def test_long_override_lists_get_folder_names_that_fit(tiny_root, tmp_path) -> None:
    args = ["head=gmp,gap", "optim=adamw", "optim.weight_decay=0.0001", "scheduler=onecycle",
            "scheduler.max_lr=0.01", "model.dropout=0.05", "model.label_smoothing=0.1",
            "data.augment.enabled=true", "data.augment.rotation=10",
            "data.augment.translate=0.05", "data.augment.scale=0.05", "-m",
            f"data.root={tiny_root}", *ONE_EPOCH, "hydra.sweep.dir=sweep"]
    proc = run_in_process(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = [j.name for j in jobs_of(tmp_path / "sweep")]
    assert len(names) == 2 and names[0] != names[1]
    assert all(len(n.encode()) <= 130 and n.startswith(("0_", "1_")) for n in names), names
    # a folder name the file system cannot hold is refused before anything starts
    too_long = run_in_process([f"data.root={tiny_root}", *ONE_EPOCH, f"hydra.run.dir={'r' * 300}"],
                              cwd=tmp_path)
    assert too_long.returncode == 2 and "over the 255 its file system allows" in too_long.stderr


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def test_a_full_disk_fails_the_job_and_stops_the_sweep_cleanly(tiny_root, tmp_path) -> None:
    disk = tmp_path / "tiny"
    if os.geteuid() != 0 or not _mount_tmpfs(disk, "2m"):
        pytest.skip("mounting a tmpfs needs root")
    try:
        proc = run_in_process(["filters=16,128,24", "-m", f"data.root={tiny_root}", *ONE_EPOCH,
                        f"hydra.sweep.dir={disk / 'sweep'}"], cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert proc.stderr.count("Error: ") == 1
        assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
        assert live._active is None  # the live view ended with the command, not at exit
        jobs = jobs_of(disk / "sweep")
        assert len(jobs) == 2  # the third job never started
        assert status_of(jobs[0])["status"] == "finished"
        failed = status_of(jobs[1])
        assert failed["status"] == "failed" and "No space left on device" in failed["error"]
        leftovers = [p for p in disk.rglob("*") if p.is_file()
                     and (p.stat().st_size == 0 or p.name.endswith(".tmp"))]
        assert leftovers == []
        assert not (jobs[1] / "checkpoints" / "last.ckpt").exists()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
