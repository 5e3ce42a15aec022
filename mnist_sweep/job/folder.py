"""What a job folder holds, and what this job may do there: run, resume, skip or refuse.

The verdict is read from the folder's status.json and its recorded signature (see
signature.py): a folder never holds the numbers of one configuration under the name of
another, and a finished result is never run again or overwritten.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from mnist_sweep.config import RunConfig
from mnist_sweep.job.signature import differences, restoring_overrides
from mnist_sweep.locks import process_alive
from mnist_sweep.record.folders import read_overrides, rerun_command
from mnist_sweep.record.layout import (
    CHECKPOINT,
    CHECKPOINT_DIR,
    EVENT_FILES,
    HPARAMS_FILE,
    PREDICTIONS_FILE,
    TEMPORARIES,
)
from mnist_sweep.record.status import DIVERGED, FINAL, StatusDamaged, read_record

RUN, RESUME, SKIP, REFUSE = "run", "resume", "skip", "refuse"


# Jobs of this process refused when they were about to start (their folder changed after
# the sweep's check, or another process holds it), by folder: the folder's status.json is
# then another run's, and the job's end line must say "refused", not show that run's result.
REFUSED_AT_START: dict[Path, str] = {}


@dataclass
class Verdict:
    action: str  # run | resume | skip | refuse
    detail: str  # for the dry run and for messages


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
        status = read_record(folder)  # damaged or not, as the report and live view see it
    except StatusDamaged as exc:
        return Verdict(REFUSE, f"{exc}: it may hold a finished result, so it is not run "
                               f"again. Look at it, then delete {folder} to run this job "
                               f"from scratch, or choose another {where}.")
    if status is None:
        return Verdict(RUN, "new" + _replaces(folder, run_cfg, "no status.json"))
    state = status["status"]
    diff = differences(status.get("signature"), run_cfg)
    if diff:
        changed = "; ".join(diff)
        if state in FINAL:
            return Verdict(REFUSE, f"{folder} holds a {state} run of another configuration "
                                   f"({changed}); finished results are never overwritten. "
                                   f"Choose another {where}.")
        command = rerun_command(read_overrides(folder))
        if command:  # with the values of settings whose default changed since it started
            command = " ".join([command, *(shlex.quote(o) for o in restoring_overrides(
                status.get("signature"), run_cfg) if f" {o.split('=', 1)[0]}=" not in command)])
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
        from mnist_sweep.job.checkpoints import checkpoint_verdict

        epochs, problem = checkpoint_verdict(folder / CHECKPOINT, run_cfg)
        if problem:
            return Verdict(REFUSE, problem)
        # the checkpoint's own count: status.json may lag one epoch behind it, never ahead
        return Verdict(RESUME, f"{state}: continue after epoch "
                               f"{epochs if epochs is not None else status.get('epoch', '?')}")
    return Verdict(RUN, f"{state}: run again from the start" + _replaces(folder, run_cfg))


def _replaces(folder: Path, run_cfg: RunConfig, why: str = "") -> str:
    """What a fresh start removes, for the verdict (the dry run prints it)."""
    files = earlier_attempt(folder, run_cfg.logger.name) if folder.is_dir() else []
    if not files:
        return ""
    return (f" ({why + ', ' if why else ''}removes the earlier attempt's "
            f"{describe_files(folder, files)}; other files stay)")


# ---- the files the project writes into a job folder (record/layout.py names them) -------

def earlier_attempt(folder: Path, logger_name: str) -> list[Path]:
    """The files an earlier, unfinished attempt of a job left that a fresh start replaces,
    by the names the project gives them: its event files and hparams.yaml, its checkpoint,
    its predictions and temporary files. Anything else in the folder (a user's notes, a
    checkpoint copied aside) is not the project's and is never among them."""
    found: list[Path] = []
    tb = folder / logger_name
    for run in sorted(p for p in tb.iterdir() if p.is_dir()) if tb.is_dir() else []:
        found += sorted(run.glob(EVENT_FILES))
        found += [run / HPARAMS_FILE] if (run / HPARAMS_FILE).is_file() else []
    found += [folder / CHECKPOINT] if (folder / CHECKPOINT).is_file() else []
    found += [folder / PREDICTIONS_FILE] if (folder / PREDICTIONS_FILE).is_file() else []
    for sub, pattern in TEMPORARIES.items():
        where = folder / sub
        found += sorted(p for p in where.iterdir() if pattern.fullmatch(p.name)) \
            if where.is_dir() else []
    return [p for p in found if p.is_file()]


def describe_files(folder: Path, files: list[Path]) -> str:
    """`tb/mnist/events.out.tfevents.* (3 files), checkpoints/last.ckpt`: relative to the
    job folder, event files counted per folder."""
    parts: list[str] = []
    events: dict[Path, int] = {}
    for path in files:
        if path.match(EVENT_FILES):
            events[path.parent] = events.get(path.parent, 0) + 1
    for parent, n in events.items():
        parts.append(f"{parent.relative_to(folder)}/{EVENT_FILES} ({n} file{'s' * (n > 1)})")
    parts += [str(p.relative_to(folder)) for p in files if not p.match(EVENT_FILES)]
    return ", ".join(parts)


def start_afresh(folder: Path, logger_name: str) -> list[Path]:
    """Remove an earlier attempt's files (earlier_attempt) and the folders the project made
    for them where they are empty now, so TensorBoard and the report never merge two
    attempts into one run; returns what was removed."""
    removed = earlier_attempt(folder, logger_name)
    for path in removed:
        path.unlink(missing_ok=True)
    tb = folder / logger_name
    runs = [p for p in tb.iterdir() if p.is_dir()] if tb.is_dir() else []
    for empty in [*runs, tb, folder / CHECKPOINT_DIR]:
        try:
            empty.rmdir()  # only when empty: a user's file keeps its folder
        except OSError:
            pass
    return removed


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """The temporary files of atomic writes whose writer is gone (a SIGKILL or power loss
    mid-write leaves them for good). Called with the folder's lock held, so no live process
    of the project writes there; a pid that still lives is left alone all the same."""
    stale = []
    for sub, pattern in TEMPORARIES.items():
        where = folder / sub
        for path in where.iterdir() if where.is_dir() else []:
            match = pattern.fullmatch(path.name)
            writer = int(match.group(1)) if match else None
            if writer is not None and writer != os.getpid() and not process_alive(writer):
                path.unlink(missing_ok=True)
                stale.append(path)
    return stale


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
