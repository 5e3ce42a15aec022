"""Scale-out through Hydra's own plugins, run for real on tiny data: parallel jobs with the
joblib launcher, jobs as separate processes with submitit's local executor, and the Slurm
preset's composed config (on a real cluster: test_slurm.py). Searches: test_search.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY, TINY_DATA, run_cli, run_in_process

pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher")


def sweep_dirs(cwd: Path) -> list[Path]:
    """Every sweep folder the default `hydra.sweep.dir` (multirun/<date>/<time>) created."""
    return sorted(p for p in (cwd / "multirun").glob("*/*") if p.is_dir())


def job_dirs(sweep: Path) -> list[Path]:
    jobs = [p for p in sweep.iterdir() if (p / ".hydra").is_dir()]
    return sorted(jobs, key=lambda p: int(p.name.split("_", 1)[0]))


def check_finished_jobs(sweep: Path, count: int) -> list[dict]:
    """Each job of the sweep finished with a test accuracy and left its TensorBoard run."""
    jobs = job_dirs(sweep)
    assert len(jobs) == count, [p.name for p in sweep.iterdir()]
    statuses = []
    for job in jobs:
        status = json.loads((job / "status.json").read_text())
        assert status["status"] == "finished", (job.name, status)
        assert 0.0 <= status["metrics"]["test/acc"] <= 1.0, status
        assert list((job / "tb" / TINY_DATA).glob("events.out.tfevents.*")), job.name
        statuses.append(status)
    return statuses


@pytest.fixture(scope="module")
def mpl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One matplotlib font cache for all jobs here: each new one costs seconds to build."""
    return tmp_path_factory.mktemp("matplotlib")


def run(args: list[str], cwd: Path, mpl_dir: Path | None = None, runner=run_in_process,
        ) -> tuple[subprocess.CompletedProcess, list[Path]]:
    """Run the command line in `cwd` (by default through its entry point in this process;
    the launchers' jobs are processes of their own all the same); return its result and the
    sweep folders under `cwd`."""
    env = {"MPLCONFIGDIR": str(mpl_dir)} if mpl_dir else None
    result = runner(args, cwd=cwd, env_extra=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result, sweep_dirs(cwd)


def test_joblib_runs_jobs_in_parallel_in_one_sweep_folder(
        tiny_root: Path, tmp_path: Path, mpl_dir: Path) -> None:
    args = ["-m", "head=gmp,gap", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            f"data.root={tiny_root}", *TINY]
    # a new process: the jobs' lines below are written by joblib's workers to the stdout
    # they inherit from the command's process, which only a real process's pipe collects
    result, sweeps = run(args, tmp_path, mpl_dir, runner=run_cli)
    # unique_dir ran once, in the launching process: Hydra copied its cached value into
    # both workers' job configs, so no worker claimed a folder of its own
    assert len(sweeps) == 1, sweeps
    check_finished_jobs(sweeps[0], 2)
    out = result.stdout
    for k in (1, 2):
        assert f"[job {k} of 2] start:" in out, out
        assert out.count(f"[job {k} of 2] start:") == 1, out
        ends = [ln for ln in out.splitlines() if f"[job {k} of 2] " in ln and " -> " in ln]
        assert len(ends) == 1 and "-> finished" in ends[0], out
    # both jobs started before either ended: they ran at the same time
    first_end = out.index("-> finished")
    assert out.index("[job 1 of 2] start:") < first_end
    assert out.index("[job 2 of 2] start:") < first_end
    assert (sweeps[0] / "summary.csv").is_file(), "no end-of-sweep report"


def test_submitit_local_runs_each_job_as_its_own_process(
        tiny_root: Path, tmp_path: Path, mpl_dir: Path) -> None:
    # submitit's local executor starts every job at once: one torch thread each on 2 cores
    args = ["-m", "head=gmp,gap", "hydra/launcher=submitit_local", "trainer.num_threads=1",
            f"data.root={tiny_root}", *TINY]
    _, sweeps = run(args, tmp_path, mpl_dir)
    assert len(sweeps) == 1, sweeps
    check_finished_jobs(sweeps[0], 2)
    # the jobs' own output goes to submitit's log files, one folder per job
    logs = "".join(p.read_text() for p in sweeps[0].glob(".submitit/*/*_log.out"))
    assert logs.count("Job completed successfully") >= 2, logs
    assert "[job 1 of 2] start:" in logs and "[job 2 of 2] start:" in logs, logs
    assert (sweeps[0] / "summary.csv").is_file(), "no end-of-sweep report"


def test_slurm_preset_composes(tmp_path: Path) -> None:
    result, _ = run(["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                     "hydra.launcher.timeout_min=30", "--cfg", "hydra", "-p", "hydra.launcher"],
                    tmp_path)
    launcher = yaml.safe_load(result.stdout)
    # the plugin's launcher with the cluster check and per-job results (sweep/slurm.py)
    assert launcher["_target_"] == (
        "hydra_plugins.mnist_sweep_slurm.slurm_launcher.SlurmLauncher")
    assert launcher["partition"] == "gpu"
    assert launcher["timeout_min"] == 30
    assert launcher["gpus_per_task"] == 1
    assert launcher["cpus_per_task"] == 4
    assert launcher["tasks_per_node"] == 1
    assert launcher["array_parallelism"] == 16
    assert launcher["signal_delay_s"] == 120
    assert launcher["max_num_timeout"] == 3
    assert launcher["setup"] == ["export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK"]
    assert launcher["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"
    assert not (tmp_path / "multirun").exists()  # composing submits and trains nothing
