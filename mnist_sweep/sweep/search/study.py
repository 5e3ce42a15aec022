"""Where a search's study lives and which pruner judges its trials.

The sweeper (ask/tell) and the jobs (report/should_prune) open the same study from
different processes, so both go through these functions: the storage string and the pruner
settings mean the same thing on either side.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import optuna

JOURNAL_FILE = "optuna.journal"
PRUNERS = ("none", "median", "successive_halving", "hyperband")
PRUNER_ATTR = "pruner"  # study user attribute: the pruner spec the jobs rebuild


class SearchError(ValueError):
    """A search setting the user can fix on the command line."""


def storage_location(storage: str | None, sweep_dir: Path) -> str:
    """An absolute storage string: a database URL, or the path of a journal file.

    None means the journal file in the sweep folder, so every search can be continued.
    Relative paths are made absolute because jobs may run in other processes or folders.
    """
    if not storage:
        return str((sweep_dir / JOURNAL_FILE).resolve())
    if "://" not in storage:
        return str(Path(storage).expanduser().resolve())
    scheme, rest = storage.split("://", 1)
    if scheme.split("+")[0] == "sqlite" and rest.startswith("/") and not rest.startswith("//"):
        # sqlite:///relative.db -> sqlite:////absolute/relative.db
        return f"{scheme}:///{Path(rest[1:]).resolve()}"
    return storage


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


PRUNING_DEFAULTS = {"min_resource": 1, "reduction_factor": 3, "n_startup_trials": 5,
                    "n_warmup_steps": 2}
PRUNING_MINIMUM = {"min_resource": 1, "reduction_factor": 2, "n_startup_trials": 0,
                   "n_warmup_steps": 0}


def pruner_spec(name: str, settings: dict[str, Any], max_epochs: int) -> dict[str, Any]:
    """The pruner as plain data, stored with the study so every job builds the same one."""
    if name not in PRUNERS:
        raise SearchError(f"hydra.sweeper.pruner={name} is not valid: expected "
                          f"{' | '.join(PRUNERS)}.")
    unknown = sorted(set(settings) - set(PRUNING_DEFAULTS))
    if unknown:
        raise SearchError(f"hydra.sweeper.pruning.{unknown[0]} is not a pruning setting: "
                          f"expected {', '.join(PRUNING_DEFAULTS)}.")
    merged = PRUNING_DEFAULTS | settings
    for key, minimum in PRUNING_MINIMUM.items():
        value = merged[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise SearchError(f"hydra.sweeper.pruning.{key}={value} is not valid: expected "
                              f"an integer >= {minimum}.")
    return {"name": name, "max_epochs": max_epochs, **merged}


def make_pruner(spec: dict[str, Any] | None) -> optuna.pruners.BasePruner:
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
