"""OmegaConf resolvers used by conf/config.yaml."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf


def unique_dir(path: str) -> str:
    """Claim `path` for this sweep, or `path-2`, `path-3`, ... when another sweep took it.

    The folder is created atomically (mkdir fails if it exists), so two sweeps started in
    the same second never share a folder. Hydra caches the result, so all jobs of a sweep,
    in this process or in launcher workers, see the same folder.
    """
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = base, 1
    while True:
        try:
            os.mkdir(candidate)
            return str(candidate)
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("unique_dir"):
        OmegaConf.register_new_resolver("unique_dir", unique_dir, use_cache=True)
