"""OmegaConf resolvers used by conf/config.yaml."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from omegaconf import OmegaConf

# Every folder unique_dir created in this process, the folders above first: a command
# refused before its first job removes these (and only these) again (sweep/callbacks.py).
CREATED_DIRS: list[Path] = []


def unique_dir(path: str) -> str:
    """Claim `path` for this sweep, or `path-2`, `path-3`, ... when another sweep took it.

    The folder is created atomically (mkdir fails if it exists), so two sweeps started in
    the same second never share a folder. Hydra caches the result, so all jobs of a sweep,
    in this process or in launcher workers, see the same folder.
    """
    base = Path(path)
    above = [p for p in reversed(Path(os.path.abspath(base)).parents) if not p.exists()]
    base.parent.mkdir(parents=True, exist_ok=True)
    CREATED_DIRS.extend(above)
    candidate, n = base, 1
    while True:
        try:
            os.mkdir(candidate)
            CREATED_DIRS.append(Path(os.path.abspath(candidate)))
            return str(candidate)
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")


# Job folder names are `<num>_<overrides>`; file systems allow 255 bytes per name, and a
# sweep with many overrides exceeds it. Longer names keep a readable prefix and a hash.
FOLDER_NAME_BYTES = 120


def short_name(text: str, limit: int = FOLDER_NAME_BYTES) -> str:
    """`text` itself when it fits in `limit` bytes, else its prefix + `-` + 10 hex digits of
    its hash, so that different long names stay different."""
    raw = str(text).encode()
    if len(raw) <= limit:
        return str(text)
    digest = hashlib.sha1(raw).hexdigest()[:10]
    prefix = raw[:limit - len(digest) - 1].decode(errors="ignore").rstrip(",=")
    return f"{prefix}-{digest}"


def job_files_subdir(output_dir: str) -> str | None:
    """Where Hydra writes a job's config files: `.hydra`, or nowhere (None) in a folder that
    holds a finished result, which a re-run skips and must leave byte-identical."""
    from mnist_sweep.record.status import FINAL, read_status_or_none

    status = read_status_or_none(Path(output_dir))
    return None if status and status.get("status") in FINAL else ".hydra"


def job_log_file(output_dir: str, job_name: str) -> str:
    """Where Hydra's file handler writes a job's log (`<folder>/cli.log`), or nowhere (the
    null device) in a folder that holds a finished result: a re-run skips it and must leave
    it byte-identical."""
    from mnist_sweep.record.status import FINAL, read_status_or_none

    status = read_status_or_none(Path(output_dir))
    if status and status.get("status") in FINAL:
        return os.devnull
    return str(Path(output_dir) / f"{job_name}.log")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("unique_dir"):
        OmegaConf.register_new_resolver("unique_dir", unique_dir, use_cache=True)
    if not OmegaConf.has_resolver("short_name"):
        OmegaConf.register_new_resolver("short_name", short_name)
    if not OmegaConf.has_resolver("job_files_subdir"):
        OmegaConf.register_new_resolver("job_files_subdir", job_files_subdir)
    if not OmegaConf.has_resolver("job_log_file"):
        OmegaConf.register_new_resolver("job_log_file", job_log_file)
