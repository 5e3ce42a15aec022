"""SIGTERM to a sweep's process reaches the jobs it runs in other processes.

`kill <pid>` signals that one process. With joblib's launcher the jobs train in worker
processes, which would go on training into the sweep folder after the sweep had ended. The
sweep's process passes SIGTERM on to every process below it (found through Linux's /proc;
elsewhere there is nothing to find and nothing changes): their jobs stop at the next batch
end and record themselves as interrupted. Then it ends as SIGTERM ends it anyway.

A joblib worker holds the sweep's next jobs in its queue: one whose job SIGTERM interrupted
exits once the sweep's process has ended instead of starting them, and one about to start
a job after the sweep's process ended exits too (`worker_of_an_ended_sweep`), so no job of
a stopped sweep starts, and no idle worker is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

_previous: Any = None
# `hydra.sweep.dir=<folder>` (or hydra.run.dir) once the command knows its folder
_continue_with: list[str] = []
# The pid of a joblib sweep's process, for its workers (they inherit the environment)
JOBLIB_SWEEP_PID_ENV = "MNIST_SWEEP_JOBLIB_SWEEP_PID"


def mark_joblib_sweep() -> None:
    os.environ[JOBLIB_SWEEP_PID_ENV] = str(os.getpid())


def _joblib_sweep_pid() -> int | None:
    pid = os.environ.get(JOBLIB_SWEEP_PID_ENV, "")
    return int(pid) if pid.isdigit() else None


def in_joblib_worker() -> bool:
    pid = _joblib_sweep_pid()
    return pid is not None and pid != os.getpid()


def worker_of_an_ended_sweep() -> bool:
    """Whether this process is a joblib worker whose sweep's process has ended (its parent
    is no longer that process)."""
    return in_joblib_worker() and os.getppid() != _joblib_sweep_pid()


def sweep_ends_soon(wait_s: float = 3.0) -> bool:
    """In a joblib worker whose job SIGTERM stopped: whether the sweep's process ends within
    `wait_s` (it passed the signal on and then ends), not a SIGTERM to this worker alone."""
    if not in_joblib_worker():
        return False
    deadline = time.monotonic() + wait_s
    while not worker_of_an_ended_sweep():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended while we looked
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parentheses
        ppid = int(text[text.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def _forward_and_end(signum: int, frame: object) -> None:
    for pid in descendants(os.getpid()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def forward_sigterm_to_jobs() -> None:
    """From now until `stop_forwarding`, SIGTERM to this process reaches its jobs too."""
    global _previous
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        _previous = signal.signal(signal.SIGTERM, _forward_and_end)


def stop_forwarding() -> None:
    global _previous
    if _previous is not None:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, _previous)
        _previous = None


def remember_folder(key: str, folder: Path) -> None:
    """The command's sweep (or run) folder, for the line that ends it after a Ctrl-C."""
    _continue_with[:] = [key, str(folder)]


def stop_after_ctrl_c() -> None:
    """Ctrl-C that reached no job's training (while the sweep checks its jobs, as a job
    starts, between jobs): one line with the command to continue, the same as a job that
    Ctrl-C interrupts gives (job/train.py), and exit code 130, as Ctrl-C ends a job. The
    folder's lock goes now rather than when the process ends."""
    import logging

    from mnist_sweep.job.folder import folder_override
    from mnist_sweep.locks import release

    log = logging.getLogger("mnist_sweep")
    if not _continue_with:
        log.error("interrupted before anything was written: nothing to continue.")
        raise SystemExit(130)
    key, folder = _continue_with
    release(Path(folder))
    what = "sweep" if key == "hydra.sweep.dir" else "run"
    log.error("%s interrupted. Run the same command with %s to continue it%s.", what,
              folder_override(key, folder),
              "; finished jobs are skipped" if what == "sweep" else "")
    raise SystemExit(130)
