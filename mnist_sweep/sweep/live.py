"""The live view of a running sweep: one table of all its jobs, kept up to date.

It runs in the sweep's main process and follows the jobs through the status.json files they
rewrite after every epoch (job/callbacks.py: ProgressRecorder), never through the jobs'
own output: so it shows the same thing whether the jobs run in this process (the basic
launcher), in worker processes (joblib), in separate processes or hosts (submitit), or as
the trials of a search, where a job folder appears per trial.

On a terminal the table is redrawn in place (rich.live) and log lines scroll above it; when
stdout is not a terminal (a log file, a pipe, CI) it prints one plain line per job per epoch
instead. A multirun's jobs show no progress bar of their own (job/train.py).
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mnist_sweep.job.signals import LIVE_PID_ENV, NUM_JOBS_ENV
from mnist_sweep.record.folders import job_folders, job_number, read_overrides
from mnist_sweep.record.settings import QUIET_OVERRIDES
from mnist_sweep.record.status import (
    FINAL,
    FINISHED,
    INTERRUPTED,
    RUNNING,
    StatusDamaged,
    read_record,
    sec_per_epoch,
)
from mnist_sweep.report.race_section import read_race_or_none
from mnist_sweep.sweep.refusals import REFUSED, refused_jobs

WAITING, DAMAGED = "waiting", "damaged"
# Overrides that never tell two jobs apart (where the data is, how much is printed).
QUIET_KEYS = (*QUIET_OVERRIDES, "hydra.", "search_trial=")
PENDING_ASK_S = 5.0  # how often squeue is asked about waiting Slurm jobs
STYLES = {FINISHED: "green", RUNNING: "bold cyan", WAITING: "dim", "pruned": "yellow"}


@dataclass
class JobState:
    """One row of the view: what a job's folder says right now."""

    num: int | None
    name: str          # the job folder's name (or `#k` before it exists)
    label: str         # the overrides that tell it apart from the other jobs
    status: str
    epoch: int = 0
    max_epochs: int | None = None
    val_acc: float | None = None
    val_acc_best: float | None = None
    sec_per_epoch: float | None = None
    note: str = ""
    pending: str = ""  # why Slurm has not started it yet (sweep/slurm.py: pending_notes)

    @property
    def done(self) -> bool:
        return self.status not in (RUNNING, WAITING)


def shown_overrides(overrides: list[str]) -> list[str]:
    return [o for o in map(str, overrides)
            if not o.lstrip("+~").startswith(QUIET_KEYS)]


def labels_of(override_lists: list[list[str]], fixed: list[str] = ()) -> list[str]:
    """Name each job by the overrides that differ between the jobs, leaving out those typed
    as such on the sweep's command line (`fixed`): a trial of a search is named by the values
    it drew. A job with nothing left is named by all its overrides."""
    lists = [shown_overrides(o) for o in override_lists]
    common = set(fixed).union(set.intersection(*map(set, lists)) if len(lists) > 1 else ())
    return [" ".join(o for o in overrides if o not in common) or " ".join(overrides)
            or "(defaults)" for overrides in lists]


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class SweepWatcher:
    """Reads the state of every job of a sweep from its folder."""

    def __init__(self, sweep_dir: Path, planned: list[list[str]] | None = None,
                 total: int | None = None, fixed: list[str] = (), racing: bool = False
                 ) -> None:
        self.sweep_dir = Path(sweep_dir)
        self.planned = planned
        self.fixed = list(fixed)  # the sweep's command-line overrides
        self.total = len(planned) if planned is not None else total
        # a race: the most jobs it may run (the N of its job lines) is a bound, not a plan
        self.racing = racing
        self.started = time.time()
        self._overrides: dict[str, list[str]] = {}
        self._pending: dict[int, str] = {}
        self._pending_asked = 0.0

    def _overrides_of(self, job_dir: Path) -> list[str]:
        if job_dir.name not in self._overrides:
            overrides = read_overrides(job_dir)
            if overrides is None:
                return []  # not written yet: try again at the next look
            self._overrides[job_dir.name] = overrides
        return self._overrides[job_dir.name]

    def _state(self, num: int | None, name: str, job_dir: Path | None,
               refused: dict[int, dict[str, str]] | None = None) -> JobState:
        state = JobState(num, name, "", WAITING)
        if num is not None and num in (refused or {}):
            # its folder's record, if any, is another run's: never shown as this job's
            state.status, state.note = REFUSED, refused[num]["reason"]
            return state
        if job_dir is None:
            return state
        try:
            status = read_record(job_dir)
        except StatusDamaged as exc:
            state.status, state.note = DAMAGED, str(exc)
            return state
        if status is None:
            return state
        state.status = status.get("status", "unknown")
        if state.status not in FINAL and _before(status.get("updated"), self.started):
            # left by an earlier command in this folder: this sweep runs it again
            state.status, state.note = WAITING, f"was {status.get('status')}"
            return state
        state.epoch = int(status.get("epoch") or 0)
        state.max_epochs = status.get("max_epochs")
        state.val_acc = status.get("val_acc")
        state.val_acc_best = status.get("val_acc_best")
        state.sec_per_epoch = sec_per_epoch(status.get("epoch_seconds") or [])
        if state.status != RUNNING and state.status != FINISHED:
            state.note = status.get("error") or ""
        return state

    def states(self) -> list[JobState]:
        """Every job: the planned ones in order (waiting until their folder appears), then
        the folders that are not in the plan (trials of a search), by job number."""
        dirs = {p.name: p for p in job_folders(self.sweep_dir)}
        by_num = {job_number(name): path for name, path in dirs.items()
                  if job_number(name) is not None}
        rows: list[tuple[JobState, list[str]]] = []
        used: set[str] = set()
        refused = refused_jobs(self.sweep_dir)
        for num, overrides in enumerate(self.planned or []):
            job_dir = by_num.get(num)
            if job_dir is not None:
                used.add(job_dir.name)
            rows.append((self._state(num, job_dir.name if job_dir else f"#{num}", job_dir,
                                     refused), overrides))
        rest = [p for n, p in dirs.items() if n not in used]  # in launch order
        for job_dir in rest:
            rows.append((self._state(job_number(job_dir.name), job_dir.name, job_dir, refused),
                         self._overrides_of(job_dir)))
        labels = labels_of([o for _, o in rows], self.fixed)
        for (state, _), label in zip(rows, labels, strict=True):
            state.label = label
        states = [state for state, _ in rows]
        self._note_pending(states)
        return states

    def _note_pending(self, states: list[JobState]) -> None:
        """Slurm's reason for each job of a Slurm sweep that still waits to start (or to
        start again, after a requeue), asked at most every PENDING_ASK_S seconds. A job whose
        record says `running` is asked too: Slurm may have requeued it (and killed it)
        before it could record its stop."""
        from mnist_sweep.sweep.slurm import JOBS_FILE

        if not (self.sweep_dir / JOBS_FILE).is_file():
            return
        waiting = [s for s in states if s.num is not None
                   and s.status in (WAITING, INTERRUPTED, RUNNING)]
        if time.monotonic() - self._pending_asked >= PENDING_ASK_S:
            from mnist_sweep.sweep.slurm import pending_notes

            self._pending_asked = time.monotonic()
            self._pending = pending_notes(self.sweep_dir, [s.num for s in waiting])
        for s in waiting:
            s.pending = self._pending.get(s.num, "")
            s.note = s.pending or s.note

    def time_left(self, states: list[JobState], not_started: int | None = None
                  ) -> float | None:
        """Seconds until the sweep ends, estimated from the epochs still to train and the
        seconds per epoch seen so far, shared by the jobs running at once. `not_started`:
        the jobs without a folder yet, when the caller has counted them already (by default
        a search's trials beyond those seen, a race's round's runs not started)."""
        speeds = [s.sec_per_epoch for s in states if s.sec_per_epoch]
        epochs = [s.max_epochs for s in states if s.max_epochs]
        if not speeds or not epochs:
            return None
        typical, planned_epochs = statistics.median(speeds), max(epochs)
        work = 0.0
        for s in states:
            if not s.done:
                todo = (s.max_epochs or planned_epochs) - s.epoch
                work += max(todo, 0) * (s.sec_per_epoch or typical)
        if not_started is None:
            not_started = (len(self.round_unseen(states)) if self.racing
                           else (self.total or 0) - len(states))
        work += max(not_started, 0) * planned_epochs * typical
        running = sum(s.status == RUNNING for s in states)
        return work / max(running, 1)

    def race_bound(self) -> int | None:
        """The most jobs a race may run: as its sweeper gave the job lines (same process),
        else as race.json records it (`mnist-sweep watch`)."""
        if not self.racing:
            return None
        bound = os.environ.get(NUM_JOBS_ENV, "")
        if bound.isdigit():
            return int(bound)
        most = (read_race_or_none(self.sweep_dir) or {}).get("runs_most")
        return most if isinstance(most, int) else None

    def round_unseen(self, states: list[JobState]) -> list[int]:
        """The job numbers of the race's current round that have no folder yet: the
        launcher has not started them (race.json names the round's jobs)."""
        jobs = (read_race_or_none(self.sweep_dir) or {}).get("round_jobs") or []
        seen = {s.num for s in states}
        return [num for num in jobs if isinstance(num, int) and num not in seen]

    def job_count(self, states: list[JobState], bound: int | None = None) -> int:
        """The N of `[job k of N]`: the plan's, a search's trials, a race's bound (`bound`
        when the caller has read it already), else the jobs seen so far."""
        if self.total is not None:
            return self.total
        return bound or self.race_bound() or len(states)

    def summary(self, states: list[JobState]) -> str:
        bound = self.race_bound() if self.total is None else None
        total = self.job_count(states, bound)
        counts: dict[str, int] = {}
        for s in states:
            if s.done and s.status != FINISHED:
                counts[s.status] = counts.get(s.status, 0) + 1
        finished = sum(s.status == FINISHED for s in states)
        running = sum(s.status == RUNNING for s in states)
        others = "".join(f", {n} {status}" for status, n in sorted(counts.items()))
        if bound is not None:  # a race's rounds are not known ahead: this round's time
            unseen = len(self.round_unseen(states))
            left = self.time_left(states, unseen) if running else 0
            waiting = sum(s.status == WAITING for s in states) + unseen
            queued = f", {waiting} more in this round" if running and waiting else ""
            return (f"{finished} of at most {total} jobs finished{others}, {running} running"
                    f"{queued}; "
                    f"{fmt_duration(time.time() - self.started)} elapsed, "
                    f"about {fmt_duration(left)} left in this round")
        left = self.time_left(states) if running or sum(s.done for s in states) < total else 0
        return (f"{finished} of {total} jobs finished{others}, {running} running; "
                f"{fmt_duration(time.time() - self.started)} elapsed, "
                f"about {fmt_duration(left)} left")


def _before(updated: Any, started: float) -> bool:
    """Whether a status record was last written before this sweep started (1 s steps)."""
    try:
        return time.mktime(time.strptime(str(updated), "%Y-%m-%dT%H:%M:%S")) < int(started)
    except (ValueError, OverflowError):
        return False


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def epoch_text(state: JobState) -> str:
    return f"{state.epoch}/{state.max_epochs}" if state.max_epochs else "-"


def render(watcher: SweepWatcher, states: list[JobState]) -> Group:
    """The table, one row per job, and the sweep's progress under it."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("job", justify="right", no_wrap=True)
    # the config keeps its width on a narrow terminal (wrapped at spaces); the note gives way
    longest = max((len(word) for s in states for word in s.label.split()), default=6)
    table.add_column("config", min_width=min(longest, 40))
    table.add_column("status", no_wrap=True)
    for name in ("epoch", "val acc", "best", "s/epoch"):
        table.add_column(name, justify="right", no_wrap=True)
    notes = any(s.note for s in states)
    if notes:
        table.add_column("note", max_width=60)
    for s in states:
        table.add_row(
            "-" if s.num is None else str(s.num), s.label,
            Text(s.status, style=STYLES.get(s.status, "red")), epoch_text(s),
            _acc(s.val_acc), _acc(s.val_acc_best),
            "-" if s.sec_per_epoch is None else f"{s.sec_per_epoch:.2f}",
            *([s.note] if notes else []))
    from mnist_sweep.report.race_section import live_lines  # a race's state, from race.json

    race = [Text(line) for line in live_lines(watcher.sweep_dir)]
    return Group(Text(f"Sweep {watcher.sweep_dir}"), table, *race,
                 Text(watcher.summary(states)))


def job_tag(watcher: SweepWatcher, state: JobState, states: list[JobState]) -> str:
    """`[job k of N] label`, N as the job's own start line gives it."""
    return (f"[job {'?' if state.num is None else state.num + 1} of "
            f"{watcher.job_count(states)}] {state.label}")


def pending_line(watcher: SweepWatcher, state: JobState, states: list[JobState]) -> str:
    """The plain line printed when Slurm's reason for a waiting job is first seen or changes."""
    return f"{job_tag(watcher, state, states)}: {state.pending} | sweep: {watcher.summary(states)}"


def epoch_line(watcher: SweepWatcher, state: JobState, states: list[JobState]) -> str:
    """The plain line printed when a job completes an epoch (stdout not a terminal)."""
    speed = "" if state.sec_per_epoch is None else f", {state.sec_per_epoch:.2f} s/epoch"
    return (f"{job_tag(watcher, state, states)}: epoch {epoch_text(state)}, "
            f"val acc {_acc(state.val_acc)}, best {_acc(state.val_acc_best)}{speed} "
            f"| sweep: {watcher.summary(states)}")


class LiveView:
    """Shows a sweep's jobs until `stop()`: redrawn in place on a terminal, else as lines."""

    def __init__(self, watcher: SweepWatcher, stream: TextIO | None = None,
                 interval: float | None = None) -> None:
        self.watcher = watcher
        self.stream = stream or sys.stdout
        self.terminal = self.stream.isatty()
        self.interval = interval or 0.5
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Live | None = None
        self._seen: dict[str, int] = {}
        self._pending_shown: dict[str, str] = {}
        self._handlers: list[tuple[logging.StreamHandler, TextIO]] = []

    def start(self) -> LiveView:
        if self.terminal:
            original = (sys.stdout, sys.stderr)
            self._live = Live(console=Console(file=self.stream), auto_refresh=False,
                              redirect_stdout=True, redirect_stderr=True,
                              vertical_overflow="visible")
            self._live.start()
            self._repoint_log_handlers(original)
        self._look()
        self._thread = threading.Thread(target=self._run, name="sweep-live-view", daemon=True)
        self._thread.start()
        return self

    def _repoint_log_handlers(self, original: tuple[TextIO, TextIO]) -> None:
        """Log handlers opened before the view write to the real stdout/stderr, which would
        tear the table: send them through rich's redirect, which prints above it."""
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                    handler, logging.FileHandler) and handler.stream in original:
                stream = sys.stdout if handler.stream is original[0] else sys.stderr
                self._handlers.append((handler, handler.setStream(stream)))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._look()
            except Exception:  # a view must never stop a sweep; the next look tries again
                continue

    def _look(self) -> None:
        states = self.watcher.states()
        if self._live is not None:
            self._live.update(render(self.watcher, states), refresh=True)
            return
        for state in states:
            if state.pending and self._pending_shown.get(state.name) != state.pending:
                self._pending_shown[state.name] = state.pending
                print(pending_line(self.watcher, state, states), file=self.stream, flush=True)
            # one line per epoch seen; epochs shorter than the interval share a line
            if state.status != WAITING and state.epoch > self._seen.get(state.name, 0):
                self._seen[state.name] = state.epoch
                print(epoch_line(self.watcher, state, states), file=self.stream, flush=True)

    def stop(self) -> None:
        """Show the final state and give the terminal back; safe to call twice."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self._live is None:
            self._look()  # the lines of the epochs since the last look
        else:
            live, self._live = self._live, None
            try:
                live.update(render(self.watcher, self.watcher.states()), refresh=True)
            finally:
                live.stop()
                for handler, stream in self._handlers:
                    handler.setStream(stream)
                self._handlers.clear()


_active: LiveView | None = None


def start_live_view(sweep_dir: Path, planned: list[list[str]] | None,
                    total: int | None, fixed: list[str] = (), racing: bool = False
                    ) -> LiveView:
    """Start the one live view of this process; cli.main stops it however the command ends
    (an exception, Ctrl-C), so the terminal is always given back."""
    global _active
    stop_live_view()
    _active = LiveView(SweepWatcher(sweep_dir, planned, total, fixed, racing)).start()
    return _active


def stop_live_view() -> None:
    global _active
    os.environ.pop(LIVE_PID_ENV, None)
    view, _active = _active, None
    if view is not None:
        view.stop()



class LiveViewCallback(Callback):
    """Hydra callback (conf/config.yaml: hydra.callbacks.live), listed after the sweep's own
    callback: it starts once the sweep has been checked, and Hydra calls the end callbacks
    in reverse order, so the view is stopped before the report is printed."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mnist_sweep.sweep.callbacks import dry_run_requested, expand_basic_sweep, is_race

        if dry_run_requested():  # a race's dry run prints its plan and trains nothing
            return
        planned = expand_basic_sweep(config)
        trials = config.hydra.sweeper.get("n_trials")
        view = start_live_view(Path(str(config.hydra.sweep.dir)), planned,
                               int(trials) if isinstance(trials, int) else None,
                               [str(o) for o in config.hydra.overrides.task], is_race(config))
        if view.terminal:
            os.environ[LIVE_PID_ENV] = str(os.getpid())

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        stop_live_view()


def _not_a_warning(record: logging.LogRecord) -> bool:
    return record.name != "py.warnings"


class SharedTerminalCallback(Callback):
    """Hydra callback listed before all others (conf/config.yaml: hydra.callbacks.terminal).

    A job in another process that shares the terminal with the live view (a joblib worker)
    writes only its log lines at WARNING and above to the terminal, and no Python warnings:
    anything it writes there moves the cursor behind the back of the process drawing the
    table, whose next redraw then starts lower and leaves the top of the previous table on
    the screen (on a machine with Slurm installed, every job's Lightning warning "The `srun`
    command is available on your system but is not used" left one such stale table). Its
    INFO lines and warnings still go to the job's cli.log. It must come first, before the
    other callbacks log the job's start.
    """

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        drawer = os.environ.get(LIVE_PID_ENV)
        if drawer is None or drawer == str(os.getpid()):
            return
        logging.captureWarnings(True)  # warnings.warn -> the `py.warnings` logger
        for handler in logging.getLogger().handlers:
            stream = getattr(handler, "stream", None)
            if (not isinstance(handler, logging.FileHandler) and stream is not None
                    and hasattr(stream, "isatty") and stream.isatty()):
                handler.setLevel(logging.WARNING)
                if _not_a_warning not in handler.filters:
                    handler.addFilter(_not_a_warning)
