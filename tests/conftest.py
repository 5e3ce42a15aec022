"""Shared fixtures: tiny MNIST-format data written by the tests themselves, and a runner for
the real command line: in a subprocess, or through its entry point in this process where
no process boundary is what a test is about."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
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


# The shared sweep's command line, less data.root and hydra.sweep.dir: a test that runs it
# again on a copy of the folder (hydra.sweep.dir=<the copy>) gives the same jobs.
HEADS_SEEDS = ["head=gmp,gap", "seed=1,2", "-m", *TINY]
# Its jobs in their order: job k is (head, seed) HEADS_SEEDS_JOBS[k].
HEADS_SEEDS_JOBS = [("gmp", 1), ("gmp", 2), ("gap", 1), ("gap", 2)]


@pytest.fixture(scope="session")
def heads_seeds_sweep(tmp_path_factory: pytest.TempPathFactory, tiny_root: Path
                      ) -> tuple[Path, subprocess.CompletedProcess]:
    """One finished tiny sweep, head=gmp,gap with seeds 1 and 2 (four real jobs, two epochs
    each, named by their overrides), shared by the tests that only read it: its folder and
    the command's output. Never write into it: copy it (shutil.copytree) first; that
    includes reporting on it, which rewrites its summary files."""
    work = tmp_path_factory.mktemp("heads_seeds")
    sweep_dir = work / "sweep"
    proc = run_in_process([*HEADS_SEEDS, f"data.root={tiny_root}",
                           f"hydra.sweep.dir={sweep_dir}"], cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep_dir, proc


def seed_one_jobs(sweep_dir: Path, folder: Path) -> Path:
    """Copy the seed-1 job folders of heads_seeds_sweep into `folder` (created): what
    `head=gmp,gap -m` leaves (seed 1 is the default), without the report's files."""
    folder.mkdir(parents=True)
    for job in sweep_dir.iterdir():
        if job.is_dir() and "seed=1" in job.name:
            shutil.copytree(job, folder / job.name)
    assert len(list(folder.iterdir())) == 2
    return folder


@pytest.fixture(scope="session")
def heads_seeds_tensorboard(heads_seeds_sweep, tmp_path_factory: pytest.TempPathFactory
                            ) -> Iterator[str]:
    """A real TensorBoard server on heads_seeds_sweep, shared by the tests that query it;
    yields its base URL once every run is fully loaded: the four jobs with their final
    test/acc (the last value a job writes, at its epoch) and the two seed groups."""
    from tests.tensorboard_client import get, scalar_series, tensorboard_server

    sweep_dir = heads_seeds_sweep[0]
    jobs = {f"{p.parent.name}/tb/{json.loads(p.read_text())['dataset']}"
            for p in sweep_dir.glob("*/status.json")}
    assert len(jobs) == len(HEADS_SEEDS_JOBS)

    def loaded(base: str) -> bool:
        runs = get(base, "/data/runs")
        return len(runs) == 1 + len(jobs) + 2 and jobs <= set(runs) and all(
            scalar_series(base, run, "test/acc") for run in runs if run != ".") and all(
            any(step > 0 for _, step, _ in scalar_series(base, run, "test/acc"))
            for run in jobs)

    log = tmp_path_factory.mktemp("heads_seeds_tb") / "tensorboard.log"
    with tensorboard_server(sweep_dir, log, loaded) as base:
        yield base


def cli_env(cwd: Path, env_extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a command run for real: this one, with the per-user cache kept in
    cwd and none of the package's own variables a test of this process may have set."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cwd / ".cache"), "HYDRA_FULL_ERROR": "",
           "MPLCONFIGDIR": MPL_CONFIG_DIR, **(env_extra or {})}
    env.pop("MNIST_SWEEP_DATA", None)
    env.pop("MNIST_SWEEP_WARNED", None)  # set in this process by a test of the fallback
    return env


def run_cli(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m mnist_sweep ARGS` for real, with the per-user cache kept in cwd."""
    return subprocess.run([sys.executable, "-m", "mnist_sweep", *args], cwd=cwd,
                          env=cli_env(cwd, env_extra), capture_output=True, text=True,
                          timeout=timeout)


def cli_with_hook(hook: str) -> list[str]:
    """The command of a new process that runs `hook` first, Python code that wraps one
    function of the package so that something happens at that exact point of the command
    (a signal the process sends itself), then the real command line, mnist_sweep.cli.main,
    as `python -m mnist_sweep` does; its arguments follow."""
    driver = "\n".join(["import sys", "import mnist_sweep.cli as cli",
                        textwrap.dedent(hook),
                        "sys.argv = [cli.__file__, *sys.argv[1:]]", "cli.main()"])
    return [sys.executable, "-c", driver]


def run_in_process(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None
                   ) -> subprocess.CompletedProcess:
    """`python -m mnist_sweep ARGS` through the real entry point (cli.main) in this process,
    for tests where no process boundary is the point: config checks, refusals, reports,
    tiny trainings without signals. It saves the seconds a new interpreter spends importing
    torch and Lightning. The environment, working folder, argv, logging, signal handlers,
    torch's thread count and the state Hydra and the package keep per process are put back
    afterwards, so each call starts as a new process would."""
    from mnist_sweep import cli

    return _in_process(lambda: cli.main(), ["mnist_sweep", *args], cwd, env_extra)


def report_in_process(args: list[str | Path], cwd: Path | None = None
                      ) -> subprocess.CompletedProcess:
    """`python -m mnist_sweep.report ARGS` through report.cli.main in this process."""
    from mnist_sweep.report.cli import main

    argv = [str(a) for a in args]
    return _in_process(lambda: main(argv), ["mnist_sweep.report", *argv],
                       cwd or Path.cwd(), None)


def _in_process(call, argv: list[str], cwd: Path, env_extra: dict[str, str] | None
                ) -> subprocess.CompletedProcess:
    import contextlib
    import io
    import logging
    import signal

    import torch
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.singleton import Singleton

    from mnist_sweep import resolvers
    from mnist_sweep.sweep import callbacks as sweep_callbacks

    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    saved_handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM,
                                                       signal.SIGUSR1, signal.SIGUSR2)}
    saved_threads = torch.get_num_threads()
    root = logging.getLogger()
    saved_log = (list(root.handlers), root.level)
    saved_singletons = Singleton.get_state()
    os.environ.update({"XDG_CACHE_HOME": str(cwd / ".cache"), "HYDRA_FULL_ERROR": "",
                       "MPLCONFIGDIR": MPL_CONFIG_DIR, **(env_extra or {})})
    os.environ.pop("MNIST_SWEEP_DATA", None)
    os.environ.pop("MNIST_SWEEP_WARNED", None)
    out, err = io.StringIO(), io.StringIO()
    code: int = 0
    _shut_down_joblib_workers()
    try:
        os.chdir(cwd)
        sys.argv = argv
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                call()
            except SystemExit as exc:
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
                    code = 1
                else:
                    code = int(exc.code or 0)
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        for sig, handler in saved_handlers.items():
            signal.signal(sig, handler)
        torch.set_num_threads(saved_threads)
        root.handlers[:] = saved_log[0]
        root.setLevel(saved_log[1])
        GlobalHydra.instance().clear()
        Singleton.set_state(saved_singletons)
        sweep_callbacks._NEW_SWEEP_FOLDERS.clear()
        sweep_callbacks._NEW_SWEEP_FILES.clear()
        resolvers.CREATED_DIRS.clear()
        _shut_down_joblib_workers()
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def _shut_down_joblib_workers() -> None:
    """joblib keeps its worker processes for the next Parallel call of the same process
    (loky's reusable executor), with the working folder and environment they started with:
    a later sweep run in this process would train in them, writing its relative sweep folder
    under the first one's. A command run in-process gets new workers, as a new process
    would, and leaves none behind."""
    if "joblib" not in sys.modules:
        return
    from joblib.externals.loky import reusable_executor

    executor = reusable_executor._executor
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)

