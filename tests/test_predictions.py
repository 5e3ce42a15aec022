"""Per-image test predictions: a real tiny run keeps them, in test-set order, with the test
set's fingerprint, before its status says `finished`; the report trusts them only when they
are the file status.json records, and runs that finished before they existed still report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_sweep.job.predictions import (
    PredictionsDamaged,
    fingerprint,
    read_predictions,
    write_predictions,
)
from mnist_sweep.record.layout import PREDICTIONS_FILE
from mnist_sweep.report.read import read_run
from tests.conftest import TINY, make_digits, run_in_process


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_root: Path) -> Path:
    work = tmp_path_factory.mktemp("predictions")
    job = work / "run"
    proc = run_in_process([*TINY, f"data.root={tiny_root}", f"hydra.run.dir={job}"], cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return job


def test_a_finished_run_keeps_its_predictions(finished_run: Path) -> None:
    status = json.loads((finished_run / "status.json").read_text())
    record = status["predictions"]
    assert status["status"] == "finished" and record["file"] == PREDICTIONS_FILE
    x, y = make_digits(200, seed=1)  # the tiny data set's test images (conftest.py)
    images, labels = torch.from_numpy(x), torch.from_numpy(y)
    # the fingerprint is of the test images and labels themselves, in their order
    assert record["test_set"] == fingerprint(images, labels) and record["images"] == 200
    kept = read_predictions(finished_run, record)
    assert kept.predicted.dtype == np.uint8 and kept.predicted.shape == (200,)
    assert np.array_equal(kept.labels, labels.numpy())
    # the same images the test accuracy was measured on
    assert kept.correct.mean() == pytest.approx(status["metrics"]["test/acc"], abs=1e-6)
    assert not list(finished_run.glob(".*.tmp")), "temporary file left behind"
    run = read_run(finished_run)
    assert run.predictions is not None and run.test_images == 200 and not run.damage


def test_predictions_of_other_images_have_another_fingerprint() -> None:
    images = torch.zeros(4, 28, 28, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 3], dtype=torch.uint8)
    first = fingerprint(images, labels)
    assert first == fingerprint(images.clone(), labels.clone())
    assert first != fingerprint(images, labels.flip(0))  # same images, other order of labels
    changed = images.clone()
    changed[0, 0, 0] = 1
    assert first != fingerprint(changed, labels)
    assert first != fingerprint(images[:3], labels[:3])


def test_a_changed_predictions_file_is_damage_not_evidence(finished_run: Path,
                                                           tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    record = json.loads((copy / "status.json").read_text())["predictions"]
    path = copy / PREDICTIONS_FILE
    data = bytearray(path.read_bytes())
    data[-30] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(PredictionsDamaged, match="SHA-256 differs"):
        read_predictions(copy, record)
    run = read_run(copy)
    # its accuracy is still reported; the image-level test leaves it out, and says so
    assert run.finished and run.test_acc is not None and run.predictions is None
    assert any("left out of the image-level comparison" in d for d in run.damage)
    path.unlink()
    assert any("cannot be read" in d for d in read_run(copy).damage)


def test_a_run_from_before_predictions_still_reports(finished_run: Path,
                                                     tmp_path: Path) -> None:
    copy = tmp_path / "old"
    shutil.copytree(finished_run, copy)
    status = json.loads((copy / "status.json").read_text())
    del status["predictions"]
    (copy / "status.json").write_text(json.dumps(status))
    (copy / PREDICTIONS_FILE).unlink()
    run = read_run(copy)
    assert run.finished and run.predictions is None and not run.damage
    assert run.test_acc == status["metrics"]["test/acc"]


def test_a_run_limited_to_part_of_the_test_set_fingerprints_that_part(tmp_path: Path) -> None:
    images = torch.arange(10 * 28 * 28).reshape(10, 28, 28).to(torch.uint8)
    labels = torch.arange(10).to(torch.uint8)
    record = write_predictions(tmp_path, labels[:4], images, labels)
    assert record["images"] == 4 and record["test_set"] == fingerprint(images[:4], labels[:4])
    assert read_predictions(tmp_path, record).correct.all()
    with pytest.raises(ValueError):
        write_predictions(tmp_path, torch.zeros(11, dtype=torch.uint8), images, labels)
