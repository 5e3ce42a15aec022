"""The search space: Hydra's sweep syntax turned into Optuna distributions.

`hydra.sweeper.params` and the command line use Hydra's own override grammar, so the
parser hands over typed objects: `interval(a, b)` (a float or int range, `tag(log, ...)` for
a log scale), `choice(a, b)` or `a,b` (categorical), `range(a, b, step)` (stepped, `b`
excluded as in Python). A plain `key=value` fixes that key for every trial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from mnist_sweep.job.trial import SearchError


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)  # key -> the override as typed
    sources: dict[str, str] = field(default_factory=dict)  # key -> the override as typed

    def fixed_overrides(self) -> list[str]:
        return list(self.fixed.values())


def format_value(value: Any) -> str:
    """A sampled value as an override's right-hand side (what Hydra parses back to it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return Override._get_value_element_as_str(value)


def _is_int(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _distribution(override: Override) -> BaseDistribution:
    key, typed = override.get_key_element(), override.input_line
    value = override.value()
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        low, high, log = value.start, value.end, "log" in value.tags
        if low > high:
            raise SearchError(f"{typed}: the interval is reversed; write it as "
                              f"interval({high}, {low}).")
        if log and low <= 0:
            raise SearchError(f"{typed}: a log-scale interval needs a lower end > 0.")
        if _is_int(low, high):
            return IntDistribution(low, high, log=log)
        return FloatDistribution(float(low), float(high), log=log)
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        values = list(value.range())
        if not values:
            raise SearchError(f"{typed}: the range is empty (range(start, stop, step) "
                              f"excludes stop).")
        if _is_int(value.start, value.step):
            return IntDistribution(values[0], values[-1], step=value.step)
        return FloatDistribution(float(values[0]), float(values[-1]), step=float(value.step))
    if override.is_choice_sweep():
        assert isinstance(value, ChoiceSweep)
        choices = [str(v) if not isinstance(v, (bool, int, float, str, type(None))) else v
                   for v in value.list]
        if not choices:
            raise SearchError(f"{typed}: choice() needs at least one value.")
        return CategoricalDistribution(choices)
    raise SearchError(f"{key}: `{override.get_value_string()}` cannot be searched; use "
                      f"interval(a, b), tag(log, interval(a, b)), choice(a, b, ...) or "
                      f"range(a, b, step).")


def parse_space(params: dict[str, Any] | None, arguments: list[str]) -> SearchSpace:
    """The search space of `hydra.sweeper.params` with the command line on top: a sweep
    on the command line replaces the key's entry, a plain value fixes the key."""
    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except Exception as exc:  # Hydra's grammar errors are already one readable line
        raise SearchError(f"hydra.sweeper.params: {exc}") from None
    space = SearchSpace()
    for override in parsed:
        key = override.get_key_element()
        space.distributions.pop(key, None)
        space.fixed.pop(key, None)
        if override.is_sweep_override():
            space.distributions[key] = _distribution(override)
            space.sources[key] = override.input_line
        else:
            space.fixed[key] = override.input_line
    return space


def boundary_values(distribution: BaseDistribution) -> list[Any]:
    """The values that stand for the whole range in a schema check: both ends, every choice."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    assert isinstance(distribution, (FloatDistribution, IntDistribution))
    return [distribution.low, distribution.high]
