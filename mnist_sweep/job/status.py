"""A job's status file, `<job>/status.json`: how the sweep knows what finished.

Written atomically (temporary file + rename), so a reader sees either the old or the new
status, never half of one. `finished` is written only after the test metrics are logged,
which makes it the completion marker a resumed sweep trusts.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"
RUNNING, FINISHED, FAILED, DIVERGED, INTERRUPTED = (
    "running", "finished", "failed", "diverged", "interrupted")


def read_status(job_dir: Path) -> dict[str, Any] | None:
    path = Path(job_dir) / STATUS_FILE
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_status(job_dir: Path, status: str, **fields: Any) -> dict[str, Any]:
    job_dir = Path(job_dir)
    record = {**(read_status(job_dir) or {}), **fields, "status": status,
              "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tmp = job_dir / f".{STATUS_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, job_dir / STATUS_FILE)
    return record
