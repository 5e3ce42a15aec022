"""Training on the real, full MNIST (minutes on a CPU): `pytest -m slow`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SHARED_DATA, run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(),
                       reason=f"full MNIST not found in {SHARED_DATA}/MNIST/raw"),
]


def test_seed004_learns_full_mnist(tmp_path) -> None:
    proc = run_cli(["experiment=seed004", f"data.root={SHARED_DATA}", "trainer.max_epochs=2",
                    "trainer.enable_progress_bar=false", "hydra.run.dir=run"], cwd=tmp_path,
                   timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "finished" and status["dataset"] == "mnist"
    assert status["metrics"]["params"] == 12316
    # Two epochs of the seeds' recipe already reach 98% on the official test set.
    assert status["metrics"]["test/acc"] > 0.98
    assert status["metrics"]["val/acc_best"] > 0.98
