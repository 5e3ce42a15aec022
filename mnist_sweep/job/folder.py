"""What a job folder holds, and what this job may do there: run, resume, skip or refuse.

The verdict is read from the folder's status.json and its recorded signature (see
signature.py): a folder never holds the numbers of one configuration under the name of
another, and a finished result is never run again or overwritten.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from mnist_sweep.config import RunConfig
from mnist_sweep.job.signature import differences
from mnist_sweep.job.status import DIVERGED, FINAL, StatusDamaged, read_status

RUN, RESUME, SKIP, REFUSE = "run", "resume", "skip", "refuse"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT = Path(CHECKPOINT_DIR) / "last.ckpt"  # relative to the job folder


# Jobs of this process refused when they were about to start (their folder changed after
# the sweep's check, or another process holds it), by folder: the folder's status.json is
# then another run's, and the job's end line must say "refused", not show that run's result.
REFUSED_AT_START: dict[Path, str] = {}


@dataclass
class Verdict:
    action: str  # run | resume | skip | refuse
    detail: str  # for the dry run and for messages


def recorded_command(folder: Path) -> str | None:
    """The command line a folder's run was started with, from Hydra's overrides.yaml."""
    try:
        overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return " ".join(["python -m mnist_sweep", *map(shlex.quote, map(str, overrides or []))])


_PLAIN_VALUE = re.compile(r"[\w/.+:~@%-]+")


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


def judge(folder: Path, run_cfg: RunConfig, where: str) -> Verdict:
    """The verdict for running `run_cfg` in `folder`; `where` names the override that picks
    the folder (hydra.sweep.dir or hydra.run.dir), for the messages."""
    too_long = name_too_long(folder)
    if too_long:
        return Verdict(REFUSE, too_long)
    if folder.exists() and not folder.is_dir():
        return Verdict(REFUSE, f"{folder} is a file, not a folder: move it away or choose "
                               f"another {where}.")
    try:
        status = read_status(folder)
    except StatusDamaged as exc:
        return Verdict(REFUSE, f"{exc}: it may hold a finished result, so it is not run "
                               f"again. Look at it, then delete {folder} to run this job "
                               f"from scratch, or choose another {where}.")
    if status is None:
        return Verdict(RUN, "new")
    state = status["status"]
    diff = differences(status.get("signature"), run_cfg)
    if diff:
        changed = "; ".join(diff)
        if state in FINAL:
            return Verdict(REFUSE, f"{folder} holds a {state} run of another configuration "
                                   f"({changed}); finished results are never overwritten. "
                                   f"Choose another {where}.")
        command = recorded_command(folder)
        again = f"`{command}` (with {where}=...)" if command else "its original overrides"
        return Verdict(REFUSE, f"{folder} holds an unfinished ({state}) run started with "
                               f"another configuration ({changed}). To continue it, run "
                               f"{again}; to start this configuration fresh, choose another "
                               f"{where} or delete {folder}.")
    if state in FINAL:
        if not run_cfg.resume:
            return Verdict(REFUSE, f"{folder} holds a {state} run and resume=false; finished "
                                   f"results are never overwritten. Choose another {where} "
                                   f"or drop resume=false.")
        return Verdict(SKIP, f"already {state}")
    if run_cfg.resume and (folder / CHECKPOINT).is_file() and state != DIVERGED:
        return Verdict(RESUME, f"{state}: continue after epoch {status.get('epoch', '?')}")
    return Verdict(RUN, f"{state}: run again from the start")


def name_too_long(folder: Path) -> str | None:
    """A message when a folder name exceeds what its file system allows."""
    existing = Path(os.path.abspath(folder))
    while not _exists(existing):
        existing = existing.parent
    limit = os.pathconf(existing, "PC_NAME_MAX")
    long = [part for part in folder.parts if len(part.encode()) > limit]
    if long:
        return (f"the folder name {long[0]!r} is {len(long[0].encode())} bytes, over the "
                f"{limit} its file system allows; choose a shorter hydra.sweep.dir / "
                f"hydra.run.dir or hydra.sweep.subdir.")
    return None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name too long to look up
        return False
