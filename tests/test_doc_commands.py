"""Every `python -m mnist_sweep ...` command that README.md and the instructing docs pages
give passes the command line's own checks and is composed by Hydra and validated,
in-process and without training, so a renamed key or option (or a sweep missing its -m)
cannot leave a stale command behind. The generated results and the dated
benchmark records show commands as they ran and are not checked."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from mnist_sweep.config import validate
from mnist_sweep.paths import config_dir
from mnist_sweep.resolvers import register_resolvers

ROOT = Path(__file__).resolve().parent.parent
# records of what ran, not instructions
RECORDS = {"docs/results.md", "docs/benchmarks.md"}
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")
                              if str(p.relative_to(ROOT)) not in RECORDS)]
PREFIX = "python -m mnist_sweep "
# Hydra's and the project's flags: those that take a value, then those that do not
FLAGS_WITH_VALUE = {"--cfg", "-c", "-p", "--package"}
FLAGS = {"-m", "--multirun", "--dry-run", "--help"}


def commands_in(text: str) -> list[str]:
    """Commands in fenced code blocks (one per line) and in inline code spans (which may
    wrap over lines); templates with `<...>` or `[...]` placeholders are left out."""
    found = []
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.DOTALL)
    for block in blocks:
        found += [line.split("  #")[0].strip() for line in block.splitlines()]
    prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.DOTALL)
    found += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    return [c for c in found if c.startswith(PREFIX) and not re.search(r"<|\[|\.\.\.", c)]


def overrides_of(command: str) -> list[str]:
    words, overrides = shlex.split(command)[3:], []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in FLAGS_WITH_VALUE:
            skip = True
        elif word not in FLAGS:
            assert not word.startswith("-"), f"unknown flag {word} in: {command}"
            overrides.append(word)
    return overrides


COMMANDS = sorted({(page, command) for page in PAGES
                   for command in commands_in((ROOT / page).read_text())})


def test_the_pages_give_commands_to_check() -> None:
    pages = {page for page, _ in COMMANDS}
    assert "README.md" in pages and len(COMMANDS) >= 20, COMMANDS


@pytest.mark.parametrize(("page", "command"), COMMANDS)
def test_every_command_passes_the_command_lines_own_checks(page: str, command: str) -> None:
    """What `python -m mnist_sweep` checks before Hydra starts (cli.run_command): one mode,
    known group options, -m where the overrides sweep. Each would end the command, exit 2."""
    from mnist_sweep import cli

    words = [w for w in shlex.split(command)[3:] if w != "--dry-run"]
    flags = [w for w in words if w in ("-m", "--multirun")]
    args = [*flags, *(w for w in words if w not in flags)]  # as run_command orders them
    cli.check_modes(args)
    cli.check_group_options(args)
    cli.check_sweep_needs_multirun(args)


@pytest.fixture(scope="module")
def hydra_context():
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        yield


def _compose(overrides: list[str]):
    return compose(config_name="config", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize(("page", "command"), COMMANDS)
def test_every_command_composes_and_validates(hydra_context, page: str, command: str) -> None:
    overrides = overrides_of(command)
    parsed = OverridesParser.create().parse_overrides(overrides)
    grid = [o for o in parsed if o.is_sweep_override() and not (
        o.is_interval_sweep() or o.is_range_sweep() or o.is_choice_sweep())]
    searched = [o for o in parsed if o.is_sweep_override() and o not in grid]
    if searched or "hparams_search=optuna" in overrides:
        # a search: its space is checked the way the search sweeper checks it
        from mnist_sweep.sweep.search.check import check_space
        from mnist_sweep.sweep.search.space import parse_space

        hydra_args = [o for o in overrides if o.startswith(("hydra.", "hydra/"))]
        task_args = [o for o in overrides if o not in hydra_args]
        plain = [o.input_line for o in parsed if not o.is_sweep_override()]
        params = _compose(plain).hydra.sweeper.get("params")
        space = parse_space(dict(params or {}), task_args)
        check_space(space, lambda extra: _compose([*hydra_args, *extra]))
        return
    jobs = ([list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
            if grid else [overrides])
    for job in jobs:
        validate(_compose(job))
