"""`python -m mnist_sweep [overrides] [-m]`: Hydra's command line around one training job."""

from __future__ import annotations

import difflib
import os
import sys
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_sweep.job.signals import (
    DRY_RUN_ENV,
    in_joblib_worker,
    stop_after_ctrl_c,
    sweep_ends_soon,
    worker_of_an_ended_sweep,
)
from mnist_sweep.paths import config_dir
from mnist_sweep.record.settings import SWEEPER_GROUPS
from mnist_sweep.resolvers import register_resolvers
from mnist_sweep.sweep.live import stop_live_view

register_resolvers()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def hydra_entry(cfg: DictConfig) -> float | None:
    """Hydra's task function; returns the optimised metric (for the Optuna sweeper)."""
    # heavy imports after Hydra parsed the command line
    from mnist_sweep.job.train import JobInterrupted, run_job

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    job_num = hydra_cfg.job.num if multirun else None
    if worker_of_an_ended_sweep():  # the sweep was stopped: start none of its queued jobs
        os._exit(143)
    try:
        return run_job(cfg, hydra_cfg.runtime.output_dir, job_num=job_num, multirun=multirun)
    except JobInterrupted as exc:
        if exc.code != 143 or not in_joblib_worker():
            raise
        # SIGTERM in a joblib worker. From a stopped sweep (job/signals.py), whose process
        # ends moments after passing it on: the worker then starts no queued job. To this
        # worker alone: its job ends interrupted, as a cancelled Slurm job does, and the
        # sweep goes on with the others (and lists it at its end).
        if sweep_ends_soon():
            os._exit(143)
        return None


def main() -> None:
    """`--cfg` with `-m` prints each job's config in turn, headed `# job <n> of <N>: ...`."""
    # `mnist-sweep watch <sweep dir>`: follow a sweep from its folder (no override has this
    # form: overrides hold `=`), see sweep/watch.py
    if sys.argv[1:2] == ["watch"]:
        from mnist_sweep.sweep.watch import main as watch

        watch(sys.argv[2:])
        return
    try:
        try:
            run_command()
        finally:  # whatever ends the command, the terminal is given back first
            stop_live_view()
    except KeyboardInterrupt:  # Ctrl-C outside a job's training, which handles its own
        stop_after_ctrl_c()


def run_command() -> None:
    # `--dry-run` is ours, not Hydra's: list what would happen to every job, train nothing.
    if "--dry-run" in sys.argv:
        sys.argv.remove("--dry-run")
        os.environ[DRY_RUN_ENV] = "1"
    # Hydra's argparse stops at the first override, so `head=gmp,gap -m data.root=x` would
    # fail: lift -m/--multirun in front of the overrides, wherever the user typed it.
    flags = [a for a in sys.argv[1:] if a in ("-m", "--multirun")]
    sys.argv = [sys.argv[0], *flags, *(a for a in sys.argv[1:] if a not in flags)]
    check_modes(sys.argv[1:])
    check_group_options(sys.argv[1:])
    check_sweep_needs_multirun(sys.argv[1:])
    if "--cfg" in modes_of(sys.argv[1:]):
        validate_before_printing(sys.argv[1:])
        if flags:  # Hydra prints one config: print each job's, one after another
            print_each_jobs_config(sys.argv[0], sys.argv[1:])
            return
    try:
        hydra_entry()
    except SystemExit as exc:
        if type(exc).__name__ == "WriteFailed":  # raised only once job.train is imported
            stop_after_write_failure(exc)
        raise


# Hydra's flags that each choose what the command does; only one may be given (`--cfg`
# with `-m` excepted: main prints each job's config)
_MODES = {"-r": "--run", "--run": "--run", "-m": "--multirun", "--multirun": "--multirun",
          "-c": "--cfg", "--cfg": "--cfg", "-i": "--info", "--info": "--info",
          "-sc": "--shell-completion", "--shell-completion": "--shell-completion"}


def modes_of(args: list[str]) -> list[str]:
    """Hydra's modes a command line asks for, each once, by its long name (`-m`: --multirun)."""
    flags = (f.split("=")[0] for f in split_args(args)[0])
    return list(dict.fromkeys(_MODES[f] for f in flags if f in _MODES))


def check_modes(args: list[str]) -> None:
    """Two of Hydra's modes at once (`--info -m`) end in one line naming them, exit code 2
    (Hydra raises a ValueError with its traceback)."""
    modes = modes_of(args)
    if len(modes) > 1 and set(modes) != {"--cfg", "--multirun"}:
        fail(f"{' and '.join(modes)} cannot be combined: give one of them (e.g. "
             f"`python -m mnist_sweep {modes[-1]} ...` without {modes[0]}).")


def check_sweep_needs_multirun(args: list[str]) -> None:
    """A sweep's overrides need `-m`: swept values (`head=gmp,gap`) and a sweeper's group
    (`race=seeds`, which would otherwise run one job as if no race had been asked for) end
    in one line saying so, exit code 2; two groups that each choose the sweeper too."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(split_args(args)[1])
    except Exception:  # left to Hydra, which explains a malformed override itself
        return
    sweepers = [o.input_line for o in parsed
                if not o.is_delete() and o.key_or_group in SWEEPER_GROUPS]
    if len(sweepers) > 1:
        fail(f"{' and '.join(sweepers)} each choose the sweeper: give one of them.")
    modes = modes_of(args)
    if "--multirun" in modes:
        return
    swept = [o for o in parsed if o.is_sweep_override()]
    if swept and swept[0].is_interval_sweep():
        fail(f"{swept[0].input_line} is a search range: search it with "
             f"`hparams_search=optuna -m`, or give one value.")
    if swept:
        fail(f"{swept[0].input_line} gives several values, a sweep: add -m to run a job for "
             f"each (or write a list as [a,b], or quote the value to keep the comma).")
    if sweepers and not modes:  # `--cfg hydra race=seeds` shows the sweeper's settings
        fail(f"{sweepers[0]} chooses a sweeper, which runs in a sweep only: add -m.")


def fail(message: str) -> None:
    """End the command as a bad value does: one line, exit code 2."""
    print(f"Error: {message}", file=sys.stderr)
    raise SystemExit(2)


# Hydra's flags that take a value: what follows them is not an override
_FLAGS_WITH_VALUE = ("-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn",
                     "--config-name", "-cd", "--config-dir", "--info", "-i",
                     "--experimental-rerun")


# Hydra's flags that choose other configs: its own composition checks those
_OTHER_CONFIGS = ("-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir")


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Hydra's flags (with their values) and the overrides of a command line."""
    flags: list[str] = []
    overrides: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            flags.append(arg)
        elif arg in _FLAGS_WITH_VALUE:
            skip = True
            flags.append(arg)
        elif arg.startswith("-"):
            flags.append(arg)
        else:
            overrides.append(arg)
    return flags, overrides


def jobs_of(overrides: list[str]) -> list[list[str]] | None:
    """Each job's overrides, as Hydra's basic sweeper splits a sweep (one job without a
    swept value); None for an override Hydra's parser refuses (Hydra explains it itself)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        if not any(o.is_sweep_override() for o in parsed):
            return [overrides]
        return [list(job) for batch in BasicSweeper.split_arguments(parsed, None)
                for job in batch]
    except Exception:
        return None


def check_group_options(args: list[str]) -> None:
    """An option that a config group lacks (`head=GMP`, `optim=adm`, a swept one too) ends
    the command like any other bad value: one line that names the group's options, exit
    code 2 (Hydra's own message is a dozen lines and exit code 1). Every group Hydra knows,
    the project's and Hydra's own (hydra/launcher), is checked the same way."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep

    flags, overrides = split_args(args)
    if any(f.split("=")[0] in _OTHER_CONFIGS for f in flags):
        return
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # left to Hydra, which explains a malformed override itself
        return
    # a group is named without dots (head, hydra/launcher); a key with one is a value's
    chosen = [o for o in parsed if not o.is_delete() and "." not in o.key_or_group]
    if not chosen:
        return
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for override in chosen:
            options = loader.get_group_options(override.key_or_group)
            if not options:  # not a group: a plain value (seed=1)
                continue
            value = override.value()
            values = (list(override.sweep_string_iterator()) if isinstance(value, ChoiceSweep)
                      else [value] if isinstance(value, str) else [])  # range, glob: Hydra's
            for option in values:
                if option not in options and "/" not in option:
                    group = override.key_or_group
                    near = difflib.get_close_matches(option.lower(), options, n=1) or options
                    fail(f"{group}={option} is not an option of the `{group}` config "
                         f"group: choose one of {' | '.join(options)}, e.g. "
                         f"`{group}={near[0]}`.")


def print_each_jobs_config(program: str, args: list[str]) -> None:
    """`--cfg` with `-m`: Hydra prints one config only (and refuses the pair with a
    traceback). Each job's config is printed as `--cfg` prints a single run's, with the
    same flags (`--package`, `--resolve`), under a line naming the job."""
    flags, overrides = split_args(args)
    flags = [f for f in flags if f not in ("-m", "--multirun")]
    jobs = jobs_of(overrides)
    if jobs is None:  # a malformed override: Hydra's message, as for a single run
        jobs = [overrides]
    for num, job in enumerate(jobs):
        print(f"# job {num} of {len(jobs)}: {' '.join(job) or '(defaults)'}", flush=True)
        sys.argv = [program, *flags, *job]
        hydra_entry()
        sys.stdout.flush()


def validate_before_printing(args: list[str]) -> None:
    """`--cfg job` prints the composed config without running the checks a run starts with,
    so invalid values would print as if they were fine: compose and validate every job the
    command line describes first (one message and exit code 2, as a run would end)."""
    from hydra import compose, initialize_config_dir

    from mnist_sweep.config import ConfigError, validate

    jobs = jobs_of(split_args(args)[1])
    if jobs is None:  # left to Hydra, which explains a malformed override itself
        return
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for job in jobs:
            try:
                validate(compose(config_name="config", overrides=job, return_hydra_config=True))
            except ConfigError as exc:
                print(f"Error: {exc}", file=sys.stderr)
                raise SystemExit(2) from None
            except Exception:  # composition errors: Hydra reports them when it composes
                return


def stop_after_write_failure(exc: Any) -> None:
    """A job could not write its folder: stop the sweep with one message and whatever
    report the disk still takes (the jobs after it would fail the same way)."""
    print(f"Error: {exc.message}", file=sys.stderr)
    if exc.sweep_dir is not None:
        from mnist_sweep.report import build_report

        try:
            build_report(exc.sweep_dir)
        except Exception as report_exc:  # the same full disk, most likely
            print(f"The sweep's report could not be written either ({report_exc}); run "
                  f"`mnist-sweep-report {exc.sweep_dir}` once there is space.", file=sys.stderr)
    raise SystemExit(1) from None


if __name__ == "__main__":
    main()
