"""Sweeps on a real Slurm cluster: the single-host cluster of ci/slurm.sh (munge, slurmdbd on
MariaDB, slurmctld, a 2-CPU node in partition `cpu` and a node with two fake GPUs in partition
`debug`), driven through `hydra/launcher=slurm` with real sbatch, scancel, scontrol and
signals, on tiny data. Every test shares that one cluster; CI starts it (.ci/run)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import MPL_CONFIG_DIR, TINY


def _cluster_problem() -> str | None:
    if shutil.which("sinfo") is None:
        return "Slurm is not installed (sinfo is absent): `ci/slurm.sh start` sets up a cluster"
    out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True,
                         timeout=30)
    if out.returncode != 0 or not {"debug*", "cpu"} <= set(out.stdout.split()):
        return ("the test cluster of ci/slurm.sh (partitions debug and cpu) does not answer: "
                "run `ci/slurm.sh start`")
    return None


pytestmark = [pytest.mark.slurm,
              pytest.mark.skipif(_cluster_problem() is not None,
                                 reason=str(_cluster_problem()))]
pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

# TINY without its epoch count, for the tests that set their own
SHORT = [o for o in TINY if not o.startswith("trainer.max_epochs=")]
# The preset sized for the CPU partition: its nodes have 2 CPUs and no GPU.
CPU = ["hydra/launcher=slurm", "hydra.launcher.partition=cpu",
       "hydra.launcher.gpus_per_task=null", "hydra.launcher.cpus_per_task=1",
       "hydra.launcher.mem_gb=1"]
# The same on the fake-GPU node (8 CPUs): room for three one-CPU jobs at once.
DEBUG_CPU = [*CPU[:1], "hydra.launcher.partition=debug", *CPU[2:]]


def env_for(cwd: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cwd / ".cache"), "HYDRA_FULL_ERROR": "",
           "MPLCONFIGDIR": MPL_CONFIG_DIR, **(extra or {})}
    env.pop("MNIST_SWEEP_DATA", None)
    return env


@pytest.fixture(autouse=True)
def leave_the_cluster_empty():
    """After each test (passed or not) its sweeps are ended and their jobs cancelled, so the
    next test finds the cluster idle."""
    yield
    for proc in Sweep.running:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    Sweep.running.clear()
    subprocess.run(["scancel", "--name=mnist_sweep,blocker"], capture_output=True, timeout=60)
    wait_until("the cluster is empty", lambda: not queued_jobs(), timeout=60)


class Sweep:
    """`python -m mnist_sweep ARGS` running in the background, its output in a file."""

    running: list[subprocess.Popen] = []

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.out_path = cwd / f"sweep-{time.monotonic_ns()}.out"
        self.out = self.out_path.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "mnist_sweep", *args], cwd=cwd,
                                     env=env_for(cwd, env), stdout=self.out,
                                     stderr=subprocess.STDOUT, text=True)
        Sweep.running.append(self.proc)

    def output(self) -> str:
        return self.out_path.read_text()

    def wait(self, timeout: float = 400) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the sweep did not end in {timeout} s:\n"
                                 f"{self.output()[-4000:]}") from None
        finally:
            self.out.close()
        return code, self.output()


def wait_until(what: str, check, timeout: float = 240, sweep: Sweep | None = None):
    """Poll `check()` until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if sweep is not None and sweep.proc.poll() is not None:
            raise AssertionError(f"the sweep ended before {what}:\n{sweep.output()[-4000:]}")
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s"
                         + (f"\n{sweep.output()[-4000:]}" if sweep else ""))


def slurm(*args: str) -> str:
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, (args, out.stderr)
    return out.stdout


def slurm_ids(sweep_dir: Path) -> dict[int, str]:
    try:
        data = json.loads((sweep_dir / ".slurm_jobs.json").read_text())
    except (OSError, ValueError):
        return {}
    return {int(k): v["id"] for k, v in data.items()}


def job_dir(sweep_dir: Path, num: int) -> Path | None:
    found = [p for p in sweep_dir.glob(f"{num}_*") if p.is_dir()]
    return found[0] if found else None


def status(sweep_dir: Path, num: int) -> dict:
    folder = job_dir(sweep_dir, num)
    try:
        return json.loads((folder / "status.json").read_text()) if folder else {}
    except (OSError, ValueError):  # being replaced
        return {}


def trained(sweep_dir: Path, num: int, epochs: int = 1) -> bool:
    """Job `num` has finished `epochs` epochs (and so written its checkpoint)."""
    record = status(sweep_dir, num)
    folder = job_dir(sweep_dir, num)
    return (record.get("status") == "running" and (record.get("epoch") or 0) >= epochs
            and folder is not None and (folder / "checkpoints" / "last.ckpt").is_file())


def job_field(job_id: str, field: str) -> str:
    match = re.search(rf"\b{field}=(\S*)", slurm("scontrol", "show", "job", job_id))
    return match.group(1) if match else ""


def report_rows(sweep_dir: Path) -> dict[str, str]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return {row["job"]: row["status"] for row in csv.DictReader(f)}


def queued_jobs() -> set[str]:
    return set(slurm("squeue", "-h", "-o", "%i").split())


# ---- refused before anything is submitted ---------------------------------------------

def no_accounting_conf(tmp_path: Path) -> Path:
    """The cluster's slurm.conf as seen by a login node of a cluster without slurmdbd."""
    text = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")).read_text()
    conf = tmp_path / "slurm.conf"
    conf.write_text(re.sub(r"AccountingStorageType=\S+",
                           "AccountingStorageType=accounting_storage/none", text))
    return conf


@pytest.mark.parametrize("case", ["gpu_preset_on_cpu", "no_accounting"])
def test_a_request_the_cluster_can_never_run_is_refused_before_submitting(
        tiny_root: Path, tmp_path: Path, case: str) -> None:
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "head=gmp,gap", f"data.root={tiny_root}", f"hydra.sweep.dir={sweep_dir}",
            *TINY]
    env = None
    if case == "gpu_preset_on_cpu":
        # the preset as it comes, on a partition without GPUs and with 2-CPU nodes: sbatch
        # refused its GPU ("Invalid generic resource"), and without the GPU its 4 CPUs kept
        # every job PENDING (Reason=PartitionConfig) forever
        args += ["hydra/launcher=slurm", "hydra.launcher.partition=cpu"]
        expected = [r"hydra\.launcher\.gpus_per_task=1: partition cpu \(cpu1\) has no GPUs. "
                    r"For a CPU partition add hydra\.launcher\.gpus_per_task=null",
                    r"hydra\.launcher\.cpus_per_task=4: the nodes of partition cpu \(cpu1\) "
                    r"have at most 2 CPUs, so no job of this size can ever start; use "
                    r"hydra\.launcher\.cpus_per_task=2"]
    else:  # submitit would wait forever for a cancelled job
        args += CPU
        env = {"SLURM_CONF": str(no_accounting_conf(tmp_path))}
        expected = [r"job accounting does not answer \(`sacct`: Slurm accounting storage is "
                    r"disabled\).*needs slurmdbd"]
    before = queued_jobs()
    code, out = Sweep(args, tmp_path, env).wait(timeout=180)
    assert code == 2, out[-3000:]
    assert "Error: nothing was submitted to Slurm:" in out, out[-3000:]
    for pattern in expected:
        assert re.search(pattern, out), (pattern, out[-3000:])
    assert "Traceback" not in out and "Invalid generic resource" not in out, out[-3000:]
    assert queued_jobs() == before
    assert not sweep_dir.exists(), list(sweep_dir.iterdir())  # left as it was: absent


# ---- sweeps that run --------------------------------------------------------------------

def test_cancelled_and_killed_jobs_are_interrupted_and_the_sweep_reports(
        tiny_root: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    # jobs 0 and 1 train long enough to be stopped; job 2 finishes meanwhile
    args = ["-m", "trainer.max_epochs=300,301,2", *DEBUG_CPU, f"data.root={tiny_root}",
            f"hydra.sweep.dir={sweep_dir}", *SHORT]
    sweep = Sweep(args, tmp_path)
    wait_until("jobs 0 and 1 train", lambda: trained(sweep_dir, 0) and trained(sweep_dir, 1),
               sweep=sweep)
    ids = slurm_ids(sweep_dir)
    slurm("scancel", ids[0])  # SIGTERM: the job records itself as interrupted
    # SIGKILL (what follows KillWait when a job ignores SIGTERM): it records nothing
    holder = json.loads((job_dir(sweep_dir, 1) / ".mnist_sweep.lock").read_text())
    os.kill(int(holder["pid"]), signal.SIGKILL)
    code, out = sweep.wait()
    assert code == 1, out[-4000:]
    cancelled, killed, short = (status(sweep_dir, n) for n in range(3))
    assert cancelled["status"] == "interrupted", cancelled
    assert cancelled["error"] == "interrupted (SIGTERM)", cancelled
    assert killed["status"] == "interrupted", killed
    assert re.fullmatch(rf"Slurm job {ids[1]} ended \S+.* before the job recorded its end",
                        killed["error"]), killed
    assert Path(killed["checkpoint"]).is_file(), killed
    assert short["status"] == "finished", short
    # the sweep went on, wrote its report and says how to continue the two
    rows = report_rows(sweep_dir)
    assert sorted(rows.values()) == ["finished", "interrupted", "interrupted"], rows
    assert re.search(rf"2 job\(s\) did not finish: .*Re-run the same command with "
                     rf"hydra\.sweep\.dir={re.escape(str(sweep_dir))} to retry them", out), out
    assert re.search(rf"\[job 1 of 3\] trainer\.max_epochs=300 .*-> interrupted: Slurm job "
                     rf"{ids[0]} ended CANCELLED", out), out[-4000:]
    assert "Traceback" not in out and "UncompletedJobError:" not in out, out[-4000:]


def test_requeued_jobs_wait_with_their_slurm_reason_and_resume_in_the_same_command(
        tiny_root: Path, tmp_path: Path) -> None:
    # a 2-job grid on the CPU partition, sized for it; jobs that wait longer than 3 s show
    # Slurm's reason (30 s unless told)
    sweep_dir = tmp_path / "sweep"
    sweep = Sweep(["-m", "head=gmp,gap", *CPU, f"data.root={tiny_root}",
                   f"hydra.sweep.dir={sweep_dir}", *SHORT, "trainer.max_epochs=6"], tmp_path,
                  {"MNIST_SWEEP_PENDING_NOTE_S": "3"})
    wait_until("both jobs train", lambda: trained(sweep_dir, 0, 2) and trained(sweep_dir, 1, 2),
               sweep=sweep)
    ids = slurm_ids(sweep_dir)
    slurm("scontrol", "requeue", ids[0])  # an administrator's requeue: SIGTERM, then again
    slurm("scancel", "--signal=USR2", ids[1])  # submitit's preemption signal: it requeues
    # Slurm holds a requeued job about 120 s; the live view (a pipe here) says so
    for num, head in ((0, "gmp"), (1, "gap")):
        wait_until(f"job {num}'s pending line", lambda num=num, head=head: re.search(
            rf"^\[job {num + 1} of 2\] head={head}: Slurm job {ids[num]} pending "
            r"\(BeginTime\) \| sweep: ", sweep.output(), re.MULTILINE), sweep=sweep, timeout=120)
    assert job_field(ids[0], "Reason") == job_field(ids[1], "Reason") == "BeginTime"
    # each recorded its stop at the end of a batch before it went (USR2's requeue included)
    assert status(sweep_dir, 0)["status"] == status(sweep_dir, 1)["status"] == "interrupted"
    for job_id in ids.values():  # start them now
        slurm("scontrol", "update", f"JobId={job_id}", "StartTime=now")
    code, out = sweep.wait()
    assert code == 0, out[-4000:]
    for num in (0, 1):
        record = status(sweep_dir, num)
        assert record["status"] == "finished", record
        assert record["resumed_from"].endswith("checkpoints/last.ckpt"), record
        assert record["epoch"] == 6 and record["metrics"]["epochs"] == 6, record
        assert 0.0 <= record["metrics"]["test/acc"] <= 1.0
        assert job_field(ids[num], "Restarts") == "1", ids[num]
        assert job_field(ids[num], "NodeList") == "cpu1"  # its own Slurm job, on the CPU node
    assert sorted(report_rows(sweep_dir).values()) == ["finished", "finished"]
    assert (sweep_dir / "summary.md").is_file()
    assert "Traceback" not in out


def test_time_limit_with_no_requeue_left_ends_interrupted_and_resumable(
        tiny_root: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    # a two-minute limit, USR2 a minute before it (Slurm may send it some seconds early),
    # no requeue allowed: the job has started and trained a few epochs by then
    args = ["-m", "head=gmp", *CPU, "hydra.launcher.timeout_min=2",
            "hydra.launcher.signal_delay_s=60", "hydra.launcher.max_num_timeout=0",
            f"data.root={tiny_root}", f"hydra.sweep.dir={sweep_dir}", *SHORT,
            "trainer.max_epochs=300"]
    code, out = Sweep(args, tmp_path).wait(timeout=240)
    assert code == 1, out[-4000:]
    record = status(sweep_dir, 0)
    assert record["status"] == "interrupted", record
    assert record["error"].startswith("interrupted (time limit: "), record
    assert "timed-out too many times" in record["error"], record
    assert record["epoch"] >= 1 and Path(record["checkpoint"]).is_file(), record
    assert list(report_rows(sweep_dir).values()) == ["interrupted"]
    assert "Re-run the same command with" in out
    # the same command continues it from that checkpoint
    plan = subprocess.run([sys.executable, "-m", "mnist_sweep", "--dry-run", *args],
                          cwd=tmp_path, env=env_for(tmp_path), capture_output=True, text=True,
                          timeout=180)
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]
    assert re.search(r"job 0: resume .*epoch", plan.stdout), plan.stdout


def test_optuna_search_runs_two_trials_at_a_time_as_slurm_jobs(
        tiny_root: Path, tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    from optuna.trial import TrialState

    from mnist_sweep.job.trial import open_storage

    sweep_dir = tmp_path / "search"
    # tests/test_search.py's seeded draws: lr 0.02, 1e-5, 0.008, 2e-7 for trials 0-3
    args = ["-m", "hparams_search=optuna", "head=gmp", "separable=false", "filters=16",
            "model.dropout=0.1", "optim.weight_decay=0.0", "data.batch_size=32",
            "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=6",
            "optim.lr=tag(log,interval(1e-7,1e-1))", "hydra.sweeper.pruner=median",
            "hydra.sweeper.pruning.n_startup_trials=1", "hydra.sweeper.pruning.n_warmup_steps=1",
            "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", *CPU,
            f"data.root={tiny_root}", f"hydra.sweep.dir={sweep_dir}", *SHORT,
            "trainer.max_epochs=3"]
    code, out = Sweep(args, tmp_path).wait(timeout=400)
    assert code == 0, out[-4000:]
    study = optuna.load_study(study_name="mnist_sweep",
                              storage=open_storage(str(sweep_dir / "optuna.journal")))
    trials = study.trials
    assert len(trials) == 4, [t.state for t in trials]
    assert trials[0].state == TrialState.COMPLETE  # the start-up trial runs to the end
    assert trials[3].params["optim.lr"] < 1e-6 and trials[3].state == TrialState.PRUNED
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    for t in trials:
        record = json.loads((Path(t.user_attrs["job_dir"]) / "status.json").read_text())
        if t.state == TrialState.PRUNED:
            # the epoch it is pruned at depends on when the start-up trial running beside it
            # completes (the median pruner needs one complete trial): the record names it
            assert record["status"] == "pruned", record
            assert record["epoch"] == max(t.intermediate_values), (record, t.intermediate_values)
        else:
            assert record["status"] == "finished" and t.value == record["metrics"][
                "val/acc_best"], record
    # two Slurm jobs at a time: trials 0 and 1 overlapped, each its own job
    assert trials[1].datetime_start < trials[0].datetime_complete
    assert trials[0].datetime_start < trials[1].datetime_complete
    ids = slurm_ids(sweep_dir)
    assert len(set(ids.values())) == 4, ids
    assert (sweep_dir / "summary.csv").is_file() and (sweep_dir / "search.png").is_file()


def test_unchanged_preset_runs_on_the_fake_gpu_node_and_names_the_device(
        tiny_root: Path, tmp_path: Path) -> None:
    # one GPU, 4 CPUs and 8 GB per job, as the preset asks: the node has two (fake) GPUs
    sweep_dir = tmp_path / "sweep"
    code, out = Sweep(["-m", "head=gmp,gap", "hydra/launcher=slurm",
                       "hydra.launcher.partition=debug", f"data.root={tiny_root}",
                       f"hydra.sweep.dir={sweep_dir}", *TINY], tmp_path).wait()
    assert code == 0, out[-4000:]
    ids = slurm_ids(sweep_dir)
    for num in (0, 1):
        record = status(sweep_dir, num)
        assert record["status"] == "finished", record
        # Slurm gave it a GPU; torch found no CUDA device there and trained on the CPU
        assert re.search(r"gpu[:=]1", job_field(ids[num], "TresPerTask")
                         + job_field(ids[num], "TRES")), ids[num]
        assert record["device"].startswith("cpu"), record
