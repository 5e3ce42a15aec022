"""A search trial as both sides see it: the search process that asks and tells, and the
job that reports its validation accuracy after every epoch and asks whether to stop. They
run in different processes (joblib workers, Slurm jobs), so both open the study through
these functions: the storage string, the pruner and a trial's attributes mean the same on
either side. Lives at the job level so that a job never imports the sweep.

User attributes of a trial (visible in optuna-dashboard):
    owner       host:pid of the search process that asked it
    folder_num  the number in its job folder's name: its own number, or for a trial that
                replaces one lost with a killed search, the lost trial's (the job then
                continues from that folder's last checkpoint)
    retry_of    the number of the trial it replaces
    job_dir     its job folder (set by the job when training starts)
    error       why it failed
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # optuna is an optional extra, imported where a search uses it
    import optuna
    from optuna.trial import FrozenTrial

PRUNER_ATTR = "pruner"  # study user attribute: the pruner spec the jobs rebuild
OWNER, FOLDER_NUM, RETRY_OF, JOB_DIR, ERROR, REPLACED = (
    "owner", "folder_num", "retry_of", "job_dir", "error", "replaced_by_retry")



class SearchError(ValueError):
    """A search setting the user can fix on the command line."""


def open_storage(location: str) -> optuna.storages.BaseStorage:
    """A database URL opens Optuna's RDB storage, anything else a journal file (which
    several processes can append to: Optuna locks it per write)."""
    try:
        return _open_storage(location)
    except SearchError:
        raise
    except Exception as exc:  # a bad URL, a missing database driver, an unwritable folder
        raise SearchError(f"the study storage {location} cannot be opened "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                          f"). Fix hydra.sweeper.storage (null keeps the study in the sweep "
                          f"folder).") from None


def _open_storage(location: str) -> optuna.storages.BaseStorage:
    import optuna

    if "://" in location:
        kwargs: dict[str, Any] = {}
        if location.startswith("sqlite"):
            kwargs = {"engine_kwargs": {"connect_args": {"timeout": 60}}}
        return optuna.storages.RDBStorage(location, **kwargs)
    from optuna.storages.journal import JournalFileBackend

    Path(location).parent.mkdir(parents=True, exist_ok=True)
    note = repair_torn_journal(Path(location))
    if note:
        logging.getLogger("mnist_sweep").warning(note)
    return optuna.storages.JournalStorage(JournalFileBackend(location))


def repair_torn_journal(path: Path) -> str | None:
    """Cut a torn last record off a journal file before anything is appended to it.

    Optuna's JournalFileBackend writes each record as one JSON line ending in a newline.
    A process killed mid-write leaves a last line without its newline; Optuna's reader skips
    such a line only while it is the last one, so the next append would glue a whole record
    onto it and make every later read fail. The torn line is dropped (it was never a whole
    record, and Optuna's reader never read it); every whole record stays. A whole line that
    is not JSON, last or not, is not what a crash leaves: refused by its line number,
    nothing written (Optuna's own error names a column of the line alone).
    Done under Optuna's own lock of the file, so no live writer's record is taken for torn.
    """
    import json

    from optuna.storages.journal import JournalFileSymlinkLock

    if not path.is_file() or path.stat().st_size == 0:
        return None
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()
        whole = data.rfind(b"\n") + 1  # bytes up to the end of the last whole record
        lines = data[:whole].split(b"\n")[:-1]
        for number, line in enumerate(lines, start=1):
            try:
                json.loads(line)
            except ValueError:
                # Optuna's own error names a column of the line alone ("line 1 column 61")
                which = (f"its last whole record (line {number})" if number == len(lines)
                         else f"line {number} of its {len(lines)} records")
                raise SearchError(
                    f"the study journal {path} is damaged: {which} is not JSON, which a "
                    f"crash mid-write does not leave. Nothing was written to it. Move that "
                    f"file away to start a new study (or choose another hydra.sweep.dir), or "
                    f"repair line {number} of it (one JSON record per line) to continue "
                    f"this study.") from None
        if whole == len(data):
            return None
        torn = data[whole:]
        with open(path, "r+b") as f:
            f.truncate(whole)
            f.flush()
            os.fsync(f.fileno())
    finally:
        lock.release()
    shown = torn[:80].decode("utf-8", errors="replace")
    return (f"{path}: its last record was cut short ({len(torn)} bytes without their line end, "
            f"{shown!r}{'...' if len(torn) > 80 else ''}), as a process killed mid-write "
            f"leaves it; it was dropped, and the {len(lines)} whole records before it are kept.")


def make_pruner(spec: dict[str, Any] | None) -> optuna.pruners.BasePruner:
    import optuna

    name = (spec or {}).get("name", "none")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec["n_startup_trials"],
                                           n_warmup_steps=spec["n_warmup_steps"])
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=spec["min_resource"], reduction_factor=spec["reduction_factor"])
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec["min_resource"], max_resource=spec["max_epochs"],
            reduction_factor=spec["reduction_factor"])
    return optuna.pruners.NopPruner()


def frozen_trial(study: optuna.Study, number: int) -> FrozenTrial:
    for trial in study.get_trials(deepcopy=False):
        if trial.number == number:
            return trial
    raise LookupError(f"study {study.study_name} has no trial {number}")


def live_trial(study: optuna.Study, number: int) -> optuna.trial.Trial:
    """A handle on trial `number` of a stored study, from any process: report, set
    attributes, ask should_prune() (Optuna's ask-and-tell across processes)."""
    import optuna

    return optuna.trial.Trial(study, frozen_trial(study, number)._trial_id)
