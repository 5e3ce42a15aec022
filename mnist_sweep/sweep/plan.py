"""What a command will do to each job folder, decided before anything is written.

Hydra writes a job's `.hydra/` files into its folder before the job's own code runs, so a
job that finds a conflict in its folder is already too late: the finished run's config has
been rewritten. Every job of a grid sweep (and a single run) is therefore judged here, up
front (job/folder.py's verdict per folder, plus what only the whole sweep shows: folders of
another sweep with the same job numbers, folders locked by another process). The same
verdicts are what `--dry-run` prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, open_dict

from mnist_sweep.config import RunConfig
from mnist_sweep.job.folder import REFUSE, RESUME, RUN, SKIP, Verdict, judge
from mnist_sweep.locks import FolderLocked, check_free
from mnist_sweep.record.folders import job_folders, job_number

__all__ = ["REFUSE", "RESUME", "RUN", "SKIP", "PlannedJob", "Verdict", "judge"]

@dataclass
class PlannedJob:
    num: int | None
    overrides: list[str]
    folder: Path
    run_cfg: RunConfig
    verdict: Verdict


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


def foreign_jobs(sweep_dir: Path, planned: list[PlannedJob]) -> dict[Path, str]:
    """Folders of another sweep that share a job number with a planned job: two sweeps in
    one folder would give the report two jobs of each number and mixed configurations."""
    by_num = {job.num: job.folder.name for job in planned}
    found = {}
    for child in job_folders(sweep_dir):
        num = job_number(child.name)
        if num in by_num and child.name != by_num[num]:
            found[child] = (f"{child} holds job {num} of another sweep (this sweep's job "
                            f"{num} is {by_num[num]}); choose another hydra.sweep.dir for a "
                            f"different sweep.")
    return found


def misplaced_jobs(planned: list[PlannedJob], sweep_dir: Path) -> list[str]:
    """The grid's jobs checked by misplaced_folders."""
    return misplaced_folders([(job.num, job.folder) for job in planned], sweep_dir)


def misplaced_folders(folders: list[tuple[int | None, Path]], sweep_dir: Path) -> list[str]:
    """Jobs (number, folder) whose folders coincide or lie outside the sweep folder (a
    `hydra.sweep.subdir` without the job number, or with `..`): two jobs in one folder would
    leave one job's result under the other's name, and a folder outside is in no sweep's
    report. A grid passes its planned jobs, a search two job numbers composed up front."""
    root = Path(os.path.abspath(sweep_dir))
    problems, owner = [], {}
    for num, path in folders:
        folder = Path(os.path.abspath(path))
        if root not in folder.parents:
            problems.append(f"job {num} would write into {folder}, which is not inside "
                            f"the sweep folder {root}: hydra.sweep.subdir must name a folder "
                            f"inside hydra.sweep.dir (the default is ${{hydra.job.num}}_...).")
        elif folder in owner:
            problems.append(f"jobs {owner[folder]} and {num} would share the folder "
                            f"{folder}: hydra.sweep.subdir must differ between the jobs of a "
                            f"sweep (include ${{hydra.job.num}}, as the default does).")
        else:
            owner[folder] = num
    return problems


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
        try:  # another command's sweep (a dry run takes no lock; a real one holds it here)
            check_free(Path(sweep_dir), "sweep")
        except FolderLocked as exc:
            lines.insert(0, str(exc))
        lines += misplaced_jobs(jobs, sweep_dir)
        lines += foreign_jobs(sweep_dir, jobs).values()
    return lines


def refuse_if_locked(job: PlannedJob) -> None:
    """Turn a lock held on the job's folder into a refusal verdict."""
    problem = locked(job.folder) if job.verdict.action != REFUSE and job.folder.is_dir() else None
    if problem:
        job.verdict = Verdict(REFUSE, problem)


def format_plan(jobs: list[PlannedJob], problems: list[str]) -> str:
    """The dry run's listing: one line per job with its folder and what would happen, then
    the problems (`refusals`) that would stop the command."""
    width = max((len(job.verdict.action) for job in jobs), default=6)
    lines = []
    for job in jobs:
        label = "run" if job.num is None else f"job {job.num}"
        lines.append(f"{label}: {job.verdict.action:<{width}}  {job.folder}  "
                     f"({job.verdict.detail if job.verdict.action != REFUSE else 'see below'})")
    if problems:
        lines += ["", f"{len(problems)} problem(s) would stop this command:"]
        lines += [f"  - {p}" for p in problems]
    counts = {a: sum(j.verdict.action == a for j in jobs) for a in (RUN, RESUME, SKIP, REFUSE)}
    lines.append(", ".join(f"{n} to {a}" for a, n in counts.items() if n) + ".")
    return "\n".join(lines)
