"""Third trust pass, the command line: non-finite numbers, folders a refused sweep leaves,
Ctrl-C before the first epoch, `--cfg` with `-m`, unknown config-group options and
Lightning's srun hint."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir

from mnist_sweep.config import ConfigError, RunConfig, default_config, validate
from mnist_sweep.paths import config_dir
from tests.conftest import REPO, cli_env, cli_with_hook, run_cli, run_in_process

TINY = ["trainer.max_epochs=2", "trainer.limit_train_batches=5", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2", "trainer.enable_progress_bar=false",
        "trainer.num_threads=1", "data.val_size=128"]


def errors(proc: subprocess.CompletedProcess) -> int:
    """How many error messages a command printed (one per line starting `Error: `)."""
    return sum(line.startswith("Error: ") for line in proc.stderr.splitlines())


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def float_settings(cls: type = RunConfig, prefix: str = "", defaults: Any = None) -> list[str]:
    """Every setting of the schema that holds a float: typed float (or float | None), or
    typed Any with a float default in conf/ (the trainer's batch limits)."""
    defaults = default_config() if defaults is None else defaults
    keys = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        default = getattr(defaults, f.name)
        if dataclasses.is_dataclass(default):
            keys += float_settings(type(default), f"{key}.", default)
        elif "float" in str(f.type) or isinstance(default, float):
            keys.append(key)
    return keys


# ---- 4. infinite values --------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["inf", "-inf", "nan", "1e400"])
def test_every_float_setting_rejects_inf_and_nan(bad: str) -> None:
    keys = float_settings()
    assert {"optim.lr", "optim.weight_decay", "scheduler.max_lr", "model.dropout",
            "trainer.divergence_loss", "trainer.limit_train_batches"} <= set(keys)
    for key in keys:
        with pytest.raises(ConfigError) as caught:
            validate(compose_cfg([f"{key}={bad}"]))
        message = str(caught.value)
        assert message.startswith(f"{key}=") and "finite" in message, (key, message)
        assert "\n" not in message
    validate(compose_cfg(["optim.lr=1e-3", "scheduler.max_lr=0.5"]))  # finite ones pass


@pytest.mark.parametrize("args", [["optim.lr=inf", "--cfg", "job"], ["optim.lr=1e400"],
                                  ["optim.weight_decay=inf"], ["model.dropout=nan", "-m"]])
def test_an_infinite_value_ends_in_one_message_and_leaves_no_folder(
        tiny_root, tmp_path, args) -> None:
    proc = run_in_process([f"data.root={tiny_root}", *TINY, *args], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert errors(proc) == 1 and "finite" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".cache") == []


def test_a_refused_sweep_removes_only_the_folders_it_created(tiny_root, tmp_path) -> None:
    bad = [f"data.root={tiny_root}", *TINY, "seed=1,-1", "-m"]
    # the default folder, multirun/<date>/<time>: all three levels were made by the command
    proc = run_in_process(bad, cwd=tmp_path)
    assert proc.returncode == 2 and errors(proc) == 1, proc.stderr[-2000:]
    assert not (tmp_path / "multirun").exists()
    # a multirun/ that was there stays, with what it held
    (tmp_path / "multirun").mkdir()
    (tmp_path / "multirun" / "notes.txt").write_text("mine")
    proc = run_in_process(bad, cwd=tmp_path)
    assert proc.returncode == 2 and errors(proc) == 1, proc.stderr[-2000:]
    assert [p.name for p in (tmp_path / "multirun").iterdir()] == ["notes.txt"]
    # a named folder: the levels made for it go, an existing (empty) one above them stays
    (tmp_path / "kept").mkdir()
    proc = run_in_process([*bad, "hydra.sweep.dir=kept/new/s"], cwd=tmp_path)
    assert proc.returncode == 2 and errors(proc) == 1, proc.stderr[-2000:]
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())
    # an empty sweep folder that existed before the command is not the command's to remove
    (tmp_path / "empty").mkdir()
    proc = run_in_process([*bad, "hydra.sweep.dir=empty"], cwd=tmp_path)
    assert proc.returncode == 2 and errors(proc) == 1, proc.stderr[-2000:]
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())


# ---- 5. Ctrl-C before the first epoch ------------------------------------------------------

def run_with_ctrl_c(hook: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run the real command line (mnist_sweep.cli.main, as `python -m mnist_sweep` does) in a
    subprocess in which `hook` (Python code run first) has wrapped one function of the real
    code path so that it sends SIGINT to its own process with signal.raise_signal, as Ctrl-C
    in a terminal would, at that point of the command and no other. SIGINT is given its
    default disposition first (a background shell would have it ignored)."""
    hook = textwrap.dedent("""
        import signal
        import mnist_sweep.sweep.callbacks as callbacks

        def ctrl_c(function, at_call):
            calls = []
            def wrapped(*args, **kwargs):
                calls.append(1)
                if len(calls) == at_call:
                    signal.raise_signal(signal.SIGINT)
                return function(*args, **kwargs)
            return wrapped
        """) + textwrap.dedent(hook)
    return subprocess.run([*cli_with_hook(hook), *args], cwd=cwd,
                          env=cli_env(cwd, {"PYTHONPATH": str(REPO)}),
                          capture_output=True, text=True, timeout=600,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def continue_command(output: str) -> list[str]:
    """The override the one line about the interruption gives, as a shell would split it."""
    lines = [ln for ln in output.splitlines() if "interrupted" in ln]
    assert len(lines) == 1, output[-3000:]
    hint = lines[0].split("Run the same command with ")[1].split(" to continue")[0]
    return shlex.split(hint)


def test_ctrl_c_while_the_sweep_checks_its_jobs_gives_the_command_to_continue(
        tiny_root, tmp_path) -> None:
    """SIGINT arrives while the sweep checks its second job (check_config of the sweep's
    plan, where torch is imported on first use: the user's 72-83 line traceback came from
    there). Deterministic rather than a guessed sleep: the signal is raised by the process
    itself, synchronously, from inside that call (signal.raise_signal runs Python's
    handler before the wrapped call's next bytecode), whatever the machine's speed."""
    args = ["head=gmp,gap", "-m", f"data.root={tiny_root}", *TINY]
    proc = run_with_ctrl_c("callbacks.check_config = ctrl_c(callbacks.check_config, 2)",
                           args, tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 130, output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    override = continue_command(output)
    assert not (tmp_path / "multirun").exists()  # nothing was written: nothing is left
    # the command it gives, as given (no signal is sent to this one)
    again = run_in_process([*args, *override], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    sweep = tmp_path / override[0].split("=", 1)[1]
    assert len(list(sweep.glob("*/status.json"))) == 2


def test_ctrl_c_as_the_first_job_starts_gives_the_command_to_continue(
        tiny_root, tmp_path) -> None:
    """SIGINT arrives after the checks, as the first job starts (the task function's first
    call, before the job installs its own Ctrl-C handling): raised from inside that call by
    the process itself, as in the test above."""
    args = ["head=gmp,gap", "-m", f"data.root={tiny_root}", *TINY, "hydra.sweep.dir=s"]
    proc = run_with_ctrl_c(
        "cli.worker_of_an_ended_sweep = ctrl_c(cli.worker_of_an_ended_sweep, 1)", args,
        tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 130, output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    assert continue_command(output) == ["hydra.sweep.dir=s"]
    assert not (tmp_path / "s" / ".mnist_sweep.lock").exists()  # released on the way out


# ---- 6. --cfg with -m ----------------------------------------------------------------------

def test_cfg_job_with_multirun_prints_every_jobs_config(tmp_path) -> None:
    # a new process: the test counts what the command prints, all of it
    proc = run_cli(["--cfg", "job", "-m", "head=gmp,gap", "seed=3"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stdout.count("head: gmp") == 1 and proc.stdout.count("head: gap") == 1
    assert proc.stdout.count("seed: 3") == 2
    headers = [ln for ln in proc.stdout.splitlines() if ln.startswith("# job ")]
    assert headers == ["# job 0 of 2: head=gmp seed=3", "# job 1 of 2: head=gap seed=3"]
    assert proc.stdout.index(headers[0]) < proc.stdout.index("head: gmp") \
        < proc.stdout.index(headers[1]) < proc.stdout.index("head: gap")
    assert not list(tmp_path.glob("multirun*")) and not list(tmp_path.glob("outputs*"))
    # a package selects the same part of each job's config as it does for one run
    packaged = run_cli(["--cfg", "job", "--package", "optim", "-m", "optim=adam,sgd"],
                       cwd=tmp_path)
    assert packaged.returncode == 0, packaged.stderr[-2000:]
    assert "name: adam" in packaged.stdout and "name: sgd" in packaged.stdout
    assert "head:" not in packaged.stdout


@pytest.mark.parametrize("args", [["--info", "-m"], ["-m", "--info", "config"],
                                  ["--run", "head=gmp,gap", "-m"], ["--info", "--cfg", "job"]])
def test_two_of_hydras_modes_at_once_end_in_one_line_naming_them(tmp_path, args) -> None:
    # Hydra's own answer was a ValueError with its traceback
    proc = run_in_process(args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr[-2000:]
    assert "cannot be combined" in lines[0] and lines[0].count("--") >= 2, lines[0]
    assert proc.stdout == ""
    assert not list(tmp_path.glob("multirun*")) and not list(tmp_path.glob("outputs*"))


@pytest.mark.parametrize("args, says", [
    (["head=gmp,gap"], "head=gmp,gap gives several values, a sweep: add -m"),
    (["--cfg", "job", "seed=1,2"], "seed=1,2 gives several values, a sweep: add -m"),
    (["optim.lr=interval(1e-3,1e-1)"], "is a search range: search it with"),
    (["race=seeds"], "race=seeds chooses a sweeper, which runs in a sweep only: add -m"),
    (["hparams_search=optuna"], "hparams_search=optuna chooses a sweeper"),
    (["-m", "race=seeds", "hparams_search=optuna"],
     "race=seeds and hparams_search=optuna each choose the sweeper"),
])
def test_a_sweep_without_its_multirun_flag_ends_in_one_line(tmp_path, args, says) -> None:
    # Hydra's answers: a 5-line "Ambiguous value" (exit 1), one job as if no race or search
    # had been asked for, or a TypeError from the sweeper (which left the sweep's lock)
    proc = run_in_process([*args, "trainer.max_epochs=1"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and says in lines[0], lines
    assert not list(tmp_path.glob("multirun*")) and not list(tmp_path.glob("outputs*"))


def test_the_sweepers_settings_still_show_without_multirun(tmp_path) -> None:
    proc = run_in_process(["--cfg", "hydra", "race=seeds"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RaceSweeper" in proc.stdout and "max_seeds: 10" in proc.stdout


def test_a_trainer_setting_lightning_refuses_fails_the_job_in_one_message(
        tiny_root, tmp_path) -> None:
    # half of one validation batch: Lightning refuses it once the data is known (it was a
    # traceback, the job recorded as crashed)
    args = [o for o in TINY if not o.startswith(("trainer.limit_val_batches=", "data.val_size="))]
    proc = run_in_process([f"data.root={tiny_root}", *args, "data.val_size=64",
                           "data.batch_size=64", "trainer.limit_val_batches=0.5",
                           "hydra.run.dir=run"], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: Lightning refused the settings: ") and \
        "limit_val_batches" in last, proc.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "status.json").read_text())
    assert record["status"] == "failed" and record["error"] == last[len("Error: "):], record
    assert "Traceback" not in (tmp_path / "run" / "cli.log").read_text()


# ---- smaller: unknown config-group options -------------------------------------------------

@pytest.mark.parametrize("args, group, options", [
    (["head=GMP"], "head", "flatten | gap | gmp"),
    (["optim=adm"], "optim", "adam | adamw | sgd"),
    (["scheduler=cos"], "scheduler", "constant | cosine | inverse_time | onecycle"),
    (["data=mnst"], "data", "fashion_mnist | mnist"),
    (["experiment=seed04"], "experiment", "seed004"),
    (["+experiment=nope"], "experiment", "tuned"),
    (["hydra/launcher=jobib"], "hydra/launcher", "basic | joblib"),
    (["head=gmp,GMP", "-m"], "head", "flatten | gap | gmp"),
    (["--cfg", "job", "optim=SGD"], "optim", "adam | adamw | sgd"),
])
def test_an_unknown_group_option_ends_in_one_line_naming_the_options(
        tmp_path, args, group, options) -> None:
    # a new process: the test is about all it prints, and in this one a warning (pytest
    # records it) or a handler made at import would print elsewhere than the captured stderr
    proc = run_cli([*args, "trainer.max_epochs=1"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr[-2000:]
    assert f"`{group}`" in lines[0] and options in lines[0]
    assert not list(tmp_path.glob("multirun*")) and not list(tmp_path.glob("outputs*"))


# ---- smaller: Lightning's srun hint --------------------------------------------------------

def test_a_run_outside_a_slurm_job_prints_no_srun_hint(tiny_root, tmp_path) -> None:
    """A machine with Slurm installed: an `srun` on PATH (a stand-in, so the test does not
    depend on this machine having Slurm), no Slurm job around the run. A new process on
    purpose: in this one Python's warnings registry may have shown the hint already, and a
    warning shown once is not shown again, so its absence here would prove nothing."""
    env = {"PATH": fake_srun(tmp_path / "bin")}
    slurm_vars = [k for k in os.environ if k.startswith("SLURM_")]
    assert not slurm_vars, slurm_vars  # run_cli passes the environment on
    proc = run_cli([f"data.root={tiny_root}", *TINY, "trainer.max_epochs=1",
                    "hydra.run.dir=run"], cwd=tmp_path, env_extra=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished: test acc" in proc.stdout
    output = proc.stdout + proc.stderr + (tmp_path / "run" / "cli.log").read_text()
    assert "srun" not in output, output[-3000:]


def fake_srun(folder: Path) -> str:
    """A PATH with an `srun` in front: a machine with Slurm installed, whether or not this
    one is."""
    folder.mkdir()
    (folder / "srun").write_text("#!/bin/sh\nexit 0\n")
    (folder / "srun").chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


def test_the_srun_hint_is_off_only_while_a_job_trains(tmp_path, monkeypatch) -> None:
    """Lightning's own detection, called as fit() and test() call it, in this process: the
    hint is there outside the job's block, gone inside it, and the warning filters are
    the same after the block as before (nothing process-wide stays behind)."""
    import warnings

    from lightning_fabric.plugins.environments import SLURMEnvironment
    from lightning_fabric.utilities.rank_zero import rank_zero_warn
    from lightning_fabric.utilities.warnings import PossibleUserWarning

    from mnist_sweep.job.quiet import hints_off

    monkeypatch.setenv("PATH", fake_srun(tmp_path / "bin"))
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        assert not SLURMEnvironment.detect()
        with hints_off():
            assert not SLURMEnvironment.detect()
            rank_zero_warn("another warning of Lightning's", category=PossibleUserWarning)
        assert not SLURMEnvironment.detect()
    messages = [str(w.message) for w in outside]
    assert len([m for m in messages if "`srun` command is available" in m]) == 2, messages
    assert "another warning of Lightning's" in messages
    assert warnings.filters == before
