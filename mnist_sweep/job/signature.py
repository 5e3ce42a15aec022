"""What makes two runs the same job: the settings that change what a run computes.

A job folder records its signature in status.json when it first starts. A finished result
is reused only for the same signature, and an unfinished one is continued only with it, so
a folder never holds numbers of one configuration under the name of another.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mnist_sweep.config import RunConfig
from mnist_sweep.record.settings import (
    ADDED_SETTINGS,
    NOT_RESULT_KEYS,
    NOT_RESULT_PREFIXES,
    as_typed,
)

_UNSET = "(unset)"  # a setting one of the two records lacks

def with_added_settings(recorded: dict[str, Any]) -> dict[str, Any]:
    """A full record (it has `model.head`) completed with the settings added after it."""
    return ADDED_SETTINGS | recorded if "model.head" in recorded else recorded


def flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"model": {"head": "gmp"}}` -> `{"model.head": "gmp"}`: one key per setting."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        flat.update(flatten(value, f"{name}.") if isinstance(value, dict) else {name: value})
    return flat


def is_result_key(key: str) -> bool:
    return key not in NOT_RESULT_KEYS and not key.startswith(NOT_RESULT_PREFIXES) \
        and f"{key}." not in NOT_RESULT_PREFIXES


def job_signature(cfg: RunConfig) -> dict[str, Any]:
    """Every setting of the run that changes its numbers, as dotted keys."""
    flat = flatten(dataclasses.asdict(cfg))
    return {k: v for k, v in sorted(flat.items()) if is_result_key(k)}


def _legacy_signature(cfg: RunConfig) -> dict[str, Any]:
    """The signature format of folders written before full signatures: the HParams keys."""
    return {
        "head": cfg.model.head, "separable": cfg.model.separable, "filters": cfg.model.filters,
        "data": cfg.data.name, "lr": cfg.optim.lr, "optimizer": cfg.optim.name,
        "scheduler": cfg.scheduler.name, "batch_size": cfg.data.batch_size,
        "epochs": cfg.trainer.max_epochs, "seed": cfg.seed, "dropout": cfg.model.dropout,
        "weight_decay": cfg.optim.weight_decay, "label_smoothing": cfg.model.label_smoothing,
        "augment": cfg.data.augment.enabled, "precision": str(cfg.trainer.precision),
        "val_size": cfg.data.val_size,
    }


def changed_settings(recorded: dict[str, Any] | None,
                     cfg: RunConfig) -> dict[str, tuple[Any, Any]]:
    """`{key: (recorded, configured)}` for each setting that differs; {} for the same job.

    A folder without a recorded signature (it never started training) matches anything.
    """
    if not recorded:
        return {}
    current = job_signature(cfg) if "model.head" in recorded else _legacy_signature(cfg)
    if "model.head" not in recorded:
        recorded = {"val_size": 5000} | recorded  # older legacy records lack val_size
    recorded = with_added_settings(recorded)
    current = {k: v for k, v in current.items() if is_result_key(k)}
    recorded = {k: v for k, v in recorded.items() if is_result_key(k)}
    keys = sorted(set(recorded) | set(current))
    return {k: (recorded.get(k, _UNSET), current.get(k, _UNSET)) for k in keys
            if recorded.get(k, _UNSET) != current.get(k, _UNSET)}


def differences(recorded: dict[str, Any] | None, cfg: RunConfig) -> list[str]:
    """`key: recorded -> configured` for each setting that differs; [] for the same job."""
    return [f"{k}: {as_typed(old)} -> {as_typed(new)}"
            for k, (old, new) in changed_settings(recorded, cfg).items()]


def restoring_overrides(recorded: dict[str, Any] | None, cfg: RunConfig) -> list[str]:
    """`key=recorded` for each changed setting of a full record: what brings a run back to
    the configuration it started with when a default changed since (e.g. trainer.precision
    before `auto`)."""
    if not recorded or "model.head" not in recorded:
        return []
    return [f"{k}={as_typed(old)}" for k, (old, _) in changed_settings(recorded, cfg).items()
            if old != _UNSET]
