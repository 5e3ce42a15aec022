"""What a command will do to each job folder, decided before anything is written.

Hydra writes a job's `.hydra/` files into its folder before the job's own code runs, so a
job that finds a conflict in its folder is already too late: the finished run's config has
been rewritten. Every job of a grid sweep (and a single run) is therefore judged here, up
front, from the folder's status.json: run it, continue it, skip it as finished, or refuse.
The same verdicts are what `--dry-run` prints.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml
from omegaconf import DictConfig, open_dict

from mnist_sweep.config import RunConfig
from mnist_sweep.job.signature import differences
from mnist_sweep.job.status import DIVERGED, FINAL, StatusDamaged, read_status
from mnist_sweep.locks import FolderLocked, check_free

RUN, RESUME, SKIP, REFUSE = "run", "resume", "skip", "refuse"
CHECKPOINT = Path("checkpoints") / "last.ckpt"


@dataclass
class Verdict:
    action: str  # run | resume | skip | refuse
    detail: str  # for the dry run and for messages


@dataclass
class PlannedJob:
    num: int | None
    overrides: list[str]
    folder: Path
    run_cfg: RunConfig
    verdict: Verdict


def recorded_command(folder: Path) -> str | None:
    """The command line a folder's run was started with, from Hydra's overrides.yaml."""
    try:
        overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return " ".join(["python -m mnist_sweep", *map(shlex.quote, map(str, overrides or []))])


def judge(folder: Path, run_cfg: RunConfig, where: str) -> Verdict:
    """The verdict for running `run_cfg` in `folder`; `where` names the override that picks
    the folder (hydra.sweep.dir or hydra.run.dir), for the messages."""
    too_long = name_too_long(folder)
    if too_long:
        return Verdict(REFUSE, too_long)
    try:
        status = read_status(folder)
    except StatusDamaged as exc:
        return Verdict(REFUSE, f"{exc}: it may hold a finished result, so it is not run "
                               f"again. Look at it, then delete {folder} to run this job "
                               f"from scratch, or choose another {where}.")
    if status is None:
        return Verdict(RUN, "new")
    state = status["status"]
    diff = differences(status.get("signature"), run_cfg)
    if diff:
        changed = "; ".join(diff)
        if state in FINAL:
            return Verdict(REFUSE, f"{folder} holds a {state} run of another configuration "
                                   f"({changed}); finished results are never overwritten. "
                                   f"Choose another {where}.")
        command = recorded_command(folder)
        again = f"`{command}` (with {where}=...)" if command else "its original overrides"
        return Verdict(REFUSE, f"{folder} holds an unfinished ({state}) run started with "
                               f"another configuration ({changed}). To continue it, run "
                               f"{again}; to start this configuration fresh, choose another "
                               f"{where} or delete {folder}.")
    if state in FINAL:
        if not run_cfg.resume:
            return Verdict(REFUSE, f"{folder} holds a {state} run and resume=false; finished "
                                   f"results are never overwritten. Choose another {where} "
                                   f"or drop resume=false.")
        return Verdict(SKIP, f"already {state}")
    if run_cfg.resume and (folder / CHECKPOINT).is_file() and state != DIVERGED:
        return Verdict(RESUME, f"{state}: continue after epoch {status.get('epoch', '?')}")
    return Verdict(RUN, f"{state}: run again from the start")


def name_too_long(folder: Path) -> str | None:
    """A message when a folder name exceeds what its file system allows."""
    existing = Path(os.path.abspath(folder))
    while not _exists(existing):
        existing = existing.parent
    limit = os.pathconf(existing, "PC_NAME_MAX")
    long = [part for part in folder.parts if len(part.encode()) > limit]
    if long:
        return (f"the folder name {long[0]!r} is {len(long[0].encode())} bytes, over the "
                f"{limit} its file system allows; choose a shorter hydra.sweep.dir / "
                f"hydra.run.dir or hydra.sweep.subdir.")
    return None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name too long to look up
        return False


def expand_basic_sweep(config: DictConfig) -> list[list[str]] | None:
    """The override list of every job of a grid sweep (None for other sweepers)."""
    if "BasicSweeper" not in str(config.hydra.sweeper.get("_target_", "")):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    batches = BasicSweeper.split_arguments(parsed, None)
    return [list(job) for batch in batches for job in batch]


def job_folder(job_cfg: DictConfig, num: int) -> Path:
    """The folder Hydra will give job `num`: hydra.sweep.dir / hydra.sweep.subdir."""
    with open_dict(job_cfg):
        job_cfg.hydra.job.num = num
        job_cfg.hydra.job.id = str(num)
    return Path(str(job_cfg.hydra.sweep.dir)) / str(job_cfg.hydra.sweep.subdir)


_NUMBERED = re.compile(r"(\d+)(?:_|$)")


def foreign_jobs(sweep_dir: Path, planned: list[PlannedJob]) -> dict[Path, str]:
    """Folders of another sweep that share a job number with a planned job: two sweeps in
    one folder would give the report two jobs of each number and mixed configurations."""
    by_num = {job.num: job.folder.name for job in planned}
    found = {}
    for child in sorted(sweep_dir.iterdir()) if sweep_dir.is_dir() else []:
        match = _NUMBERED.match(child.name)
        if not (child.is_dir() and match and int(match.group(1)) in by_num):
            continue
        if child.name != by_num[int(match.group(1))] and (
                (child / ".hydra").is_dir() or (child / "status.json").is_file()):
            found[child] = (f"{child} holds job {match.group(1)} of another sweep (this "
                            f"sweep's job {match.group(1)} is {by_num[int(match.group(1))]})"
                            f"; choose another hydra.sweep.dir for a different sweep.")
    return found


def locked(folder: Path) -> str | None:
    try:
        check_free(folder, "job")
    except FolderLocked as exc:
        return str(exc)
    return None


def refusals(jobs: list[PlannedJob], sweep_dir: Path | None) -> list[str]:
    """Every reason not to start, one line each (empty when the command may run)."""
    lines = [job.verdict.detail for job in jobs if job.verdict.action == REFUSE]
    if sweep_dir is not None:
        lines += foreign_jobs(sweep_dir, jobs).values()
    return lines


def refuse_if_locked(job: PlannedJob) -> None:
    """Turn a lock held on the job's folder into a refusal verdict."""
    problem = locked(job.folder) if job.verdict.action != REFUSE and job.folder.is_dir() else None
    if problem:
        job.verdict = Verdict(REFUSE, problem)


def format_plan(jobs: list[PlannedJob], sweep_dir: Path | None) -> str:
    """The dry run's listing: one line per job with its folder and what would happen."""
    width = max((len(job.verdict.action) for job in jobs), default=6)
    lines = []
    for job in jobs:
        label = "run" if job.num is None else f"job {job.num}"
        lines.append(f"{label}: {job.verdict.action:<{width}}  {job.folder}  "
                     f"({job.verdict.detail if job.verdict.action != REFUSE else 'see below'})")
    problems = refusals(jobs, sweep_dir)
    if problems:
        lines += ["", f"{len(problems)} problem(s) would stop this command:"]
        lines += [f"  - {p}" for p in problems]
    counts = {a: sum(j.verdict.action == a for j in jobs) for a in (RUN, RESUME, SKIP, REFUSE)}
    lines.append(", ".join(f"{n} to {a}" for a, n in counts.items() if n) + ".")
    return "\n".join(lines)
