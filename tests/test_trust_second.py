"""No result under another job's name, no silent deletion, no failure that passes as success:
fault injection with real subprocesses, real files, real signals and real mounts."""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from tests.conftest import (
    HEADS_SEEDS,
    TINY,
    TINY_DATA,
    cli_env,
    cli_with_hook,
    report_in_process,
    run_in_process,
)
from tests.test_reliability import SLOW, _start, _wait_for, status_of

ONE_EPOCH = [*TINY, "trainer.max_epochs=1"]
NUMBERED = ["hydra.sweep.subdir=${hydra.job.num}"]  # job folders 0, 1, ...


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def errors(proc: subprocess.CompletedProcess) -> int:
    """How many error messages a command printed (one per line starting `Error: `)."""
    return sum(line.startswith("Error: ") for line in proc.stderr.splitlines())


def report_rows(sweep: Path) -> dict[str, dict[str, str]]:
    with open(sweep / "summary.csv", newline="") as f:
        return {row["job"]: row for row in csv.DictReader(f)}


def run_report(folder: Path, cwd: Path) -> subprocess.CompletedProcess:
    return report_in_process([folder], cwd)


@pytest.fixture(scope="module")
def finished_sweep(heads_seeds_sweep) -> tuple[Path, list[str]]:
    """A finished four-job sweep (conftest.heads_seeds_sweep: head=gmp,gap seed=1,2) and its
    job folders' names in job order: copy it before changing it."""
    sweep_dir = heads_seeds_sweep[0]
    jobs = sorted(p.name for p in sweep_dir.iterdir() if (p / "status.json").is_file())
    assert len(jobs) == 4 and all(job.startswith(f"{k}_") for k, job in enumerate(jobs))
    return sweep_dir, jobs


def copy_of(finished_sweep: tuple[Path, list[str]], tmp_path: Path) -> tuple[Path, list[str]]:
    target = tmp_path / "s"
    shutil.copytree(finished_sweep[0], target)
    return target, finished_sweep[1]


def sweep_args(tiny_root: Path, *extra: str) -> list[str]:
    return ["seed=1,2", "-m", f"data.root={tiny_root}", *ONE_EPOCH, *NUMBERED,
            "hydra.sweep.dir=s", *extra]


# ---- 1. two jobs, one folder ---------------------------------------------------------------

def test_jobs_sharing_a_folder_or_outside_the_sweep_are_refused_up_front(
        tiny_root, tmp_path) -> None:
    args = ["filters=8,16", "-m", f"data.root={tiny_root}", *ONE_EPOCH, "hydra.sweep.dir=s"]
    shared = run_in_process([*args, "hydra.sweep.subdir=run"], cwd=tmp_path)
    assert shared.returncode == 2, shared.stderr[-2000:]
    assert "jobs 0 and 1 would share the folder" in shared.stderr
    assert errors(shared) == 1 and "Traceback" not in shared.stderr
    assert not (tmp_path / "s").exists()  # nothing written, not even the sweep folder
    dry = run_in_process([*args, "hydra.sweep.subdir=run", "--dry-run"], cwd=tmp_path)
    assert dry.returncode == 2 and "would share the folder" in dry.stdout

    escape = run_in_process([*args, "hydra.sweep.subdir=../escape${hydra.job.num}"], cwd=tmp_path)
    assert escape.returncode == 2, escape.stderr[-2000:]
    assert "which is not inside the sweep folder" in escape.stderr
    assert not list(tmp_path.glob("escape*")) and not (tmp_path / "s").exists()


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_job_refused_when_it_starts_never_shows_the_folders_other_result(
        tiny_root, tmp_path, launcher: str) -> None:
    """The sweep's check passed, then the last job's folder got another configuration's
    finished record while the first trained: that job is refused, its end line and the
    live view must not show that record's numbers as its own, and the sweep ends with exit
    code 1 also when the job ran in a joblib worker (another process than the sweep's)."""
    seeds, last = ("seed=1,2", 1) if launcher == "basic" else ("seed=1,2,3", 2)
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" \
        else []
    args = [seeds, "-m", f"data.root={tiny_root}", *SLOW, "trainer.max_epochs=1",
            *NUMBERED, *parallel, "hydra.sweep.dir=s"]
    proc = _start(args, tmp_path)
    _wait_for(tmp_path / "s", "0/status.json", proc)
    foreign = tmp_path / "s" / str(last)
    foreign.mkdir()
    signature = {**status_of(tmp_path / "s" / "0")["signature"], "model.head": "gap"}
    (foreign / "status.json").write_text(json.dumps({
        "status": "finished", "signature": signature,
        "metrics": {"test/acc": 0.4242, "val/acc_best": 0.4343, "params": 4292, "epochs": 1}}))
    before = snapshot(foreign)
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 1, output[-3000:]
    assert "0.4242" not in output, output[-3000:]
    if launcher == "basic":  # a worker's own lines go to its job's cli.log
        (end_line,) = [ln for ln in output.splitlines()
                       if f"[job {last + 1} of {last + 1}]" in ln and "->" in ln]
        assert "-> refused:" in end_line, end_line
    assert f"refused when it started: {last}: " in output, output[-3000:]
    assert "1 job(s) were refused when they started: " in output
    assert snapshot(foreign) == before  # the other run's folder is left as it was


# ---- 6. errors in the sweep's own callbacks ------------------------------------------------

def test_a_damaged_job_config_fails_the_sweep_and_hides_no_other_job(
        tiny_root, finished_sweep, tmp_path) -> None:
    sweep, (first, *others) = copy_of(finished_sweep, tmp_path)
    (sweep / first / ".hydra" / "config.yaml").write_text("- [1, 2\n")
    skipped = {job: snapshot(sweep / job) for job in others}
    damaged = snapshot(sweep / first)
    # the same command again, on the copy (conftest.HEADS_SEEDS)
    again = run_in_process([*HEADS_SEEDS, f"data.root={tiny_root}", "hydra.sweep.dir=s"],
                           cwd=tmp_path)
    # cli.log included: a skipped job gets no lines
    assert {job: snapshot(sweep / job) for job in others} == skipped
    assert snapshot(sweep / first) == damaged  # refused like a damaged status.json: not rerun
    assert again.returncode == 2, again.stderr[-2000:]
    assert "UserWarning" not in again.stderr and "Traceback" not in again.stderr
    assert f"s/{first}/.hydra/config.yaml is damaged (not valid YAML" in again.stderr
    assert f"delete s/{first} to run this job from scratch" in again.stderr
    # the report command names it and reports the other jobs, instead of refusing the sweep
    report = run_report(sweep, tmp_path)
    assert report.returncode == 1, report.stderr[-2000:]
    assert "1 job(s) hold damaged files" in report.stderr
    rows = report_rows(sweep)
    assert rows[first]["status"] == "damaged" and "config.yaml" in rows[first]["error"]
    for job in others:
        assert rows[job]["status"] == "finished" and rows[job]["test_acc"]


def test_a_sweep_or_run_folder_that_is_a_file_is_refused_with_one_message(
        tiny_root, tmp_path) -> None:
    (tmp_path / "afile").write_text("not a folder\n")
    for args in (sweep_args(tiny_root, "hydra.sweep.dir=afile"),
                 [f"data.root={tiny_root}", *ONE_EPOCH, "hydra.run.dir=afile"],
                 [f"data.root={tiny_root}", *ONE_EPOCH, "hydra.run.dir=afile/run"]):
        proc = run_in_process(args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "is a file, not a folder" in proc.stderr, proc.stderr[-2000:]
        assert errors(proc) == 1 and "Traceback" not in proc.stderr
        assert "UserWarning" not in proc.stderr
    assert (tmp_path / "afile").read_text() == "not a folder\n"


def _mount_tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def test_a_read_only_sweep_or_run_folder_is_refused_with_one_message(
        tiny_root, tmp_path) -> None:
    disk = tmp_path / "ro"
    if os.geteuid() != 0 or not _mount_tmpfs(disk, "size=1m,ro"):
        pytest.skip("mounting a read-only tmpfs needs root")
    try:
        for args in (sweep_args(tiny_root, f"hydra.sweep.dir={disk / 's'}"),
                     [f"data.root={tiny_root}", *ONE_EPOCH, f"hydra.run.dir={disk / 'r'}"]):
            proc = run_in_process(args, cwd=tmp_path)
            assert proc.returncode == 2, proc.stderr[-2000:]
            assert "is read-only" in proc.stderr, proc.stderr[-2000:]
            assert errors(proc) == 1 and "Traceback" not in proc.stderr
            # the dry run says the same instead of listing a run that would then fail
            dry = run_in_process([*args, "--dry-run"], cwd=tmp_path)
            assert dry.returncode == 2, dry.stdout[-2000:] + dry.stderr[-2000:]
            assert "is read-only" in dry.stdout + dry.stderr, dry.stdout[-2000:]
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


# ---- 7. files that parse but hold the wrong types ------------------------------------------

def test_files_of_the_wrong_types_make_their_job_damaged_and_the_rest_is_reported(
        finished_sweep, tmp_path) -> None:
    sweep, (bad_config, good, bad_metrics, bad_epoch) = copy_of(finished_sweep, tmp_path)
    (sweep / bad_config / ".hydra" / "config.yaml").write_text("- a\n- b\n")
    status = status_of(sweep / bad_metrics)
    (sweep / bad_metrics / "status.json").write_text(json.dumps({**status, "metrics": [1, 2]}))
    status = status_of(sweep / bad_epoch)
    (sweep / bad_epoch / "status.json").write_text(json.dumps(
        {**status, "status": "running", "epoch": "two"}))
    report = run_report(sweep, tmp_path)
    assert report.returncode == 1, report.stderr[-3000:]  # damaged jobs: named, exit 1
    assert "Traceback" not in report.stderr and "3 job(s) hold damaged files" in report.stderr
    rows = report_rows(sweep)
    assert rows[good]["status"] == "finished" and float(rows[good]["test_acc"]) >= 0
    assert rows[bad_config]["status"] == "damaged" and "config.yaml" in rows[bad_config]["error"]
    assert rows[bad_metrics]["status"] == "damaged" and (
        "`metrics` is [1, 2]" in rows[bad_metrics]["error"])
    assert rows[bad_epoch]["status"] == "damaged" and (
        '`epoch` is "two"' in rows[bad_epoch]["error"])


# ---- 11. smaller -------------------------------------------------------------------------

def test_bad_seeds_and_printed_configs_are_checked_first(tmp_path) -> None:
    proc = run_in_process(["seed=-1", "trainer.max_epochs=1"], cwd=tmp_path)
    assert proc.returncode == 2 and "seed=-1 is not valid" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "outputs").exists()
    printed = run_in_process(["--cfg", "job", "model.filters=0"], cwd=tmp_path)
    assert printed.returncode == 2 and "model.filters=0 is not valid" in printed.stderr
    assert "filters: 0" not in printed.stdout
    swept = run_in_process(["--cfg", "job", "-m", "seed=1,-2"], cwd=tmp_path)
    assert swept.returncode == 2 and "seed=-2 is not valid" in swept.stderr
    fine = run_in_process(["--cfg", "job", "head=gap"], cwd=tmp_path)
    assert fine.returncode == 0 and "head: gap" in fine.stdout


def test_the_retry_hint_quotes_a_folder_with_spaces(tiny_root, tmp_path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_root, broken)
    labels = broken / "MNIST/raw/t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:20])  # the job fails reading its data
    args = [f"data.root={broken}", *ONE_EPOCH, "seed=1", "-m"]
    proc = run_in_process([*args, "hydra.sweep.dir=my sweeps/s"], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    hint = proc.stderr.split("Re-run the same command with ")[1].split(" to retry")[0]
    again = run_in_process([*args, *shlex.split(hint)], cwd=tmp_path)  # the hint, pasted as given
    assert again.returncode == 1 and "1 job(s) did not finish" in again.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("my")] == ["my sweeps"]


def test_taking_over_a_dead_processs_lock_in_a_single_run_says_so(tiny_root, tmp_path) -> None:
    dead = subprocess.run([sys.executable, "-c",
                           "import os, signal; from mnist_sweep.locks import acquire; "
                           "acquire('r', 'run'); os.kill(os.getpid(), signal.SIGKILL)"],
                          cwd=tmp_path)
    assert dead.returncode == -signal.SIGKILL and (tmp_path / "r" / ".mnist_sweep.lock").is_file()
    proc = run_in_process([f"data.root={tiny_root}", *ONE_EPOCH, "hydra.run.dir=r"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "took over the lock of" in proc.stderr and "which ended" in proc.stderr


@pytest.mark.parametrize("setting", ["hydra.sweeper.n_trials=0",
                                     "hydra.sweeper.storage=sqlite:////no/such/dir/x.db"])
def test_a_refused_search_leaves_no_folder(tiny_root, tmp_path, setting) -> None:
    pytest.importorskip("optuna")
    proc = run_in_process(["hparams_search=optuna", "-m", f"data.root={tiny_root}", *ONE_EPOCH,
                    "hydra.sweep.dir=s", setting], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert errors(proc) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "s").exists()


# ---- an interrupted run to work on ---------------------------------------------------------

@pytest.fixture(scope="module")
def interrupted_run(tiny_root, tmp_path_factory) -> tuple[Path, list[str]]:
    """A single run (seed 1) stopped by Ctrl-C after its first checkpoint, and its args
    without hydra.run.dir: copy the folder before changing it."""
    cwd = tmp_path_factory.mktemp("interrupted_run")
    args = [f"data.root={tiny_root}", *SLOW, "trainer.max_epochs=2"]
    proc = _start([*args, "hydra.run.dir=run"], cwd)
    _wait_for(cwd / "run", "checkpoints/last.ckpt", proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    assert status_of(cwd / "run")["status"] == "interrupted"
    return cwd / "run", args


def copy_run(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(source, target)
    return target


# ---- 2. another configuration's checkpoint -------------------------------------------------

def test_a_checkpoint_of_another_configuration_is_refused(
        tiny_root, interrupted_run, tmp_path) -> None:
    import torch

    from mnist_sweep.job.checkpoints import SIGNATURE_KEY

    folder, args = interrupted_run
    other = run_in_process([f"data.root={tiny_root}", *SLOW, "trainer.max_epochs=1", "seed=7",
                     "optim.lr=0.01", "trainer.limit_train_batches=2", "hydra.run.dir=other"],
                           cwd=tmp_path)
    assert other.returncode == 0, other.stderr[-2000:]
    run = copy_run(folder, tmp_path)
    shutil.copy(tmp_path / "other" / "checkpoints" / "last.ckpt", run / "checkpoints")
    before = snapshot(run)
    for extra in ([], ["--dry-run"]):
        refused = run_in_process([*args, "hydra.run.dir=run", *extra], cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr[-2000:]
        text = refused.stdout + refused.stderr
        assert "was saved by a run of another configuration (optim.lr: 0.01 -> 0.003; " \
               "seed: 7 -> 1; trainer.limit_train_batches: 2 -> 1.0; " \
               "trainer.max_epochs: 1 -> 2), not by this job" in text, text[-2000:]
        assert "Traceback" not in text
        assert snapshot(run) == before

    # a checkpoint written before checkpoints carried the signature still resumes: the
    # folder's own recorded signature was checked
    legacy = copy_run(folder, tmp_path / "legacy")
    checkpoint = torch.load(legacy / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint.pop(SIGNATURE_KEY)["seed"] == 1
    torch.save(checkpoint, legacy / "checkpoints" / "last.ckpt")
    resumed = run_in_process([*args, f"hydra.run.dir={legacy}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert status_of(legacy)["status"] == "finished"
    assert status_of(legacy)["resumed_from"].endswith("last.ckpt")


def test_a_failed_job_with_a_checkpoint_continues_from_it(interrupted_run, tmp_path) -> None:
    from mnist_sweep.record.status import FAILED, write_status

    folder, args = interrupted_run
    run = copy_run(folder, tmp_path)
    write_status(run, FAILED, error="OSError: [Errno 28] No space left on device")
    dry = run_in_process([*args, "hydra.run.dir=run", "--dry-run"], cwd=tmp_path)
    assert "run: resume" in dry.stdout, dry.stdout
    assert f"(failed: continue after epoch {status_of(folder)['epoch']})" in dry.stdout
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        resumed = run_in_process([*args, "hydra.run.dir=run"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # it continues in its own checkpoint folder: Lightning's "not empty" note is not the fix
    assert not [w for w in shown if "exists and is not empty" in str(w.message)]
    status = status_of(run)
    assert status["status"] == "finished" and status["resumed_from"].endswith("last.ckpt")


# ---- 3. starting afresh removes only the project's files -----------------------------------

def test_starting_afresh_removes_only_the_projects_files_and_says_so(
        interrupted_run, tmp_path) -> None:
    folder, args = interrupted_run
    run = copy_run(folder, tmp_path)
    mine = {run / "checkpoints" / "my_best.ckpt": b"my weights",
            run / "tb" / "notes.txt": b"my notes", run / "tb" / TINY_DATA / "plot.png": b"png"}
    for path, data in mine.items():
        path.write_bytes(data)
    old_events = sorted((run / "tb" / TINY_DATA).glob("events.out.tfevents.*"))
    assert old_events
    dry = run_in_process([*args, "hydra.run.dir=run", "resume=false", "--dry-run"], cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr[-2000:]
    events = f"{len(old_events)} file{'s' * (len(old_events) > 1)}"
    assert (f"interrupted: run again from the start (removes the earlier attempt's "
            f"tb/{TINY_DATA}/events.out.tfevents.* ({events}), tb/{TINY_DATA}/hparams.yaml, "
            f"checkpoints/last.ckpt; other files stay)") in dry.stdout, dry.stdout
    said = _start_afresh_and_stop([*args, "hydra.run.dir=run", "resume=false"], tmp_path, run)
    assert len(said) == 1 and "checkpoints/last.ckpt" in said[0], said
    assert all(path.read_bytes() == data for path, data in mine.items())
    assert not set(old_events) & set((run / "tb" / TINY_DATA).glob("events.out.tfevents.*"))

    # a folder whose status.json is gone: the same, and the user's files stay
    (run / "status.json").unlink()
    dry = run_in_process([*args, "hydra.run.dir=run", "--dry-run"], cwd=tmp_path)
    assert "new (no status.json, removes the earlier attempt's" in dry.stdout, dry.stdout
    said = _start_afresh_and_stop([*args, "hydra.run.dir=run"], tmp_path, run)
    assert len(said) == 1, said
    assert all(path.read_bytes() == data for path, data in mine.items())


def _start_afresh_and_stop(args: list[str], cwd: Path, run: Path) -> list[str]:
    """Start the run, stop it (Ctrl-C) once it has begun training afresh; its lines that
    say what the fresh start removed."""
    before = (run / "status.json").stat().st_mtime_ns if (run / "status.json").exists() else 0
    proc = _start(args, cwd)
    deadline = time.monotonic() + 300
    while True:  # training has begun: status.json records epoch 0 of the fresh attempt
        try:
            status = status_of(run)
            if (run / "status.json").stat().st_mtime_ns != before and status.get(
                    "epoch") == 0 and status.get("resumed_from") == "":
                break
        except (OSError, ValueError):
            pass
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output[-3000:]
    return [ln for ln in output.splitlines() if "starting afresh" in ln]


# ---- 5. the status file never runs ahead of the checkpoint ---------------------------------

# a 2.4M-parameter network: its 29 MB checkpoint takes long enough to write that a kill
# right after status.json records an epoch lands while that epoch's checkpoint is written
BIG = ["filters=256", "data.val_size=16", "data.eval_batch_size=16", "data.batch_size=4",
       "trainer.max_epochs=2",
       "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
       "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false",
       "trainer.num_threads=1"]


def _recorded_epoch(folder: Path) -> int:
    try:
        return json.loads((folder / "status.json").read_text()).get("epoch") or 0
    except (OSError, ValueError):  # not there yet
        return 0


def _checkpoint_epochs(folder: Path) -> int:
    import torch

    from mnist_sweep.job.checkpoints import completed_epochs

    path = folder / "checkpoints" / "last.ckpt"
    return completed_epochs(torch.load(path, weights_only=False)) if path.is_file() else 0


def _kill_when(proc: subprocess.Popen, happened, timeout: float = 400) -> None:
    """SIGKILL the process the moment `happened()` is true (polled without sleeping)."""
    deadline = time.monotonic() + timeout
    while not happened():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "the awaited moment never came"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


def run_killed_inside_a_checkpoint_write(args: list[str], cwd: Path
                                        ) -> subprocess.CompletedProcess:
    """The real command line (mnist_sweep.cli.main) in a new process that SIGKILLs itself
    inside its next checkpoint write, the temporary file written and not yet renamed over
    last.ckpt: where the out-of-memory killer, or Slurm after KillWait, may land. Killing it
    there from inside makes the moment the same on any machine."""
    hook = """
        import os, signal
        import mnist_sweep.job.checkpoints as checkpoints

        real_save = checkpoints._save

        def save_then_die(checkpoint, tmp):
            real_save(checkpoint, tmp)
            os.kill(os.getpid(), signal.SIGKILL)

        checkpoints._save = save_then_die
    """
    return subprocess.run([*cli_with_hook(hook), *args], cwd=cwd, env=cli_env(cwd),
                          capture_output=True, text=True, timeout=600)


def test_status_never_claims_an_epoch_its_checkpoint_lacks_and_stale_temporaries_go(
        tiny_root, tmp_path) -> None:
    args = [f"data.root={tiny_root}", *BIG, "hydra.run.dir=run"]
    run = tmp_path / "run"
    proc = _start(args, tmp_path)
    _kill_when(proc, lambda: _recorded_epoch(run) >= 1)
    assert _recorded_epoch(run) <= _checkpoint_epochs(run), "status.json ran ahead"

    # killed while a checkpoint is being written: its temporary file stays behind
    killed = run_killed_inside_a_checkpoint_write(args, tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    leftovers = list((run / "checkpoints").glob(".last.ckpt.*.tmp"))
    assert leftovers, "no temporary file was left by the kill inside the checkpoint write"
    assert _recorded_epoch(run) <= _checkpoint_epochs(run)
    dry = run_in_process([*args, "--dry-run"], cwd=tmp_path)
    assert f"continue after epoch {_checkpoint_epochs(run)})" in dry.stdout, dry.stdout
    done = run_in_process(args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "a temporary file left by a process that ended mid-write" in done.stdout + done.stderr
    assert not list(run.rglob("*.tmp")) and status_of(run)["status"] == "finished"


# ---- 4. a torn Optuna journal --------------------------------------------------------------

SEARCH = ["-m", "hparams_search=optuna", "head=gmp", "separable=false", "filters=16",
          "model.dropout=0.1", "optim.weight_decay=0.0", "data.batch_size=32",
          "hydra/sweeper/sampler=random", "hydra.sweeper.pruner=none", *ONE_EPOCH,
          "hydra.sweep.dir=s"]


def test_a_torn_journal_record_is_cut_back_and_a_damaged_one_refused(
        tiny_root, tmp_path) -> None:
    pytest.importorskip("optuna")
    args = [*SEARCH, f"data.root={tiny_root}"]
    first = run_in_process([*args, "hydra.sweeper.n_trials=1"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    journal = tmp_path / "s" / "optuna.journal"
    whole = journal.read_bytes()
    start = whole[:-1].rfind(b"\n") + 1
    journal.write_bytes(whole[:start + (len(whole) - start) // 2])  # a crash mid-write
    again = run_in_process([*args, "hydra.sweeper.n_trials=2"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    output = again.stdout + again.stderr
    assert f"{journal}: its last record was cut short" in output, output[-3000:]
    lines = journal.read_bytes().splitlines(keepends=True)
    assert all(line.endswith(b"\n") and json.loads(line) for line in lines)
    assert journal.read_bytes().startswith(whole[:start])  # every whole record kept
    third = run_in_process([*args, "hydra.sweeper.n_trials=2"], cwd=tmp_path)
    assert third.returncode == 0 and "cannot be opened" not in third.stderr

    # a last line that is whole but not JSON is no crash's doing: refused, nothing written
    journal.write_bytes(journal.read_bytes() + b'{"op_code": oops}\n')
    before = journal.read_bytes()
    refused = run_in_process([*args, "hydra.sweeper.n_trials=3"], cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "is damaged: its last whole record" in refused.stderr
    assert errors(refused) == 1 and "Traceback" not in refused.stderr
    assert journal.read_bytes() == before


# ---- 10. a data set of another size than MNIST's -------------------------------------------

def test_a_data_set_of_another_size_says_so_and_is_labelled_so(
        heads_seeds_sweep, finished_sweep) -> None:
    sweep, jobs = finished_sweep
    output = heads_seeds_sweep[1].stdout + heads_seeds_sweep[1].stderr
    warned = [ln for ln in output.splitlines() if "holds 640 training and 200 test images, "
              "not the official 60,000 and 10,000 of mnist" in ln]
    assert len(warned) == 1, output[-3000:]  # once per command
    for job in jobs:
        assert status_of(sweep / job)["dataset"] == TINY_DATA
        assert list((sweep / job / "tb" / TINY_DATA).glob("events.out.tfevents.*"))
    assert f"[data: {TINY_DATA}]" in output  # the jobs' end lines
    assert (f"Not full MNIST: all runs trained on `{TINY_DATA}` (640 training and 200 test "
            f"images") in (sweep / "summary.md").read_text()
    assert {row["data"] for row in report_rows(sweep).values()} == {TINY_DATA}


def test_a_run_from_before_a_default_changed_is_continued_by_the_command_its_refusal_gives(
        tiny_root, tmp_path) -> None:
    """trainer.precision's default became `auto`: a run interrupted before that recorded
    32-true, and its command line, from overrides.yaml, does not say so. The refusal's
    command must bring the old value back, or following it would be refused again."""
    import yaml

    run = tmp_path / "run"
    args = [f"data.root={tiny_root}", *SLOW, "trainer.accelerator=cpu"]
    proc = _start([*args, "trainer.precision=32-true", f"hydra.run.dir={run}"], tmp_path)
    _wait_for(run, "checkpoints/last.ckpt", proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    # the folder as the code before `auto` wrote it: 32-true was the default, not typed
    overrides = run / ".hydra" / "overrides.yaml"
    typed = yaml.safe_load(overrides.read_text())
    overrides.write_text(yaml.safe_dump([o for o in typed if "precision" not in o]))
    refused = run_in_process([*args, f"hydra.run.dir={run}"], cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "trainer.precision: 32-true -> auto" in refused.stderr
    command = refused.stderr.split("To continue it, run `", 1)[1].split("`", 1)[0]
    assert "trainer.precision=32-true" in command
    # following it (in the same folder) continues the run where it stopped
    resumed = run_in_process([*shlex.split(command)[3:], f"hydra.run.dir={run}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    status = status_of(run)
    assert status["status"] == "finished" and status["resumed_from"], status
    assert status["precision"] == "32-true"
