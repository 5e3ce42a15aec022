"""The CPU defaults take effect where training happens: in the job process that
`python -m mnist_sweep` starts and in the joblib launcher's worker processes.

libgomp prints the settings it actually uses at start-up when OMP_DISPLAY_ENV=verbose is
set, so these tests read the wait policy from the OpenMP runtime itself rather than from
os.environ. The job logs torch's thread count; the checkpoint keeps the weights' strides.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnist_sweep import OPENMP_DEFAULTS
from tests.conftest import TINY, run_cli

OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
DISPLAY = re.compile(r"OPENMP DISPLAY ENVIRONMENT BEGIN(.*?)OPENMP DISPLAY ENVIRONMENT END",
                     re.S)
# Tiny runs as in TINY, with torch's own thread count (TINY pins one thread).
TINY_DEFAULT_THREADS = [a for a in TINY if not a.startswith("trainer.num_threads")]


def openmp_settings(output: str) -> list[dict[str, str]]:
    """Each OpenMP runtime's display block in `output`, as {variable: value}."""
    return [dict(re.findall(r"^\s+(\w+) = '([^']*)'", block, re.M))
            for block in DISPLAY.findall(output)]


@pytest.fixture
def clean_openmp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OpenMP settings inherited from this test process (which imported mnist_sweep)."""
    for name in OMP_VARS:
        monkeypatch.delenv(name, raising=False)


def job_log(root: Path) -> str:
    return "".join(p.read_text() for p in root.rglob("cli.log"))


def test_job_runs_with_passive_openmp_threads(tiny_root: Path, tmp_path: Path,
                                              clean_openmp_env: None) -> None:
    assert OPENMP_DEFAULTS == {"OMP_WAIT_POLICY": "PASSIVE"}
    result = run_cli([f"data.root={tiny_root}", f"hydra.run.dir={tmp_path / 'run'}",
                      *TINY_DEFAULT_THREADS], cwd=tmp_path,
                     env_extra={"OMP_DISPLAY_ENV": "verbose"})
    assert result.returncode == 0, result.stderr[-3000:]
    settings = openmp_settings(result.stdout + result.stderr)
    assert settings, "libgomp printed no settings: torch did not load libgomp?"
    # PASSIVE: threads sleep as soon as an op ends (spin count 0) instead of spinning
    assert all(s["OMP_WAIT_POLICY"] == "PASSIVE" and s["GOMP_SPINCOUNT"] == "0"
               for s in settings), settings
    # torch's own thread count, the number of usable cores unless the user says otherwise
    fresh = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, check=True)
    assert f"torch {int(fresh.stdout)} CPU threads" in job_log(tmp_path / "run")


def test_users_own_wait_policy_wins(tiny_root: Path, tmp_path: Path,
                                    clean_openmp_env: None) -> None:
    result = run_cli([f"data.root={tiny_root}", f"hydra.run.dir={tmp_path / 'run'}", *TINY],
                     cwd=tmp_path,
                     env_extra={"OMP_DISPLAY_ENV": "verbose", "OMP_WAIT_POLICY": "ACTIVE"})
    assert result.returncode == 0, result.stderr[-3000:]
    settings = openmp_settings(result.stdout + result.stderr)
    assert settings and all(s["OMP_WAIT_POLICY"] == "ACTIVE" for s in settings), settings
    assert "torch 1 CPU threads" in job_log(tmp_path / "run")  # trainer.num_threads=1


def test_joblib_workers_inherit_the_wait_policy(tiny_root: Path, tmp_path: Path,
                                                clean_openmp_env: None) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    result = run_cli(["-m", "head=gmp,gap", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                      f"data.root={tiny_root}", *TINY_DEFAULT_THREADS], cwd=tmp_path,
                     env_extra={"OMP_DISPLAY_ENV": "verbose"})
    assert result.returncode == 0, result.stderr[-3000:]
    settings = openmp_settings(result.stdout + result.stderr)
    assert all(s["OMP_WAIT_POLICY"] == "PASSIVE" for s in settings), settings
    # joblib limits each of its 2 workers to cores // 2 threads; the job follows it
    cores = torch.get_num_threads()
    per_worker = str(max(cores // 2, 1))
    workers = [s for s in settings if s.get("OMP_NUM_THREADS") == per_worker]
    if cores >= 2:
        assert len(workers) >= 2, settings
    assert job_log(tmp_path).count(f"torch {per_worker} CPU threads") == 2


def test_weights_are_stored_channels_last(tiny_root: Path, tmp_path: Path) -> None:
    result = run_cli([f"data.root={tiny_root}", f"hydra.run.dir={tmp_path / 'run'}", *TINY],
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False,
                       map_location="cpu")["state_dict"]
    # 3x3 kernels over several channels: the ones whose NHWC and NCHW strides differ
    convs = {k: v for k, v in state.items() if v.dim() == 4 and v.shape[1] > 1
             and v.shape[2] > 1}
    assert convs
    for name, weight in convs.items():
        assert weight.is_contiguous(memory_format=torch.channels_last), name
        assert not weight.is_contiguous(), name  # NHWC strides, not NCHW ones
