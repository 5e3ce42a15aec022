"""Signals, and the environment variables one process of a command passes to another.

A command runs in up to three kinds of process: the command's own (a single run trains in
it; a sweep checks, launches, watches and reports there, and with Hydra's basic launcher
trains its jobs there too), joblib's worker processes (`hydra/launcher=joblib`), and one
process per job with submitit (`submitit_local`, `slurm`). What each signal does:

SIGINT (Ctrl-C)
    a job training      recorded, raised at the end of the batch: the job records
                        `interrupted`, the command exits 130 naming the command that
                        continues it; a second Ctrl-C stops at once
    the sweep's process before or between jobs: one line with the command to continue,
                        exit 130 (`stop_after_ctrl_c`); the search and the race alike
    a joblib worker     a terminal's Ctrl-C reaches the worker's job, as above
SIGTERM (`kill`, `scancel`)
    a job training      as SIGINT, exit 143, `interrupted (SIGTERM)`
    the sweep's process passed on to every process below it, then the process ends with
                        143 (`forward_sigterm_to_jobs`)
    a joblib worker     its job ends `interrupted`; if the sweep's process is ending, the
                        worker exits and starts no queued job (`sweep_ends_soon`,
                        `worker_of_an_ended_sweep`), else the sweep goes on and lists it
    a Slurm job         the job ends `interrupted`; the sweep records one that could not
                        say so itself (sweep/slurm.py)
USR2 (Slurm's warning before a time limit or a preemption)
    a Slurm job         submitit's checkpoint-and-requeue runs at the end of the batch
                        (`call_between_batches`), after the job recorded `interrupted
                        (requeued by its launcher)`
SIGKILL
    any process         cannot be handled: status.json keeps `running` and the last whole
                        epoch's checkpoint; the next command takes the dead process's lock
                        over and resumes the job (the sweep sees Slurm's state of its jobs)

Why a job stops only between batches: Python runs a signal handler between any two
bytecodes of the main thread, so an exception raised there can land anywhere, e.g. inside
TensorBoard's `queue.put` after the event is counted but before the writer thread is woken:
Lightning's flush on the way out then waits for the writer's 120 s timeout. While a job
trains or tests, the first signal is therefore only recorded and raised at the end of the
current batch (job/callbacks.py's StopBetweenBatches), milliseconds later.

Environment variables passed between the processes of one command, named here only:

    MNIST_SWEEP_NUM_JOBS          the job count a sweep's process announces (a grid's size;
                                  a search's and a race's as they go), for every job's
                                  `[job k of N]` lines, in any process
    MNIST_SWEEP_DRY_RUN           `--dry-run` from the command line (cli.py) to the sweep's
                                  checks, past Hydra's parser
    MNIST_SWEEP_JOBLIB_SWEEP_PID  a joblib sweep's pid, for its workers: has it ended?
    MNIST_SWEEP_LIVE_PID          the process drawing the live table: workers then keep
                                  their log lines off the terminal
    MNIST_SWEEP_WARNED            the offline data fallback was announced once already

This module sits at the job level, the lowest that handles a signal; the sweep and the
command line use it from above.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NUM_JOBS_ENV = "MNIST_SWEEP_NUM_JOBS"
DRY_RUN_ENV = "MNIST_SWEEP_DRY_RUN"
JOBLIB_SWEEP_PID_ENV = "MNIST_SWEEP_JOBLIB_SWEEP_PID"
LIVE_PID_ENV = "MNIST_SWEEP_LIVE_PID"
DATA_WARNED_ENV = "MNIST_SWEEP_WARNED"


# ---- a job: stop between two batches ----------------------------------------------------

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Requests:
    deferring = False
    pending: int | None = None
    calls: list[Any] = []  # other signal handlers' work, put off to the batch end
    record_stop: Any = None  # the job's record of its interruption (install_stop_handlers)


def _exception_for(signum: int) -> BaseException:
    # Lightning's own exception for SIGTERM, so its loops treat it as a stop; imported here
    # since the command line reads this module before it knows it will train
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    return SIGTERMException() if signum == signal.SIGTERM else KeyboardInterrupt()


def _on_signal(signum: int, frame: object) -> None:
    if _Requests.deferring and _Requests.pending is None:
        _Requests.pending = signum
        return
    _Requests.pending = None
    raise _exception_for(signum)


def install_stop_handlers(record_stop: Any = None) -> dict[int, Any]:
    """Handle Ctrl-C and SIGTERM as above; returns the handlers to put back (none when not
    on the main thread, where Python allows no handler: some launchers run jobs there).
    `record_stop`: writes the job's record of its interruption, called before a launcher's
    handler ends the process (call_between_batches)."""
    _Requests.record_stop = record_stop
    previous: dict[int, Any] = {}
    for signum in STOP_SIGNALS:
        try:
            previous[signum] = signal.signal(signum, _on_signal)
        except ValueError:
            break
    _Requests.pending = None
    return previous


def restore_stop_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    _Requests.deferring = False
    _Requests.pending = None
    _Requests.calls = []
    _Requests.record_stop = None


def call_between_batches(work: Any) -> None:
    """Run `work` (another signal handler's, e.g. submitit's requeue at Slurm's time-limit
    warning, which ends the process by raising) at once outside the training and test
    loops, else at the end of the current batch, for the reason this module exists. The
    job records its interruption first: submitit's `scontrol requeue` makes Slurm kill the
    process at once, often before the exception it raises next reaches the job's own
    record."""
    if _Requests.deferring:
        _Requests.calls.append(work)
        return
    _run_launcher_work(work)


def _run_launcher_work(work: Any) -> None:
    if _Requests.record_stop is not None:
        _Requests.record_stop()
    work()


def raise_if_requested() -> None:
    """Run the work put off to the batch end, then raise the recorded signal's exception,
    if one came."""
    calls, _Requests.calls = _Requests.calls, []
    for work in calls:
        _run_launcher_work(work)
    signum, _Requests.pending = _Requests.pending, None
    if signum is not None:
        raise _exception_for(signum)


@contextmanager
def stops_between_batches() -> Iterator[None]:
    """Defer stop signals inside this block to the next batch end (or the block's end)."""
    _Requests.deferring = True
    try:
        yield
    finally:
        _Requests.deferring = False
    raise_if_requested()


# ---- a sweep: SIGTERM reaches its jobs in other processes; Ctrl-C before any job --------
# `kill <pid>` signals that one process. With joblib's launcher the jobs train in worker
# processes, which would go on training into the sweep folder after the sweep had ended:
# the sweep's process passes SIGTERM on to every process below it (found through Linux's
# /proc; elsewhere there is nothing to find and nothing changes), then ends as SIGTERM ends
# it anyway.

_previous: Any = None
# `hydra.sweep.dir=<folder>` (or hydra.run.dir) once the command knows its folder
_continue_with: list[str] = []


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

    from mnist_sweep.locks import release
    from mnist_sweep.record.folders import folder_override

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
