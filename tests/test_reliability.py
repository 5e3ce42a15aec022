"""Failures, divergence, interruption and resume, with real subprocess sweeps and signals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pytorch_lightning.utilities.exceptions import SIGTERMException
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_sweep.job.signals import (
    install_stop_handlers,
    restore_stop_handlers,
    stops_between_batches,
)
from mnist_sweep.resolvers import unique_dir
from tests.conftest import MPL_CONFIG_DIR, TINY, TINY_DATA, run_in_process, write_tiny_mnist


def status_of(job: Path) -> dict:
    return json.loads((job / "status.json").read_text())


def jobs_of(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())


def scalar_steps(job: Path, tag: str) -> list[int]:
    acc = EventAccumulator(str(job / "tb" / TINY_DATA), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def test_failed_and_diverged_jobs_do_not_stop_the_sweep(tiny_root, tmp_path) -> None:
    corrupt = write_tiny_mnist(tmp_path / "corrupt")
    labels = corrupt / "MNIST/raw/t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:20])
    args = ["-m", f"data.root={tiny_root},{corrupt}", "optim=sgd", "optim.lr=0.01,1e30",
            "scheduler=constant", *TINY, "hydra.sweep.dir=sweep"]
    proc = run_in_process(args, cwd=tmp_path)
    assert proc.returncode == 1
    jobs = jobs_of(tmp_path / "sweep")
    assert len(jobs) == 4  # every job ran although earlier ones failed
    by_status = {j.name: status_of(j)["status"] for j in jobs}
    assert by_status[jobs[0].name] == "finished"  # good data, sane lr
    assert by_status[jobs[1].name] == "diverged"  # good data, lr=1e30
    assert by_status[jobs[2].name] == "failed" and by_status[jobs[3].name] == "failed"
    assert "loss is nan" in status_of(jobs[1])["error"]
    assert str(labels) in status_of(jobs[2])["error"]
    assert "3 job(s) did not finish" in proc.stderr
    # the diverged run stopped after its first epoch instead of running on
    assert len(scalar_steps(jobs[1], "train/loss")) == 1

    # Re-running into the same folder skips the finished job and retries the others.
    finished_before = (jobs[0] / "status.json").read_text()
    events_before = sorted((jobs[0] / "tb" / TINY_DATA).iterdir())
    again = run_in_process(args, cwd=tmp_path)
    assert again.returncode == 1
    assert (jobs[0] / "status.json").read_text() == finished_before
    assert sorted((jobs[0] / "tb" / TINY_DATA).iterdir()) == events_before
    assert "already finished: skipping" in again.stdout + again.stderr


def _restore_sigint() -> None:
    """A shell without job control starts background commands with SIGINT ignored, and
    children inherit that; give the sweep the default disposition a terminal would give it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "XDG_CACHE_HOME": str(cwd / ".cache"), "MPLCONFIGDIR": MPL_CONFIG_DIR}
    return subprocess.Popen([sys.executable, "-m", "mnist_sweep", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_restore_sigint)


def _wait_for(folder: Path, pattern: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not list(folder.glob(pattern)):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"{folder}/{pattern} did not appear"
        time.sleep(0.2)


# Long enough epochs (many small batches) to be interrupted in the middle of one.
SLOW = ["data.val_size=128", "data.batch_size=4", "trainer.max_epochs=3",
        "trainer.enable_progress_bar=false", "trainer.num_threads=1"]


def test_ctrl_c_then_resume_finishes_every_job_exactly_once(tiny_root, tmp_path) -> None:
    args = ["head=gmp,gap", "-m", f"data.root={tiny_root}", *SLOW, "hydra.sweep.dir=sweep"]
    proc = _start(args, tmp_path)
    first = tmp_path / "sweep"
    _wait_for(first, "0_*/checkpoints/last.ckpt", proc)
    time.sleep(0.5)  # inside the second epoch
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output[-3000:]
    jobs = jobs_of(first)
    assert len(jobs) == 1  # the sweep stopped; the second job never started
    assert status_of(jobs[0])["status"] == "interrupted"
    assert "hydra.sweep.dir=" in output

    resumed = run_in_process(args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    jobs = jobs_of(first)
    assert len(jobs) == 2
    for job in jobs:
        status = status_of(job)
        assert status["status"] == "finished" and status["metrics"]["epochs"] == 3
        val_steps = scalar_steps(job, "val/acc")
        assert len(val_steps) == 3 and len(set(val_steps)) == 3  # each epoch logged once
        assert len([s for s in scalar_steps(job, "test/acc") if s > 0]) == 1  # tested once
    assert status_of(jobs[0])["resumed_from"].endswith("last.ckpt")
    assert status_of(jobs[1])["resumed_from"] == ""


def test_sigterm_checkpoints_and_a_changed_network_is_refused(tiny_root, tmp_path) -> None:
    args = [f"data.root={tiny_root}", *SLOW, "hydra.run.dir=run"]
    proc = _start(args, tmp_path)
    _wait_for(tmp_path / "run", "checkpoints/last.ckpt", proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, output[-3000:]
    assert status_of(tmp_path / "run")["status"] == "interrupted"
    assert "hydra.run.dir=" in output

    # resuming with a changed configuration is refused before anything is written
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    wrong = run_in_process([*args, "filters=32"], cwd=tmp_path)
    assert wrong.returncode == 2
    assert "unfinished (interrupted) run started with another configuration" in wrong.stderr
    assert "model.filters: 16 -> 32" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before

    resumed = run_in_process(args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    status = status_of(tmp_path / "run")
    assert status["status"] == "finished" and status["metrics"]["epochs"] == 3

    overwrite = run_in_process([*args, "resume=false"], cwd=tmp_path)
    assert overwrite.returncode == 2 and "never overwritten" in overwrite.stderr
    assert status_of(tmp_path / "run") == status


def test_sweeps_started_together_get_their_own_folders(tiny_root, tmp_path) -> None:
    args = ["-m", f"data.root={tiny_root}", *TINY, "trainer.max_epochs=1",
            "hydra.sweep.dir=${unique_dir:multirun/same}"]
    procs = [_start(args, tmp_path) for _ in range(2)]
    for p in procs:
        out = p.communicate(timeout=300)[0]
        assert p.returncode == 0, out[-3000:]
    folders = sorted(p.name for p in (tmp_path / "multirun").iterdir())
    assert folders == ["same", "same-2"]
    for name in folders:
        (job,) = jobs_of(tmp_path / "multirun" / name)
        assert status_of(job)["status"] == "finished"


def test_unique_dir_claims_a_fresh_folder(tmp_path) -> None:
    first = unique_dir(str(tmp_path / "sweep"))
    second = unique_dir(str(tmp_path / "sweep"))
    assert first == str(tmp_path / "sweep") and second == str(tmp_path / "sweep-2")


def test_a_stop_signal_inside_training_is_raised_at_the_next_batch_end() -> None:
    """A signal's exception raised between two arbitrary bytecodes can land inside
    TensorBoard's queue.put and leave its writer asleep for 120 s (a SIGTERM'd job hung that
    long): inside the training and test loops it waits for the batch end instead."""
    previous = install_stop_handlers()
    assert set(previous) == {signal.SIGINT, signal.SIGTERM}  # pytest runs tests on the main thread
    reached_end_of_block = False
    try:
        with pytest.raises(SIGTERMException):
            with stops_between_batches():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)  # the handler has run by now; it must not have raised
                reached_end_of_block = True
        assert reached_end_of_block
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C does not wait
            with stops_between_batches():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.1)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)
                pytest.fail("the second Ctrl-C should have stopped the block at once")
        with pytest.raises(SIGTERMException):  # outside the loops: at once
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
    finally:
        restore_stop_handlers(previous)
    assert signal.getsignal(signal.SIGTERM) == previous[signal.SIGTERM]


def _start_joblib_sweep(tiny_root: Path, tmp_path: Path, epochs: str) -> subprocess.Popen:
    """Three jobs on two joblib workers, into tmp_path/sweep. Output to a file: the workers,
    idle once their jobs stop, would hold a pipe open; a session of its own, so that
    whatever is left of it can be cleaned up at the end."""
    args = ["head=gmp,gap,flatten", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            f"data.root={tiny_root}", *SLOW, epochs, "hydra.sweep.dir=sweep"]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / ".cache"),
           "MPLCONFIGDIR": MPL_CONFIG_DIR}
    with open(tmp_path / "output.txt", "w") as output:
        return subprocess.Popen([sys.executable, "-m", "mnist_sweep", *args], cwd=tmp_path,
                                env=env, stdout=output, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)


def test_sigterm_to_a_parallel_sweep_stops_the_jobs_in_its_workers(tiny_root, tmp_path) -> None:
    """`kill <pid>` of a joblib sweep reaches that process only: its workers went on training
    into the sweep folder after the sweep had ended. Now the jobs stop and say so, and the
    third job, queued in a worker, never starts (it did, in an orphaned worker that then
    lingered)."""
    proc = _start_joblib_sweep(tiny_root, tmp_path, "trainer.max_epochs=300")
    try:
        _check_parallel_sweep_stops(proc, tmp_path / "sweep")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_sigterm_to_one_worker_interrupts_its_job_and_the_sweep_goes_on(
        tiny_root, tmp_path) -> None:
    """`kill <worker pid>` (or a system stopping one process) ends that worker's job as
    interrupted, as `scancel` does on Slurm; the other jobs finish, the sweep lists it with
    the way to resume it and exits 1. It used to end the whole sweep with the other jobs
    left `running`."""
    proc = _start_joblib_sweep(tiny_root, tmp_path, "trainer.max_epochs=6")
    try:
        sweep = tmp_path / "sweep"
        _wait_for(sweep, "0_*/checkpoints/last.ckpt", proc)
        (job,) = sweep.glob("0_*")
        worker = json.loads((job / ".mnist_sweep.lock").read_text())["pid"]
        assert worker != proc.pid  # the job trains in a worker, not in the sweep's process
        os.kill(worker, signal.SIGTERM)
        proc.wait(timeout=300)
        text = (tmp_path / "output.txt").read_text()
        assert proc.returncode == 1, text[-3000:]
        statuses = {j.name[:2]: status_of(j)["status"] for j in jobs_of(sweep)}
        assert statuses == {"0_": "interrupted", "1_": "finished", "2_": "finished"}, statuses
        assert status_of(job)["error"] == "interrupted (SIGTERM)"
        assert f"1 job(s) did not finish: {job.name}. Re-run the same command" in text
        assert (sweep / "summary.md").is_file() and "Traceback" not in text
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _check_parallel_sweep_stops(proc: subprocess.Popen, sweep: Path) -> None:
    deadline = time.monotonic() + 240
    while len(list(sweep.glob("*/checkpoints/last.ckpt"))) < 2:
        assert proc.poll() is None, (sweep.parent / "output.txt").read_text()[-3000:]
        assert time.monotonic() < deadline, "the jobs never saved a checkpoint"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGTERM  # the sweep's process ends as SIGTERM ends it
    jobs = [j for j in jobs_of(sweep) if (j / "status.json").is_file()]
    assert [j.name[:2] for j in jobs] == ["0_", "1_"], jobs
    deadline = time.monotonic() + 60
    while {status_of(j)["status"] for j in jobs} != {"interrupted"}:
        assert time.monotonic() < deadline, [status_of(j)["status"] for j in jobs]
        time.sleep(0.2)
    events = {j: sorted((j / "tb" / TINY_DATA).iterdir()) for j in jobs}
    sizes = {p: p.stat().st_size for files in events.values() for p in files}
    time.sleep(3)  # nothing trains on
    assert {p: p.stat().st_size for files in events.values() for p in files} == sizes
    assert not list(sweep.glob("*/.mnist_sweep.lock"))
    assert not list(sweep.glob("2_*/status.json")), "the queued job started after SIGTERM"
    deadline = time.monotonic() + 30
    while _living_in_group(proc.pid):  # the workers end too, none waits for more work
        assert time.monotonic() < deadline, _living_in_group(proc.pid)
        time.sleep(0.2)


def _living_in_group(pgid: int) -> list[str]:
    """The command lines of the processes of a process group that have not ended."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
                             .decode(errors="replace")[:120])
        except (OSError, IndexError, ValueError):
            continue
    return found
