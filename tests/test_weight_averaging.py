"""`model.ema_decay`: Lightning's EMA weight averaging, through the real command line."""

from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import TINY, TINY_DATA, run_in_process


def test_weight_averaging_keeps_both_weights_and_an_honest_best_val_acc(tiny_root,
                                                                         tmp_path) -> None:
    proc = run_in_process([f"data.root={tiny_root}", *TINY, "data.batch_size=16",
                           "model.ema_decay=0.99", "hydra.run.dir=run"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "finished"
    assert status["signature"]["model.ema_decay"] == 0.99  # a resume cannot switch it silently

    ckpt = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    averaged, trained = ckpt["state_dict"], ckpt["current_model_state"]
    assert averaged.keys() == trained.keys()
    assert any(not torch.equal(averaged[k], trained[k]) for k in averaged)

    # The best validation accuracy is the best epoch's, as logged: averaging every buffer of
    # the module once averaged this running maximum too (0.81 against epochs of 1.0).
    acc = EventAccumulator(str(run / "tb" / TINY_DATA), size_guidance={"scalars": 0})
    acc.Reload()
    logged = [e.value for e in acc.Scalars("val/acc")]
    assert len(logged) == 2
    assert status["metrics"]["val/acc_best"] == pytest.approx(max(logged))


def test_a_decay_of_one_is_refused_with_the_key_to_change(tiny_root, tmp_path) -> None:
    proc = run_in_process([f"data.root={tiny_root}", *TINY, "model.ema_decay=1.0",
                    "hydra.run.dir=run"], cwd=tmp_path)
    assert proc.returncode != 0
    assert "model.ema_decay=1.0 is not valid" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_average_follows_training_from_the_first_epoch(tiny_root, tmp_path) -> None:
    """Without a warm-up, 40 steps at decay 0.999 leave the first step's weights 96% of the
    average, which validates like a guess and gets every averaged search trial pruned.
    No dropout: on 40 steps its noise alone moves the first epoch's accuracy by 0.4."""
    first_epoch = {}
    for decay in ("0.0", "0.999"):
        proc = run_in_process([f"data.root={tiny_root}", *TINY, "data.batch_size=16",
                               "model.dropout=0.0",
                        "trainer.max_epochs=1", f"model.ema_decay={decay}",
                        f"hydra.run.dir=run{decay}"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        status = json.loads((tmp_path / f"run{decay}" / "status.json").read_text())
        first_epoch[decay] = status["metrics"]["val/acc"]
    assert first_epoch["0.0"] > 0.5
    assert first_epoch["0.999"] > 0.8 * first_epoch["0.0"]


def test_folders_written_before_the_setting_existed_read_as_without_averaging() -> None:
    """A run recorded before `model.ema_decay` existed computed what ema_decay=0 computes:
    it resumes under today's defaults, and the report groups it with their runs."""
    from mnist_sweep.config import validate
    from mnist_sweep.job.signature import differences, job_signature
    from tests.test_config import compose_cfg

    plain = validate(compose_cfg([]))
    before = {k: v for k, v in job_signature(plain).items() if k != "model.ema_decay"}
    assert differences(before, plain) == []
    averaged = validate(compose_cfg(["model.ema_decay=0.999"]))
    assert differences(before, averaged) == ["model.ema_decay: 0.0 -> 0.999"]
