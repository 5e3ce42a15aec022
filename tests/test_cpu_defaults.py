"""The CPU defaults take effect where training happens: the job process that
`python -m mnist_sweep` starts steps its torch threads down while another process wants the
CPU, joblib's workers start with their share of the cores, and the weights are stored in
channels_last layout."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnist_sweep.job import threads
from mnist_sweep.job.devices import precision_used
from mnist_sweep.job.threads import ThreadGovernor
from tests.conftest import TINY, run_cli, run_in_process

# Tiny runs as in TINY, with torch's own thread count (TINY pins one thread), on the CPU
# also where there is a GPU (the thread count is a CPU run's).
TINY_DEFAULT_THREADS = [a for a in TINY if not a.startswith("trainer.num_threads")] + [
    "trainer.accelerator=cpu"]


def job_log(root: Path) -> str:
    return "".join(p.read_text() for p in root.rglob("cli.log"))



def test_thread_count_leaves_room_for_others() -> None:
    governor = ThreadGovernor(max_threads=2, cpus={0, 1})
    assert governor.threads_for(0.0) == 2      # an idle machine: every core
    assert governor.threads_for(0.2) == 2      # noise, a shell, a logger
    assert governor.threads_for(0.9) == 1      # one other CPU-bound process
    assert governor.threads_for(2.0) == 1      # never below one
    assert ThreadGovernor(max_threads=1, cpus={0, 1}).threads_for(0.0) == 1  # never above start


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 usable cores")
def test_job_steps_down_beside_a_busy_process(tiny_root: Path, tmp_path: Path) -> None:
    fresh = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, check=True)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        # enough batches for the governor's first look, two seconds in. In this process: the
        # governor compares the machine's busy CPU time with this process's own (the job's),
        # and a job starts from the thread count torch had before any job changed it
        result = run_in_process([f"data.root={tiny_root}", f"hydra.run.dir={tmp_path / 'run'}",
                                 *TINY_DEFAULT_THREADS, "trainer.max_epochs=4"], cwd=tmp_path)
    finally:
        busy.kill()
        busy.wait()
    assert result.returncode == 0, result.stderr[-3000:]
    log = job_log(tmp_path / "run")
    assert f"torch {int(fresh.stdout)} CPU threads" in log  # starts with torch's default
    if int(fresh.stdout) > 1:
        assert f"torch {int(fresh.stdout)} -> 1 CPU threads (other processes use" in log, log


def test_a_fixed_thread_count_turns_the_governor_off() -> None:
    start = torch.get_num_threads()
    try:
        governor = threads.set_cpu_threads(None)
        assert (governor is not None) == (start > 1 and len(os.sched_getaffinity(0)) > 1)
        assert threads.set_cpu_threads(1) is None and torch.get_num_threads() == 1
    finally:
        assert threads.set_cpu_threads(start) is None
    assert torch.get_num_threads() == start


def test_joblib_workers_get_their_share_of_the_cores(tiny_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    # the sweep's process here; its jobs train in joblib's worker processes, started anew
    result = run_in_process(["-m", "head=gmp,gap", "hydra/launcher=joblib",
                             "hydra.launcher.n_jobs=2", f"data.root={tiny_root}",
                             *TINY_DEFAULT_THREADS], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    per_worker = max(torch.get_num_threads() // 2, 1)  # joblib: cores // n_jobs
    assert job_log(tmp_path).count(f"torch {per_worker} CPU threads") == 2


def test_weights_are_stored_channels_last(tiny_root: Path, tmp_path: Path) -> None:
    result = run_in_process([f"data.root={tiny_root}", f"hydra.run.dir={tmp_path / 'run'}",
                             *TINY], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False,
                       map_location="cpu")["state_dict"]
    # 3x3 kernels over several channels: the ones whose NHWC and NCHW strides differ
    convs = {k: v for k, v in state.items() if v.dim() == 4 and v.shape[1] > 1
             and v.shape[2] > 1}
    assert convs
    for name, weight in convs.items():
        assert weight.is_contiguous(memory_format=torch.channels_last), name
        assert not weight.is_contiguous(), name  # NHWC strides, not NCHW ones


def cpu_flags() -> set[str]:
    """The CPU's feature flags as the kernel lists them (independent of torch's probe)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="needs /proc/cpuinfo")
def test_auto_precision_is_bf16_where_the_cpu_has_bf16_units_and_the_user_wins(
        tiny_root: Path, tmp_path: Path) -> None:
    bf16_units = bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    expected = {"auto": "bf16-mixed" if bf16_units else "32-true", "32-true": "32-true"}
    sweep = tmp_path / "sweep"
    # a new process: the AMP line is Lightning's INFO, through its loggers, whose handler and
    # propagation Lightning sets when it is first imported (before or after the command's
    # logging is set up); and where the CPU has no bf16 units the check is that it is absent
    result = run_cli(["-m", "trainer.precision=auto,32-true", f"data.root={tiny_root}",
                      f"hydra.sweep.dir={sweep}", *TINY, "trainer.accelerator=cpu",
                      "trainer.lightning_info=true"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # Lightning's own line says which precision plugin the Trainer really got
    amp_line = "Using bfloat16 Automatic Mixed Precision (AMP)"
    used = {}
    for job in sorted(p for p in sweep.iterdir() if (p / "status.json").is_file()):
        status = json.loads((job / "status.json").read_text())
        asked = status["signature"]["trainer.precision"]  # the job is what was asked
        used[asked] = status["precision"]  # the record says what trained
        assert (amp_line in job_log(job)) == (status["precision"] == "bf16-mixed"), job
    assert used == expected
    # the report's table shows what trained, not `auto`
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert sorted(row["precision"] for row in rows) == sorted(expected.values())
    assert precision_used("auto", "cuda") == precision_used("auto", "mps") == "32-true"
    assert precision_used("bf16-mixed", "cuda") == "bf16-mixed"
