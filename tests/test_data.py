"""The data path: torchvision parsing of gz/unpacked IDX files, splits, clear data errors."""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from mnist_sweep.config import default_config
from mnist_sweep.job.augment import random_affine
from mnist_sweep.job.data import MNISTDataModule, make_splits
from mnist_sweep.job.datasets import DataError, load_dataset, sample_val_size
from tests.conftest import FILES, TINY, run_in_process, write_tiny_mnist


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MNIST_SWEEP_DATA", raising=False)
    return tmp_path / "cache"


@pytest.mark.parametrize("layout", ["gz", "unpacked", "both"])
def test_reads_every_file_layout(tmp_path, cache, layout: str) -> None:
    root = write_tiny_mnist(tmp_path / "data", gz=layout != "unpacked")
    if layout == "both":
        raw = root / "MNIST" / "raw"
        for name in FILES:
            (raw / name).write_bytes(gzip.decompress((raw / f"{name}.gz").read_bytes()))
    loaded = load_dataset("mnist", str(root), download=False, npm_fallback=False)
    reference = load_dataset("mnist", str(write_tiny_mnist(tmp_path / "ref", gz=False)),
                             download=False, npm_fallback=False)
    assert loaded.train_images.shape == (640, 28, 28) and loaded.test_images.shape == (200, 28, 28)
    assert torch.equal(loaded.train_images, reference.train_images)
    assert torch.equal(loaded.test_labels, reference.test_labels)


def test_root_defaults_to_environment_variable(tmp_path, cache, monkeypatch) -> None:
    root = write_tiny_mnist(tmp_path / "envdata")
    monkeypatch.setenv("MNIST_SWEEP_DATA", str(root))
    assert load_dataset("mnist", None, download=False, npm_fallback=False).source.is_relative_to(
        root)


def test_split_is_seeded_and_disjoint(tiny_root, cache) -> None:
    loaded = load_dataset("mnist", str(tiny_root), download=False, npm_fallback=False)
    a, b = make_splits(loaded, 128, split_seed=0), make_splits(loaded, 128, split_seed=0)
    c = make_splits(loaded, 128, split_seed=1)
    assert a.train_x.shape == (512, 1, 28, 28) and a.val_x.shape == (128, 1, 28, 28)
    assert torch.equal(a.val_x, b.val_x) and not torch.equal(a.val_x, c.val_x)
    assert abs(a.train_x.mean().item()) < 1e-3 and abs(a.train_x.std().item() - 1) < 1e-2


def test_datamodule_serves_in_memory_batches(tiny_root, cache) -> None:
    dm = MNISTDataModule(replace(default_config().data, root=str(tiny_root), val_size=128,
                                 batch_size=100))
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == len(dm.train_dataloader()) == 6
    assert sum(len(y) for _, y in batches) == 512
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape == (100, 1, 28, 28) and y.dtype == torch.int64
    first_epoch = torch.cat([y for _, y in dm.train_dataloader()])
    second_epoch = torch.cat([y for _, y in dm.train_dataloader()])
    assert not torch.equal(first_epoch, second_epoch)  # reshuffled every epoch


def test_augmentation_moves_pixels_but_keeps_shape() -> None:
    x = torch.zeros(8, 1, 28, 28) - 0.4
    x[:, :, 10:18, 10:18] = 2.8
    out = random_affine(x, rotation=15, translate=0.1, scale=0.1)
    assert out.shape == x.shape
    assert not torch.allclose(out, x)
    assert out.min() >= x.min() - 1e-5 and out.max() <= x.max() + 1e-5
    assert torch.equal(random_affine(x, 0.0, 0.0, 0.0), x) or torch.allclose(
        random_affine(x, 0.0, 0.0, 0.0), x, atol=1e-5)


def test_fashion_mnist_reads_through_the_same_path(tmp_path, cache) -> None:
    root = write_tiny_mnist(tmp_path / "fashion", folder="FashionMNIST")
    loaded = load_dataset("fashion_mnist", str(root), download=False, npm_fallback=False)
    assert loaded.label == "fashion_mnist_train640_test200"
    assert len(loaded.train_labels) == 640


def test_missing_files_name_the_folder(tmp_path, cache) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        load_dataset("mnist", str(tmp_path / "empty"), download=False, npm_fallback=False)
    assert str(tmp_path / "empty" / "MNIST" / "raw") in str(err.value)
    assert "train-images-idx3-ubyte" in str(err.value)


def test_failed_download_says_where_to_put_the_files(tmp_path, cache) -> None:
    """No network here: torchvision's download fails and the message names the folder."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        load_dataset("mnist", str(tmp_path / "empty"), download=True, npm_fallback=False)
    assert "could not be downloaded" in str(err.value)
    assert str(tmp_path / "empty" / "MNIST" / "raw") in str(err.value)


@pytest.mark.parametrize("which", ["gz", "unpacked"])
def test_truncated_idx_file_is_named_and_never_trained_on(tmp_path, which: str) -> None:
    root = write_tiny_mnist(tmp_path / "data", gz=which == "gz")
    victim = root / "MNIST" / "raw" / ("train-images-idx3-ubyte" + (".gz" if which == "gz" else ""))
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    proc = run_in_process([f"data.root={root}", *TINY, "hydra.run.dir=run"], cwd=tmp_path)
    assert proc.returncode == 1
    assert str(victim) in proc.stderr and "truncated or corrupt" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "run").rglob("events.out.tfevents.*"))  # nothing trained


def test_label_count_mismatch_is_reported(tmp_path, cache) -> None:
    root = write_tiny_mnist(tmp_path / "data")
    other = write_tiny_mnist(tmp_path / "other", n_train=320)
    shutil.copy(other / "MNIST/raw/train-labels-idx1-ubyte.gz",
                root / "MNIST/raw/train-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="640 images but .* 320 labels"):
        load_dataset("mnist", str(root), download=False, npm_fallback=False)


def test_nonexistent_root_fails_before_any_folder_is_made(tmp_path) -> None:
    proc = run_in_process(["data.root=/nonexistent/mnist", *TINY, "hydra.run.dir=run"],
                          cwd=tmp_path)
    assert proc.returncode != 0
    assert "data.root=/nonexistent/mnist does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not on PATH")
def test_offline_fallback_builds_the_npm_sample(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "empty").mkdir()
    proc = run_in_process([f"data.root={tmp_path / 'empty'}", *TINY, "trainer.max_epochs=1",
                    "trainer.limit_train_batches=5", "hydra.run.dir=run"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mnist_npm_sample10k" in proc.stderr and "NOT the full data set" in proc.stderr
    assert proc.stderr.count("NOT the full data set") == 1  # once, not per job or twice
    # the split is stated: 8,000 training digits, 667 of them held out for validation
    assert "8,000 to train and validate on, 2,000 to test on" in proc.stderr
    assert "5,000 of 60,000 -> 667 of 8,000" in proc.stderr
    tb = tmp_path / "run" / "tb" / "mnist_npm_sample10k"
    assert list(tb.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(tb))
    acc.Reload()
    start = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["data"].string_value == "mnist_npm_sample10k"
    monkeypatch.delenv("MNIST_SWEEP_WARNED", raising=False)
    loaded = load_dataset("mnist", str(tmp_path / "empty"), download=False, npm_fallback=True)
    assert "NOT the full data set" in capsys.readouterr().err
    assert loaded.label == "mnist_npm_sample10k"
    assert len(loaded.train_labels) + len(loaded.test_labels) == 10_000
    assert sample_val_size(5000, loaded) == 667


def test_a_validation_set_as_large_as_the_training_set_is_one_message(tiny_root, tmp_path
                                                                      ) -> None:
    """The data's size is known only once the job reads it: a data.val_size that leaves no
    training image still ends in one line naming the setting, not a traceback."""
    proc = run_in_process([f"data.root={tiny_root}", *TINY, "data.val_size=640",
                           "hydra.run.dir=run"], cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "data.val_size=640" in proc.stderr + proc.stdout
    assert "below 640" in proc.stderr + proc.stdout
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed" and "data.val_size=640" in status["error"]
