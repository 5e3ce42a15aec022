"""Jobs refused when they started, recorded in the sweep folder.

A job is refused at its start when its folder changed after the sweep's check (another
configuration's record appeared, another process holds it). The job runs in the sweep's
process, in a joblib worker or as a Slurm job; the sweep's process reads the record to list
the refused jobs and end with exit code 1, and the live view to show such a job as
refused instead of the record its folder holds, which is another run's.
"""

from __future__ import annotations

import json
from pathlib import Path

from mnist_sweep.record.files import write_atomic

REFUSED_DIR = ".refused"  # <sweep>/.refused/<job number>.json, written by this module only
REFUSED = "refused"


def record_refusal(sweep_dir: Path, num: int, job: str, reason: str) -> None:
    folder = Path(sweep_dir) / REFUSED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / f"{num}.json", json.dumps({"job": job, "reason": reason}) + "\n")


def refused_jobs(sweep_dir: Path) -> dict[int, dict[str, str]]:
    """Job number -> {"job": folder name, "reason": ...} of this sweep's refused jobs."""
    found = {}
    for path in _records(Path(sweep_dir)):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a record cut short: the job's own end line said why
        if isinstance(record, dict):
            found[int(path.stem)] = {"job": str(record.get("job", "")),
                                     "reason": str(record.get("reason", ""))}
    return dict(sorted(found.items()))


def clear_refusals(sweep_dir: Path) -> None:
    """Forget an earlier command's refusals (the same command runs those jobs again)."""
    folder = Path(sweep_dir) / REFUSED_DIR
    for path in _records(Path(sweep_dir)):
        path.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # absent, or holding a file this module did not write
        pass


def _records(sweep_dir: Path) -> list[Path]:
    folder = sweep_dir / REFUSED_DIR
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.suffix == ".json" and p.stem.isdigit()]
