"""One process at a time in a sweep folder or a job folder.

Two processes training into the same folder would interleave event files, write one
checkpoint from both and record every run twice. Each folder that a process trains in holds
`.mnist_sweep.lock`, locked with flock(2) for as long as the process lives: the kernel
releases it when the process ends in any way (SIGKILL included), so a lock left by a dead
process is simply taken over. The file's text names the holder (pid, host, start time,
command) for the message the next process prints; a clean end removes the file.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_FILE = ".mnist_sweep.lock"
# Locks this process holds, by folder: taking one twice (a single run's folder is locked
# before Hydra writes into it and again by the job) returns the same lock.
_HELD: dict[Path, int] = {}


class FolderLocked(RuntimeError):
    """Another live process trains in the folder; the message names it."""


def _holder_text(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def describe_holder(holder: dict) -> str:
    if not holder:
        return "another process (it left no details)"
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
            f": {holder.get('command', '')}").rstrip(": ")


def hold_if_free(path: Path) -> int | None:
    """Lock the file `path` (created if missing) without waiting: its open descriptor,
    held until closed or until the process ends, or None while another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def acquire(folder: Path, purpose: str) -> str | None:
    """Lock `folder` for this process; returns a note when a stale lock was taken over.

    Raises FolderLocked naming the holder when a live process has it.
    """
    folder = Path(folder).resolve()
    if folder in _HELD:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderLocked(
                f"{folder} is in use by {describe_holder(_holder_text(path))}. Wait for that "
                f"process to end, or choose another folder for this {purpose}.") from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file as we locked it: lock the new one
    previous = _holder_text(path)
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "command": " ".join(sys.argv)[:300]}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    _HELD[folder] = fd
    if previous:
        return f"took over the lock of {folder} left by {describe_holder(previous)}, which ended"
    return None


def release(folder: Path) -> None:
    """Remove the lock file and unlock: a lock file left behind marks a process that died."""
    folder = Path(folder).resolve()
    fd = _HELD.pop(folder, None)
    if fd is None:
        return
    try:
        (folder / LOCK_FILE).unlink(missing_ok=True)
    except OSError:
        pass  # a read-only disk: the kernel still releases the lock on close
    os.close(fd)


def check_free(folder: Path, purpose: str) -> None:
    """Raise FolderLocked if another process holds `folder`, without keeping a lock."""
    folder = Path(folder).resolve()
    path = folder / LOCK_FILE
    if folder in _HELD or not path.is_file():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise FolderLocked(
            f"{folder} is in use by {describe_holder(_holder_text(path))}. Wait for that "
            f"process to end, or choose another folder for this {purpose}.") from None
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    """Whether a process of this machine with that pid exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
