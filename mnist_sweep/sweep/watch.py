"""`mnist-sweep watch <sweep dir>`: the live view of any sweep folder, from any process.

A sweep on a cluster runs for hours, and the command that submitted it may be gone (a closed
laptop, a login node's session limit). The live view reads nothing but the folder (the jobs'
status.json files, the sweep's multirun.yaml, and for Slurm sweeps the jobs' ids), so this
command shows the same table on any machine that sees the folder, until every job has ended:
redrawn in place on a terminal, one plain line per job per epoch through a pipe.

A job has ended when its status says so (finished, failed, interrupted, ...) and nothing will
run it again: no Slurm job of it is still queued (a requeued job waits to continue), and for
a sweep whose jobs have not all started, the sweep's command still holds its folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from mnist_sweep.locks import LOCK_FILE, FolderLocked, check_free
from mnist_sweep.record.status import FINAL
from mnist_sweep.report.race_section import RACE_FILE
from mnist_sweep.sweep.live import JobState, LiveView, SweepWatcher

SWEEP_CONFIG = "multirun.yaml"  # written by Hydra into the sweep folder when the sweep starts


class WatchError(RuntimeError):
    """The folder is not a sweep folder."""


def sweep_watcher(sweep_dir: Path) -> SweepWatcher:
    """A watcher that knows the sweep's planned jobs (a grid) or its size (a search), and
    when its command started, from the folder alone: a grid's multirun.yaml, else (a
    search, whose trials are decided while it runs) the Hydra config of its first job."""
    config_file = sweep_dir / SWEEP_CONFIG
    if not config_file.is_file():
        jobs = sorted(sweep_dir.glob("*/.hydra/hydra.yaml"), key=lambda p: p.stat().st_mtime)
        if not jobs:
            raise WatchError(f"{sweep_dir} holds no {SWEEP_CONFIG} and no job folder: not a "
                             f"sweep folder (or its sweep has not started yet). Give the "
                             f"folder a `-m` command wrote, its hydra.sweep.dir.")
        config_file = jobs[0]
    from mnist_sweep.sweep.plan import expand_basic_sweep

    config = OmegaConf.load(config_file)
    planned = expand_basic_sweep(config) if config_file.name == SWEEP_CONFIG else None
    trials = OmegaConf.select(config, "hydra.sweeper.n_trials")
    fixed = (OmegaConf.select(config, "hydra.overrides.task", default=[])
             if planned is not None else [])
    watcher = SweepWatcher(sweep_dir, planned, trials if isinstance(trials, int) else None,
                           [str(o) for o in fixed], racing=(sweep_dir / RACE_FILE).is_file())
    # the jobs' records are read against the start of the sweep's command, not of this one:
    # a record older than that was left by an earlier command in the same folder
    watcher.started = config_file.stat().st_mtime
    return watcher


def command_running(sweep_dir: Path) -> bool:
    """Whether the sweep's own command still holds its folder (on this host's view)."""
    if not (sweep_dir / LOCK_FILE).is_file():
        return False
    try:
        check_free(sweep_dir, "watch")
    except FolderLocked:
        return True
    return False


def slurm_queued(sweep_dir: Path) -> set[int]:
    """Job numbers of the sweep whose Slurm job is still queued (pending or running)."""
    from mnist_sweep.sweep.slurm import JOBS_FILE, read_jobs, squeue_states

    if not (sweep_dir / JOBS_FILE).is_file():
        return set()
    jobs = read_jobs(sweep_dir)
    states = squeue_states([str(j["id"]) for j in jobs.values()])
    return {num for num, job in jobs.items() if str(job["id"]) in states}


def ended(watcher: SweepWatcher, states: list[JobState]) -> bool:
    queued = slurm_queued(watcher.sweep_dir)
    if any(s.num in queued for s in states):
        return False
    left = [s for s in states if not s.done]
    total = watcher.total if watcher.total is not None else len(states)
    if not left and len(states) >= total:
        return True
    if command_running(watcher.sweep_dir):
        return False
    # the command is gone and nothing is queued: a job left `running` was killed with it,
    # a waiting one will not start
    return not queued


def closing_line(watcher: SweepWatcher, states: list[JobState]) -> str:
    stuck = [s for s in states if not s.done]
    line = f"Sweep {watcher.sweep_dir}: {watcher.summary(states)}"
    if stuck:
        line += (f". {len(stuck)} job(s) will not go on by themselves (the sweep's command is "
                 f"no longer running): run it again with hydra.sweep.dir={watcher.sweep_dir}")
    elif any(s.status not in FINAL for s in states):
        line += (f". Jobs that did not finish continue when the sweep's command is run again "
                 f"with hydra.sweep.dir={watcher.sweep_dir}")
    return line


def watch(sweep_dir: Path, interval: float = 2.0, stream=None) -> int:
    """Show the sweep until every job has ended; 0 when all finished (or were pruned by
    their search), else 1."""
    watcher = sweep_watcher(sweep_dir)
    view = LiveView(watcher, stream=stream, interval=interval).start()
    try:
        while True:
            states = watcher.states()
            if ended(watcher, states):
                break
            time.sleep(interval)
    except KeyboardInterrupt:  # the user stops watching; the sweep itself goes on
        view.stop()
        return 130
    view.stop()
    states = watcher.states()
    print(closing_line(watcher, states), file=stream or sys.stdout, flush=True)
    return 0 if states and all(s.status in FINAL for s in states) else 1


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mnist-sweep watch",
        description="Follow a sweep from its folder: the live table of its jobs until every "
                    "job has ended (plain lines when stdout is not a terminal).")
    parser.add_argument("sweep_dir", type=Path, help="the sweep folder (its hydra.sweep.dir)")
    parser.add_argument("--interval", type=float, default=2.0,
                        help="seconds between two looks at the folder (default 2)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.interval <= 0:
        print(f"Error: --interval={args.interval} is not valid: expected seconds above 0",
              file=sys.stderr)
        raise SystemExit(2)
    sweep_dir = args.sweep_dir.expanduser()
    if not sweep_dir.is_dir():
        print(f"Error: {sweep_dir} is not a folder: give the sweep's hydra.sweep.dir",
              file=sys.stderr)
        raise SystemExit(2)
    try:
        code = watch(sweep_dir, args.interval)
    except WatchError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
