"""A finished job's per-image test predictions, `<job>/predictions.npz`.

Two runs evaluated on the same test images can be compared image by image (McNemar's test
in the report): the images one gets right and the other wrong show how much of their
difference is the test set's share of the noise. For that each finished job keeps, in the
test set's order,
    predicted   uint8 (N,)  the predicted class of each test image (10,000 bytes for MNIST)
    labels      uint8 (N,)  its true class, so a reader needs no copy of the data set
    test_set    the fingerprint of the images and labels evaluated (see `fingerprint`)

The file is written atomically (temporary file, fsync, rename) before the job's status says
`finished`, and status.json's `predictions` field records its SHA-256 and the fingerprint:
a reader trusts the file only when both match, so a file replaced or cut short after the
fact is named as damaged instead of being compared.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnist_sweep.record.files import write_atomic
from mnist_sweep.record.layout import PREDICTIONS_FILE

STATUS_FIELD = "predictions"  # status.json's record of the file


class PredictionsDamaged(RuntimeError):
    """A predictions file that does not match the record its status.json holds of it."""


@dataclass
class Predictions:
    predicted: np.ndarray  # uint8 (N,)
    labels: np.ndarray  # uint8 (N,)
    test_set: str  # fingerprint of the images and labels

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels


def fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """`sha256:<hex>` of the test images' and labels' bytes (uint8, in test-set order):
    equal only for the same images in the same order with the same labels, whatever file
    or folder they were loaded from."""
    digest = hashlib.sha256()
    digest.update(f"{tuple(images.shape)}|{tuple(labels.shape)}|".encode())
    digest.update(images.to(torch.uint8).contiguous().numpy().tobytes())
    digest.update(labels.to(torch.uint8).contiguous().numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_predictions(job_dir: Path, predicted: torch.Tensor, test_images: torch.Tensor,
                      test_labels: torch.Tensor) -> dict[str, Any]:
    """Write the file for the first len(predicted) test images (a run limited to part of the
    test set evaluates a prefix of it) and return the record for status.json."""
    n = len(predicted)
    if n > len(test_labels):
        raise ValueError(f"{n} predictions for a test set of {len(test_labels)} images")
    images, labels = test_images[:n].cpu(), test_labels[:n].cpu()
    test_set = fingerprint(images, labels)
    buffer = io.BytesIO()
    np.savez(buffer, predicted=predicted.cpu().to(torch.uint8).numpy(),
             labels=labels.to(torch.uint8).numpy(), test_set=np.array(test_set))
    data = buffer.getvalue()
    write_atomic(Path(job_dir) / PREDICTIONS_FILE, data)
    return {"file": PREDICTIONS_FILE, "images": n, "test_set": test_set,
            "sha256": _sha256(data)}


def read_predictions(job_dir: Path, record: dict[str, Any]) -> Predictions:
    """The predictions a finished job's status.json `record` describes. Raises
    PredictionsDamaged when the file is missing or is not the file recorded."""
    path = Path(job_dir) / str(record.get("file") or PREDICTIONS_FILE)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PredictionsDamaged(f"{path}: recorded in status.json but cannot be read "
                                 f"({exc.strerror})") from None
    if _sha256(data) != record.get("sha256"):
        raise PredictionsDamaged(f"{path}: not the file its status.json records (its SHA-256 "
                                 f"differs: changed or cut short after the job finished)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            out = Predictions(arrays["predicted"], arrays["labels"], str(arrays["test_set"]))
    except (ValueError, KeyError, OSError) as exc:
        raise PredictionsDamaged(f"{path}: not a predictions file ({exc})") from None
    if (out.test_set != record.get("test_set") or len(out.predicted) != len(out.labels)
            or len(out.labels) != record.get("images")):
        raise PredictionsDamaged(f"{path}: its contents disagree with its status.json record")
    return out
