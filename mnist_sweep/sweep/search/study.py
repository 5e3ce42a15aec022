"""Where a search's study lives and which pruner judges its trials.

The sweeper (ask/tell) and the jobs (report/should_prune) open the same study from
different processes, so both go through these functions: the storage string and the pruner
settings mean the same thing on either side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnist_sweep.job.trial import SearchError

JOURNAL_FILE = "optuna.journal"
PRUNERS = ("none", "median", "successive_halving", "hyperband")


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
