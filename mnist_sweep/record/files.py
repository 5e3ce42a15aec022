"""One way to write a file that a crash or a full disk never leaves half-written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def temporary_name(path: Path) -> Path:
    """The temporary file beside `path` that a write fills first: `.<name>.<pid>.tmp`, so
    a folder's next owner can tell it from the project's other files and remove it."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: Path | str, content: bytes | str | Callable[[Path], Any]) -> Path:
    """Write `content` (bytes, text, or a function that fills the file at the path it is
    given) to a temporary file beside `path`, flush it to the disk, then
    rename it over `path`: readers see the previous file or the new one, never a part.
    A write that fails (a full disk) leaves the previous file as it was and no temporary
    file behind; the OSError reaches the caller."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        if callable(content):
            content(tmp)
        else:
            data = content.encode("utf-8") if isinstance(content, str) else content
            with open(tmp, "wb") as f:
                f.write(data)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
