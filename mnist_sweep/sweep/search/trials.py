"""A trial's bookkeeping across processes: who runs it, where its job folder is, how its
job ended, and what happens to trials whose search process died. The trial attributes
both the search and its jobs use are named in job/trial.py."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mnist_sweep.job.trial import (
    ERROR,
    FOLDER_NUM,
    JOB_DIR,
    OWNER,
    REPLACED,
    RETRY_OF,
    live_trial,
)
from mnist_sweep.locks import process_alive
from mnist_sweep.record.status import FINISHED, PRUNED, read_status_or_none


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_gone(owner: str | None) -> bool | None:
    """True if the process that ran a trial no longer exists; None if that cannot be known
    from here (another host)."""
    if not owner or ":" not in owner:
        return True
    host, pid = owner.rsplit(":", 1)
    if host != socket.gethostname():
        return None
    return not pid.isdigit() or not process_alive(int(pid))


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """A trial replaced by a retry does not use up one of the search's n_trials."""
    return trial.state != TrialState.WAITING and not trial.user_attrs.get(REPLACED)


def job_outcome(job_dir: Path | None, returned: Any, metric: str, own_folder: bool = True,
                ) -> tuple[TrialState, float | None, str | None]:
    """How a trial ended, from its job's return value and status file.

    The status file counts only when `own_folder` (its job trained for this trial): a job
    refused at its start returns nothing and leaves its folder's record as it was, another
    run's, whose value or pruning must not become this trial's.
    """
    if isinstance(returned, (int, float)) and math.isfinite(returned):
        return TrialState.COMPLETE, float(returned), None
    if not own_folder:
        return TrialState.FAIL, None, "its job returned no value and did not train this trial"
    status = (read_status_or_none(job_dir) if job_dir else None) or {}
    if status.get("status") == PRUNED:
        return TrialState.PRUNED, None, None
    value = returned
    if value is None and status.get("status") == FINISHED:
        value = (status.get("metrics") or {}).get(metric)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return TrialState.COMPLETE, float(value), None
    error = status.get("error") or (f"job ended {status['status']}" if status.get("status")
                                    else "the job left no status")
    return TrialState.FAIL, None, error


def settle_lost_trials(study: optuna.Study, metric: str) -> list[str]:
    """Trials left RUNNING by a search process that no longer exists: a job that had ended
    is recorded as it ended; any other is marked failed and asked again, in its own folder.

    Returns one line per trial for the log.
    """
    notes = []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = frozen.user_attrs.get(OWNER)
        gone = owner_is_gone(owner)
        if not gone:
            if gone is None:
                notes.append(f"trial {frozen.number} is running on {owner}: left as it is")
            continue
        job_dir = frozen.user_attrs.get(JOB_DIR)
        state, value, _ = job_outcome(Path(job_dir) if job_dir else None, None, metric)
        if state == TrialState.FAIL:
            trial = live_trial(study, frozen.number)
            trial.set_user_attr(ERROR, "its search process stopped while it ran")
            trial.set_user_attr(REPLACED, True)
            study.tell(frozen.number, state=TrialState.FAIL)
            study.enqueue_trial(frozen.params, user_attrs={
                FOLDER_NUM: frozen.user_attrs.get(FOLDER_NUM, frozen.number),
                RETRY_OF: frozen.number}, skip_if_exists=False)
            notes.append(f"trial {frozen.number} was lost with its search process: marked "
                         f"failed and asked again with the same parameters")
        else:
            study.tell(frozen.number, value, state=state)
            notes.append(f"trial {frozen.number} had ended ({state.name.lower()}) when its "
                         f"search process stopped: recorded")
    return notes
