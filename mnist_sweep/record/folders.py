"""The job folders of a sweep folder: which sub-folders are jobs, their numbers, and the
command each was run with. One rule for all readers (the plan of a re-run, the live view,
the report, the race), so they never disagree about which folder is which job."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from mnist_sweep.record.layout import HYDRA_DIR, OVERRIDES_FILE, STATUS_FILE
from mnist_sweep.record.settings import chooses_sweeper

# Hydra names a job's folder `<num>_<overrides>` (hydra.sweep.subdir), or `<num>` alone
_JOB_NUMBER = re.compile(r"(\d+)(?:_|$)")
# a search trial's identity in a job's overrides: the sweeper's bookkeeping, not a setting
TRIAL_OVERRIDE = "search_trial"
_PLAIN_VALUE = re.compile(r"[\w/.+:~@%-]+")


def job_number(name: str) -> int | None:
    """The job number a folder name starts with (`3` of `3_head=gap,filters=16`, or of `3`)."""
    match = _JOB_NUMBER.match(name)
    return int(match.group(1)) if match else None


def is_job_folder(path: Path) -> bool:
    """A folder a job has written into: its status.json, or Hydra's files of the job."""
    return path.is_dir() and ((path / STATUS_FILE).is_file() or (path / HYDRA_DIR).is_dir())


def job_folders(sweep_dir: Path) -> list[Path]:
    """The job folders of a sweep folder in launch order (numbered ones by their number,
    then the others by name); none when the folder cannot be listed (not made yet)."""
    try:
        children = list(Path(sweep_dir).iterdir())
    except OSError:
        return []
    jobs = [p for p in children if not p.name.startswith(".") and is_job_folder(p)]
    return sorted(jobs, key=_launch_order)


def _launch_order(path: Path) -> tuple[int, int, str]:
    num = job_number(path.name)
    return (0, num, path.name) if num is not None else (1, 0, path.name)


def read_overrides(job_dir: Path) -> list[str] | None:
    """The job's overrides as typed (Hydra's overrides.yaml), less a search trial's
    identity; None when the file is missing or damaged."""
    try:
        loaded = yaml.safe_load((Path(job_dir) / OVERRIDES_FILE).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(loaded, list):
        return None
    return [str(o) for o in loaded if not str(o).lstrip("+~").startswith(TRIAL_OVERRIDE)]


def rerun_command(overrides: list[str] | None) -> str | None:
    """The command that runs a job again by hand, its overrides quoted for the shell; the
    sweeper it ran under (`race=seeds`) is left out: one job runs without it."""
    if overrides is None:
        return None
    own = [o for o in overrides if not chooses_sweeper(o)]
    return " ".join(["python -m mnist_sweep", *map(shlex.quote, own)])


def folder_override(key: str, folder: Path | str) -> str:
    """`key=<folder>` as one types it in a shell: quoted for Hydra where the path holds
    characters its override grammar reads (`=`, `,`, spaces in job folder names), then for
    the shell."""
    value = str(folder)
    if not _PLAIN_VALUE.fullmatch(value):
        value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    text = f"{key}={value}"
    if text == shlex.quote(text) or any(c in text for c in '$`"\\!'):
        return shlex.quote(text)
    return f'"{text}"'  # readable, and the same to the shell as shlex's quoting
