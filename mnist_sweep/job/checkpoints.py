"""A job's checkpoint: written atomically inside its own folder, carrying every random state.

An interrupted job continues from `checkpoints/last.ckpt` (the end of its last whole
epoch) and must then be the run it would have been: the checkpoint holds the weights, the
optimiser, the shuffle generator (the DataModule's state) and, through `RandomState`, the
global generators that dropout and augmentation draw from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO

from mnist_sweep.job.folder import CHECKPOINT
from mnist_sweep.job.module import BEST_VAL_ACC_KEY


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used for the configured job."""


def last_checkpoint(job_dir: Path) -> Path:
    return Path(job_dir) / CHECKPOINT


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temporary file beside the target, then rename.

    Lightning's own save goes through fsspec, which writes the temporary file in /tmp and
    *copies* it across file systems: a full disk left a partial last.ckpt. A rename within
    the folder is atomic, so last.ckpt is always either the previous or the new checkpoint.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


class RandomState(pl.Callback):
    """Saves and restores torch's global generators (CPU, and CUDA where present) with each
    checkpoint: dropout and augmentation draw from them. Nothing in a job draws from numpy's
    or Python's generators, and the shuffle order has a generator of its own (data.py)."""

    def state_dict(self) -> dict[str, Any]:
        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def check_checkpoint(path: Path, model: torch.nn.Module) -> None:
    """Refuse a checkpoint that cannot be read or does not fit the configured network."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    except Exception as exc:
        raise CheckpointError(f"{path} cannot be read ({type(exc).__name__}); delete it to "
                              f"start this job from scratch.") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # in the state_dict of checkpoints written by earlier versions
    found = {k: tuple(v.shape) for k, v in state.items() if k != BEST_VAL_ACC_KEY}
    if expected != found:
        raise CheckpointError(
            f"{path} was saved by a different network than the one configured. Use the "
            f"overrides it was trained with, a new output folder, or delete the checkpoint "
            f"to start again.")
