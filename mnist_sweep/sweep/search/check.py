"""Every value a search can try is checked against the config schema before the first
trial: a range that reaches an invalid value would otherwise fail trials one by one, deep
into the search."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from mnist_sweep.config import ConfigError, validate
from mnist_sweep.job.trial import SearchError
from mnist_sweep.sweep.search.space import SearchSpace, boundary_values, format_value


def _first_line(exc: Exception) -> str:
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
    return line if line.endswith(".") else f"{line}."


def check_space(space: SearchSpace, compose: Callable[[list[str]], DictConfig]) -> None:
    """Compose the job config at both ends of every range and at every choice (the other
    keys at their fixed values) and validate it. Raises SearchError naming the key."""
    fixed = space.fixed_overrides()
    try:
        validate(compose(fixed))
    except ConfigError as exc:
        raise SearchError(str(exc)) from None
    for key, distribution in space.distributions.items():
        source = space.sources[key]
        for value in boundary_values(distribution):
            override = f"{key}={format_value(value)}"
            try:
                cfg = compose([*fixed, override])
            except Exception as exc:  # composition: an unknown key or group option
                raise SearchError(
                    f"search space `{source}`: {_first_line(exc)} Fix the key or its values "
                    f"(`python -m mnist_sweep --cfg job` lists every key).") from None
            try:
                validate(cfg)
            except ConfigError as exc:
                reason = str(exc).split(". Change it on the command line")[0]
                raise SearchError(f"search space `{source}` includes {override}, and "
                                  f"{reason}. Narrow the search space for {key}.") from None
