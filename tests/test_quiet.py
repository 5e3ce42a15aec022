"""Quiet by default: a real run prints none of Lightning's informational lines, still prints
its warnings, and `trainer.lightning_info=true` brings the informational lines back."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TINY, run_cli

CHATTER = (
    "GPU available:", "TPU available:", "litlogger", "Tip:",
    "`Trainer(limit_train_batches=1.0)` was configured so",
    "`Trainer(limit_val_batches=1.0)` was configured so",
    "`Trainer(limit_test_batches=1.0)` was configured so",
    "Loading `train_dataloader` to estimate number of stepping batches",
    "`Trainer.fit` stopped: `max_epochs=1` reached",
)
# A warning Lightning gives through Python's warnings wherever Slurm's `srun` is on PATH
# and the run is not started by it (a `srun` of the test's own makes sure it is): off while
# a job trains (job/quiet.py: hints_off), since a job is never started by srun itself.
SRUN_WARNING = "The `srun` command is available on your system but is not used"


def single_run(tmp_path: Path, tiny_root: Path, name: str,
               *extra: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    proc = run_cli([*TINY, "trainer.max_epochs=1", "trainer.accelerator=cpu",
                    f"data.root={tiny_root}",
                    f"hydra.run.dir={tmp_path / name}", *extra], cwd=tmp_path,
                   env_extra={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_root: Path) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("quiet")
    return {name: (proc.stdout + proc.stderr) for name, proc in (
        ("quiet", single_run(tmp, tiny_root, "quiet")),
        ("info", single_run(tmp, tiny_root, "info", "trainer.lightning_info=true")))}


def test_a_run_is_quiet_by_default(runs: dict[str, str]) -> None:
    output = runs["quiet"]
    assert [line for line in CHATTER if line in output] == []
    assert SRUN_WARNING not in output
    assert "trainable parameters" in output, "the project's own lines are still printed"


def test_warnings_are_still_shown() -> None:
    """Quiet raises loggers' levels only, and the srun hint's filter matches that hint only:
    a warning Lightning gives through Python's warnings (rank_zero_warn) still shows, also
    while a job trains. (A real run gives none now; the srun hint was the one.)"""
    from lightning_fabric.utilities.rank_zero import rank_zero_warn
    from lightning_fabric.utilities.warnings import PossibleUserWarning

    from mnist_sweep.job.quiet import hints_off, quiet_lightning

    quiet_lightning()
    with pytest.warns(PossibleUserWarning, match="still shown"), hints_off():
        rank_zero_warn("a warning of Lightning's is still shown", category=PossibleUserWarning)


def test_lightning_info_brings_the_lines_back(runs: dict[str, str]) -> None:
    output = runs["info"]
    assert [line for line in CHATTER if line not in output] == []
