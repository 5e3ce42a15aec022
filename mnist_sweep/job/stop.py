"""Ctrl-C and SIGTERM stop a job between two batches, never in the middle of a write.

Python runs a signal handler between any two bytecodes of the main thread, so an exception
raised there can land anywhere, e.g. inside TensorBoard's `queue.put` after the event is
counted but before the writer thread is woken: Lightning's flush on the way out then waits
for the writer's 120 s timeout, and the process hangs that long after the signal. While a
job trains or tests, the first signal is therefore only recorded, and `StopBetweenBatches`
raises it at the end of the current batch (milliseconds later). Outside those loops, or on
a second signal (a user pressing Ctrl-C again), it is raised at once.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Requests:
    deferring = False
    pending: int | None = None
    calls: list[Any] = []  # other signal handlers' work, put off to the batch end
    record_stop: Any = None  # the job's record of its interruption (install_stop_handlers)


def _exception_for(signum: int) -> BaseException:
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


class StopBetweenBatches(pl.Callback):
    """Raises a deferred Ctrl-C / SIGTERM after the batch it arrived in."""

    def on_train_batch_end(self, *args: Any) -> None:
        raise_if_requested()

    def on_validation_batch_end(self, *args: Any) -> None:
        raise_if_requested()

    def on_test_batch_end(self, *args: Any) -> None:
        raise_if_requested()
