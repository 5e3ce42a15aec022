"""Sweeps on Slurm: Hydra's submitit launcher, with what a sweep needs around it.

`hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml) names the `SlurmLauncher` of
hydra_plugins/mnist_sweep_slurm, a subclass of the plugin's own launcher (Hydra instantiates
plugins only from that namespace). It submits and runs jobs exactly as the plugin does and
adds three things, whose parts live here (this module needs neither submitit nor the plugin,
so the live view can use it anywhere):

- Before the first submission it asks the cluster (`sinfo`, `scontrol show partition`,
  `sacct`) whether the partition can ever run one job of the requested size and whether
  accounting answers, and refuses with one message naming the setting otherwise: Slurm
  would accept such jobs and leave them PENDING forever, and submitit, which learns from
  `sacct` that a job ended without a result, would wait forever for a cancelled one.
- A job that ends without a result (scancel, preemption, a node failure, a kill after the
  time limit) no longer ends the whole command: the plugin returns `[j.results()[0] for j in
  jobs]`, so the first such job raised submitit's `UncompletedJobError` past the sweep and
  its report. Here the jobs are waited for together (Slurm's accounting asked every 10 s,
  submitit's 15 s grace for a late result file counted for each job from its end, not one
  after another); one that Slurm ended is recorded as `interrupted` in its status.json when
  the job could not record it itself (SIGKILL after KillWait, a cancel before training
  started), the sweep goes on, and the report lists it.
- The Slurm job id of every job is kept in `<sweep>/.slurm_jobs.json`, so the live view (and
  `mnist-sweep watch` from any machine that sees the folder) can show why a job still waits.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_sweep.record.files import write_atomic

JOBS_FILE = ".slurm_jobs.json"  # in the sweep folder: Hydra job number -> Slurm job id
# A job PENDING longer than this many seconds shows Slurm's reason in the live view.
PENDING_NOTE_S = float(os.environ.get("MNIST_SWEEP_PENDING_NOTE_S", "30"))
# Slurm states in which a job ended without finishing its work: it can be continued.
STOPPED_STATES = ("CANCELLED", "PREEMPTED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
                  "REQUEUED")
_jobs_lock = threading.Lock()


class SlurmRefused(SystemExit):
    """The request cannot run on this cluster: nothing was submitted."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


def _run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


# ---- what the cluster can run -----------------------------------------------------------

@dataclass
class Node:
    name: str
    cpus: int
    memory_mb: int
    gpus: int


def _gpus_of(gres: str) -> int:
    """GPUs in a node's sinfo %G field, e.g. `gpu:2`, `gpu:a100:4(S:0-1)`, `(null)`."""
    total = 0
    for item in gres.split(","):
        parts = re.sub(r"\(.*?\)", "", item).split(":")
        if parts[0] == "gpu" and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def partition_nodes(partition: str) -> list[Node]:
    out = _run(["sinfo", "-h", "-N", "-p", partition, "-o", "%N|%c|%m|%G"])
    if out.returncode != 0:
        raise SlurmRefused(f"`sinfo -p {partition}` failed: {out.stderr.strip()}")
    nodes = {}
    for line in out.stdout.splitlines():
        name, cpus, memory, gres = line.strip().split("|")
        nodes[name] = Node(name, int(cpus.rstrip("+")), int(memory.rstrip("+")),
                           _gpus_of(gres))
    return list(nodes.values())


def partition_limits(partition: str) -> dict[str, str]:
    out = _run(["scontrol", "show", "partition", partition, "-o"])
    return dict(re.findall(r"(\w+)=(\S*)", out.stdout)) if out.returncode == 0 else {}


def default_partition() -> str | None:
    out = _run(["sinfo", "-h", "-o", "%P"])
    return next((p.rstrip("*") for p in out.stdout.split() if p.endswith("*")), None)


def partitions() -> list[str]:
    return [p.rstrip("*") for p in _run(["sinfo", "-h", "-o", "%P"]).stdout.split()]


def _minutes(limit: str) -> float | None:
    """Slurm's [days-]hours:minutes:seconds (or minutes) as minutes; None if unlimited."""
    if not limit or limit.upper() in ("UNLIMITED", "INFINITE", "NONE"):
        return None
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if len(parts) == 1:
        minutes = float(parts[0])
    else:
        parts = [0] * (3 - len(parts)) + parts
        minutes = parts[0] * 60 + parts[1] + parts[2] / 60
    return minutes + (int(days) * 1440 if days else 0)


def requested_gpus(params: dict[str, Any]) -> int:
    """GPUs one node must hold for one job of this request."""
    tasks = int(params.get("tasks_per_node") or 1)
    gpus = [int(params.get("gpus_per_node") or 0), int(params.get("gpus_per_task") or 0) * tasks]
    gres = str(params.get("gres") or "")
    if gres:
        gpus.append(_gpus_of(gres))
    return max(gpus)


def request_problems(params: dict[str, Any], partition: str, nodes: list[Node],
                     limits: dict[str, str]) -> list[str]:
    """Why one job of this request can never start in `partition` (empty when it can)."""
    problems = []
    tasks = int(params.get("tasks_per_node") or 1)
    cpus = int(params.get("cpus_per_task") or 1) * tasks
    gpus = requested_gpus(params)
    mem_mb = int(float(params.get("mem_gb") or 0) * 1024)
    max_cpus = max(n.cpus for n in nodes)
    if limits.get("MaxCPUsPerNode", "UNLIMITED").isdigit():
        max_cpus = min(max_cpus, int(limits["MaxCPUsPerNode"]))
    max_gpus = max(n.gpus for n in nodes)
    where = f"partition {partition} ({', '.join(n.name for n in nodes)})"
    if gpus > max_gpus:
        which = ("gpus_per_task" if params.get("gpus_per_task") else
                 "gpus_per_node" if params.get("gpus_per_node") else "gres")
        value = params.get(which)
        if max_gpus == 0:
            problems.append(
                f"hydra.launcher.{which}={value}: {where} has no GPUs. For a CPU partition "
                f"add hydra.launcher.{which}=null (and size hydra.launcher.cpus_per_task to "
                f"its nodes: at most {max_cpus} CPUs)")
        else:
            problems.append(f"hydra.launcher.{which}={value}: the nodes of {where} have at "
                            f"most {max_gpus} GPUs; ask for at most that many")
    if cpus > max_cpus:
        setting = (f"hydra.launcher.cpus_per_task={params.get('cpus_per_task')}"
                   + (f" x tasks_per_node={tasks}" if tasks > 1 else ""))
        problems.append(f"{setting}: the nodes of {where} have at most {max_cpus} CPUs, so "
                        f"no job of this size can ever start; use "
                        f"hydra.launcher.cpus_per_task={max(max_cpus // tasks, 1)} (torch "
                        f"then trains with that many threads)")
    max_mem = max(n.memory_mb for n in nodes)
    if limits.get("MaxMemPerNode", "UNLIMITED").isdigit():
        max_mem = min(max_mem, int(limits["MaxMemPerNode"]))
    if mem_mb > max_mem:
        problems.append(f"hydra.launcher.mem_gb={params.get('mem_gb')}: the nodes of {where} "
                        f"have at most {max_mem // 1024} GB; MNIST needs about 1, use "
                        f"hydra.launcher.mem_gb={max(min(max_mem // 1024, 2), 1)}")
    max_time = _minutes(limits.get("MaxTime", ""))
    if max_time is not None and float(params.get("timeout_min") or 0) > max_time:
        problems.append(f"hydra.launcher.timeout_min={params.get('timeout_min')}: partition "
                        f"{partition} allows at most {max_time:g} minutes per job; jobs "
                        f"continue from their checkpoint when requeued, so a shorter limit "
                        f"with hydra.launcher.max_num_timeout works")
    nodes_wanted = int(params.get("nodes") or 1)
    if nodes_wanted > len(nodes):
        problems.append(f"hydra.launcher.nodes={nodes_wanted}: {where} has {len(nodes)} "
                        f"node(s); one job trains on one node, use hydra.launcher.nodes=1")
    if limits.get("State", "UP") not in ("UP", ""):
        problems.append(f"partition {partition} is {limits['State']}: it starts no jobs; "
                        f"choose another with hydra.launcher.partition=")
    return problems


def accounting_problem() -> str | None:
    """Why `sacct` cannot tell submitit how jobs ended, or None when it can."""
    out = _run(["sacct", "-n", "-X", "-o", "JobID", "-S", "now"])
    if out.returncode == 0:
        return None
    reason = (out.stderr or out.stdout).strip().splitlines()
    return reason[-1] if reason else f"sacct exited with {out.returncode}"


def check_cluster(params: dict[str, Any]) -> None:
    """Refuse, before anything is submitted, a request this cluster can never run."""
    for tool in ("sbatch", "sinfo", "scontrol", "sacct"):
        if shutil.which(tool) is None:
            raise SlurmRefused(f"hydra/launcher=slurm needs Slurm's `{tool}`, which is not on "
                               f"PATH: run the command on the cluster's login node")
    partition = params.get("partition") or default_partition()
    if partition is None:
        raise SlurmRefused("hydra.launcher.partition is not set and the cluster has no "
                           "default partition; set it, e.g. hydra.launcher.partition="
                           + (partitions() or ["<name>"])[0])
    nodes = partition_nodes(str(partition))
    if not nodes:
        raise SlurmRefused(f"hydra.launcher.partition={partition}: no such partition on this "
                           f"cluster (it has: {', '.join(partitions()) or 'none'})")
    problems = request_problems(params, str(partition), nodes, partition_limits(str(partition)))
    accounting = accounting_problem()
    if accounting:
        problems.append(
            f"this cluster's job accounting does not answer (`sacct`: {accounting}). The "
            f"launcher learns from sacct that a job was cancelled or killed; without it the "
            f"command would wait forever for such a job. The cluster needs slurmdbd "
            f"(AccountingStorageType=accounting_storage/slurmdbd): ask its administrators")
    if problems:
        raise SlurmRefused("nothing was submitted to Slurm:\n  - " + "\n  - ".join(problems))


# ---- which Slurm job each job of the sweep is -------------------------------------------

def record_jobs(sweep_dir: Path, ids: dict[int, str]) -> None:
    """Add `job number -> Slurm job id` entries to the sweep's jobs file (atomically)."""
    path = Path(sweep_dir) / JOBS_FILE
    with _jobs_lock:
        known = read_jobs(sweep_dir)
        known.update({num: {"id": job_id, "submitted": time.time()}
                      for num, job_id in ids.items()})
        write_atomic(path, json.dumps({str(k): v for k, v in sorted(known.items())}, indent=1))


def read_jobs(sweep_dir: Path) -> dict[int, dict[str, Any]]:
    try:
        data = json.loads((Path(sweep_dir) / JOBS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {int(k): v for k, v in data.items() if isinstance(v, dict) and "id" in v}


def squeue_states(job_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """`job id -> (state, reason)` of the jobs Slurm still holds (pending or running)."""
    if not job_ids or shutil.which("squeue") is None:
        return {}
    out = _run(["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%i|%T|%r"])
    states = {}
    for line in out.stdout.splitlines():
        job_id, state, reason = (line.split("|") + ["", ""])[:3]
        states[job_id.strip()] = (state.strip(), reason.strip())
    return states


def pending_notes(sweep_dir: Path, nums: Sequence[int]) -> dict[int, str]:
    """For the jobs among `nums` that Slurm has kept PENDING longer than PENDING_NOTE_S:
    a note with Slurm's reason (Resources, Priority, PartitionConfig, BeginTime, ...)."""
    jobs = read_jobs(sweep_dir)
    now = time.time()
    waiting = {num: jobs[num] for num in nums if num in jobs
               and now - float(jobs[num].get("submitted", now)) >= PENDING_NOTE_S}
    if not waiting:
        return {}
    states = squeue_states([str(j["id"]) for j in waiting.values()])
    notes = {}
    for num, job in waiting.items():
        state, reason = states.get(str(job["id"]), ("", ""))
        if state == "PENDING":
            notes[num] = f"Slurm job {job['id']} pending" + (
                f" ({reason})" if reason and reason != "None" else "")
    return notes


# ---- a job Slurm ended without a result -------------------------------------------------

def record_stopped_job(job_dir: Path, slurm_state: str, job_id: str,
                       time_limit: str | None = None) -> str:
    """Make the job's status say how it ended when the job could not say it itself;
    return the status it ends with. `time_limit`: submitit's message when the job reached
    its time limit with no requeue left outside the training (while it started up)."""
    from mnist_sweep.record.status import (
        FAILED,
        INTERRUPTED,
        RUNNING,
        read_status_or_none,
        write_interrupted,
        write_status,
    )

    status = read_status_or_none(job_dir) or {}
    if status.get("status") not in (None, RUNNING):
        return str(status["status"])  # it recorded its own end (e.g. interrupted at SIGTERM)
    stopped = time_limit is not None or slurm_state.split()[0] in STOPPED_STATES
    outcome = INTERRUPTED if stopped or status.get("status") == RUNNING else FAILED
    job_dir.mkdir(parents=True, exist_ok=True)
    error = (f"interrupted (time limit: {time_limit})" if time_limit else
             f"Slurm job {job_id} ended {slurm_state} before the job recorded its end")
    if outcome == INTERRUPTED:
        write_interrupted(job_dir, error)
    else:  # it never recorded its start: nothing of it to continue from
        write_status(job_dir, FAILED, error=error)
    return outcome
