"""A job's checkpoint: written atomically inside its own folder, carrying every random state.

An interrupted job continues from `checkpoints/last.ckpt` (the end of its last whole
epoch) and must then be the run it would have been: the checkpoint holds the weights, the
optimiser, the shuffle generator (the DataModule's state) and, through `RandomState`, the
global generators that dropout and augmentation draw from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO

from mnist_sweep.config import RunConfig
from mnist_sweep.job.module import BEST_VAL_ACC_KEY
from mnist_sweep.record.files import write_atomic


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used for the configured job."""


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
        write_atomic(path, lambda tmp: _save(checkpoint, tmp))


def _save(checkpoint: dict[str, Any], tmp: Path) -> None:
    # Into a file this function closes: given a path, torch keeps its own file open in the
    # raised error's frames, so a full disk stays full (unlinked but open) while the job
    # records its failure, and status.json then cannot be written.
    with open(tmp, "wb") as f:
        torch.save(checkpoint, f)


class RandomState(pl.Callback):
    """Saves and restores torch's generators with each checkpoint: the CPU's, and the CUDA
    generator of the GPU the job trains on. Dropout and augmentation draw from them. Nothing
    in a job draws from numpy's or Python's generators, and the shuffle order has a
    generator of its own (data.py).

    Only the training GPU's generator is kept: a job resumed with another set of visible
    GPUs (a Slurm job sees its GPU as cuda:0) restores it onto the GPU it trains on now.
    Lightning has made that GPU the current device in both hooks.
    """

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda_device"] = torch.cuda.get_rng_state(torch.cuda.current_device())
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        saved = cuda_state_to_restore(state_dict)
        if saved is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(saved, torch.cuda.current_device())


def cuda_state_to_restore(state_dict: dict[str, Any]) -> torch.Tensor | None:
    """The training GPU's generator state from a checkpoint's RandomState entry.

    Checkpoints written before `cuda_device` existed hold every visible GPU's state by index
    (`cuda`) and not which one trained: one entry is that GPU's; of several, none can be
    told apart, so none is restored (the resumed run then draws other dropout masks)."""
    if "cuda_device" in state_dict:
        return state_dict["cuda_device"]
    legacy = state_dict.get("cuda") or []
    return legacy[0] if len(legacy) == 1 else None


def check_checkpoint(path: Path, model: torch.nn.Module, cfg: RunConfig | None = None) -> None:
    """Refuse a checkpoint that cannot be read, was saved by another configuration (its
    recorded signature, when `cfg` is given) or does not fit the configured network."""
    checkpoint = _load(path)
    if cfg is not None:
        problem = foreign_checkpoint(path, checkpoint, cfg)
        if problem:
            raise CheckpointError(problem)
    state = checkpoint["state_dict"]
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # in the state_dict of checkpoints written by earlier versions
    found = {k: tuple(v.shape) for k, v in state.items() if k != BEST_VAL_ACC_KEY}
    if expected != found:
        raise CheckpointError(
            f"{path} was saved by a different network than the one configured. Use the "
            f"overrides it was trained with, a new output folder, or delete the checkpoint "
            f"to start again.")


# ---- whose checkpoint it is ------------------------------------------------------------

SIGNATURE_KEY = "job_signature"  # the checkpoint's copy of job_signature(cfg)


class JobSignature(pl.Callback):
    """Writes the job's signature (job/signature.py) into every checkpoint it saves.

    The folder's status.json says which configuration a folder holds, but a checkpoint can
    be copied from one folder into another: layer shapes alone would accept the weights of
    another seed or learning rate and finish them under this job's name. Checkpoints
    written before the signature existed have none; they are accepted, since the folder's
    recorded signature has been checked already (folder.judge)."""

    def __init__(self, signature: dict[str, Any]) -> None:
        self.signature = signature

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[SIGNATURE_KEY] = self.signature


def _load(path: Path) -> dict[str, Any]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
            raise ValueError("not a Lightning checkpoint")
    except Exception as exc:
        raise CheckpointError(f"{path} cannot be read ({type(exc).__name__}); delete it to "
                              f"start this job from scratch.") from None
    return checkpoint


def foreign_checkpoint(path: Path, checkpoint: dict[str, Any], cfg: RunConfig) -> str | None:
    """Why the checkpoint belongs to another configuration, or None."""
    from mnist_sweep.job.signature import differences

    recorded = checkpoint.get(SIGNATURE_KEY)
    changed = differences(recorded, cfg) if isinstance(recorded, dict) else []
    if not changed:
        return None
    return (f"{path} was saved by a run of another configuration ({'; '.join(changed)}), "
            f"not by this job: resuming from it would finish that run under this job's name. "
            f"Put this job's own checkpoint back, or delete {path} to start this job from "
            f"scratch.")


def completed_epochs(checkpoint: dict[str, Any]) -> int | None:
    """How many whole epochs a checkpoint holds: the fit loop's processed epochs (the
    checkpoint is saved at the end of an epoch, before Lightning counts it completed)."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return None


def checkpoint_verdict(path: Path, cfg: RunConfig) -> tuple[int | None, str | None]:
    """For the plan (folder.judge): the epochs `path` holds, and why it cannot be resumed
    (unreadable, or another configuration's), or None when it can."""
    try:
        checkpoint = _load(path)
    except CheckpointError as exc:
        return None, str(exc)
    return completed_epochs(checkpoint), foreign_checkpoint(path, checkpoint, cfg)
