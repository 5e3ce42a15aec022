"""A race's configurations: the grid the command line describes, expanded as Hydra's basic
sweeper expands it, each configuration composed and validated before the first run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig

from mnist_sweep.config import ConfigError, RunConfig, validate

SEED_KEY = "seed"


class RaceError(Exception):
    """A race that cannot start: one message, exit code 2, nothing written."""


@dataclass(frozen=True)
class Configuration:
    """One configuration of the race: its name (the swept values that make it what it is)
    and the overrides every run of it is launched with, less the seed."""

    name: str
    overrides: tuple[str, ...]

    def run_overrides(self, seed: int) -> list[str]:
        return [*self.overrides, f"{SEED_KEY}={seed}"]


def configurations(arguments: list[str]) -> list[Configuration]:
    """The grid's configurations, in the basic sweeper's order (BasicSweeper.split_arguments);
    a configuration is named by its values of the swept keys."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(arguments))
    except Exception as exc:  # Hydra has already parsed them once; kept for safety
        raise RaceError(f"the command line's overrides cannot be parsed: {exc}") from None
    for override in parsed:
        if override.key_or_group == SEED_KEY:
            raise RaceError(
                f"`{override.input_line}`: a race chooses the seeds itself (1, 2, 3, ... up to "
                f"hydra.sweeper.max_seeds); drop the seed override.")
        if override.is_sweep_override() and not override.is_discrete_sweep():
            raise RaceError(
                f"`{override.input_line}`: a race's configurations are a grid of listed "
                f"values (key=a,b,c); ranges and intervals are for hparams_search=optuna.")
    swept = {o.get_key_element() for o in parsed if o.is_sweep_override()}
    try:
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except Exception as exc:
        raise RaceError(f"the grid cannot be expanded: {exc}") from None
    configs = []
    for job in jobs:
        named = [o for o in job if o.split("=", 1)[0] in swept]
        configs.append(Configuration(" ".join(o.lstrip("+") for o in named) or "(defaults)",
                                     tuple(job)))
    seen: dict[str, Configuration] = {}
    for config in configs:
        if config.name in seen:
            raise RaceError(f"the grid lists the configuration {config.name} twice: each "
                            f"value of a swept key must be different.")
        seen[config.name] = config
    if len(configs) < 2:
        raise RaceError("a race needs two or more configurations to compare: sweep a setting "
                        "on the command line, e.g. `head=gmp,gap -m race=seeds`.")
    return configs


def check_configurations(configs: list[Configuration], metric: str,
                         compose: Callable[[list[str]], DictConfig]) -> list[RunConfig]:
    """Compose and validate every configuration (with the first seed), and refuse a metric
    the configurations cannot measure. Returns their run configs, in order."""
    run_cfgs = []
    unvalidated = []
    for config in configs:
        overrides = config.run_overrides(1)
        try:
            job_cfg = compose(overrides)
        except Exception as exc:  # e.g. an unknown group option in one sweep value
            raise RaceError(f"{config.name}: {str(exc) or type(exc).__name__}") from None
        try:
            run_cfg = validate(job_cfg)
        except ConfigError as exc:
            raise RaceError(f"{config.name}: {exc}" if len(configs) > 1 else str(exc)) from None
        if not run_cfg.data.validates:
            unvalidated.append(config.name)
        run_cfgs.append(run_cfg)
    if metric.startswith("val/") and unvalidated:
        which = ("every configuration has" if len(unvalidated) == len(configs)
                 else f"{', '.join(unvalidated)} {'has' if len(unvalidated) == 1 else 'have'}")
        raise RaceError(
            f"hydra.sweeper.metric={metric} needs a validation set, and {which} "
            f"data.val_size=0 (every training image trains, none validates). Keep "
            f"data.val_size > 0, or race on the test set explicitly with "
            f"hydra.sweeper.metric=test/acc (the report then flags the choice as made on the "
            f"test set).")
    return run_cfgs
