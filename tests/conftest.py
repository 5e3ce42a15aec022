"""Shared fixtures: tiny MNIST-format data written by the tests themselves, and a runner for
the real command line in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from mnist_sweep.job.idx import write_idx

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "datasets"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def make_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable 28x28 uint8 images: each class is a bright block at its own place, on noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        row, col = divmod(int(c), 4)
        images[i, 2 + row * 8: 9 + row * 8, 2 + col * 6: 8 + col * 6] = 230
    return images, labels


def write_tiny_mnist(root: Path, n_train: int = 640, n_test: int = 200,
                     gz: bool = True, folder: str = "MNIST") -> Path:
    """Write the four IDX files under <root>/<folder>/raw/ and return <root>."""
    raw = root / folder / "raw"
    suffix = ".gz" if gz else ""
    x, y = make_digits(n_train, seed=0)
    write_idx(raw / f"{FILES[0]}{suffix}", x)
    write_idx(raw / f"{FILES[1]}{suffix}", y)
    x, y = make_digits(n_test, seed=1)
    write_idx(raw / f"{FILES[2]}{suffix}", x)
    write_idx(raw / f"{FILES[3]}{suffix}", y)
    return root


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding tiny gzipped MNIST files (read-only for tests: do not modify)."""
    return write_tiny_mnist(tmp_path_factory.mktemp("tiny_data"))


# What a run on the tiny data is labelled (TensorBoard folder, status.json, the report):
# its size is not MNIST's, so it is never taken for full MNIST.
TINY_DATA = "mnist_train640_test200"


# Overrides that keep a real training run to a second or two on tiny data.
# One torch thread: on a loaded 2-core machine it is several times faster than the default.
TINY = ["data.val_size=128", "data.batch_size=64", "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false", "trainer.num_threads=1"]


# One matplotlib cache for every subprocess: building it costs seconds per fresh cache dir.
MPL_CONFIG_DIR = tempfile.mkdtemp(prefix="mnist_sweep_mpl_")


def run_cli(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m mnist_sweep ARGS` for real, with the per-user cache kept in cwd."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cwd / ".cache"), "HYDRA_FULL_ERROR": "",
           "MPLCONFIGDIR": MPL_CONFIG_DIR, **(env_extra or {})}
    env.pop("MNIST_SWEEP_DATA", None)
    env.pop("MNIST_SWEEP_WARNED", None)  # set in this process by a test of the fallback
    return subprocess.run([sys.executable, "-m", "mnist_sweep", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
