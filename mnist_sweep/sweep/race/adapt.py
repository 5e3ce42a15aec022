"""The sweeper's side of mnist_sweep/report/racing.py (the statistics, pure numpy/scipy):
settings from hydra.sweeper's values with messages that name them, the runs' accuracies
in percentage points (racing's unit), and the per-configuration facts race.json records."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from mnist_sweep.report.racing import DROPPED, RaceSettings, RaceState, replay
from mnist_sweep.sweep.race.configs import RaceError

SETTINGS = ("min_seeds", "max_seeds", "alpha", "equivalence", "max_runs")


def make_settings(given: dict[str, Any]) -> RaceSettings:
    """racing's settings; a bad value is refused as `hydra.sweeper.<key>=...: why`."""
    try:
        return RaceSettings(**{key: given[key] for key in SETTINGS})
    except (ValueError, TypeError) as exc:
        raise RaceError(_setting_message(str(exc))) from None


def _setting_message(text: str) -> str:
    text = text.removeprefix("racing: ")
    if text.split("=", 1)[0] in SETTINGS:
        return f"hydra.sweeper.{text}"
    return f"hydra.sweeper: {text}"


def check_budget(names: list[str], settings: RaceSettings) -> None:
    """Settings that cannot race these configurations (max_runs below the first look)."""
    try:
        replay({name: {} for name in names}, settings)
    except ValueError as exc:
        raise RaceError(_setting_message(str(exc))) from None


def points(value: float | None) -> float | None:
    """An accuracy (a fraction, as status.json records it) in percentage points."""
    return None if value is None or not math.isfinite(value) else 100.0 * value


def race(results: dict[str, dict[int, float | None]], settings: RaceSettings) -> RaceState:
    """Replay the race over every run with an end: a value in points, or None for a run
    that failed (no result: racing asks for it again)."""
    return replay(results, settings)


def status_text(state: RaceState, name: str) -> str:
    c = state.configs[name]
    if c.status == DROPPED and c.drop is not None:
        if c.drop.withdrawn:
            return f"dropped after seed {c.drop.look} (withdrawn)"
        p = "p < 0.001" if c.drop.p < 0.001 else f"p {c.drop.p:.2g}"
        return f"dropped after seed {c.drop.look} ({p})"
    return c.status


def config_facts(state: RaceState, name: str) -> dict[str, Any]:
    """What race.json records of one configuration (means in points, over the seeds the
    race counts)."""
    c = state.configs[name]
    return {"status": c.status, "status_text": status_text(state, name),
            "evidence": str(c.drop) if c.drop else None,
            "dropped_after": c.drop.look if c.drop else None,
            "seeds_counted": c.seeds, "mean": c.mean, "low": c.low, "high": c.high}


def settings_dict(settings: RaceSettings) -> dict[str, Any]:
    return asdict(settings)


def describe_settings(settings: RaceSettings) -> str:
    return ", ".join(f"{k}={v}" for k, v in asdict(settings).items())


def config_lines(state: RaceState, metric: str) -> list[str]:
    """One log line per configuration: status, seeds counted, mean so far."""
    lines = []
    for name, c in state.configs.items():
        mean = "-" if c.mean is None else f"{c.mean:.2f}%"
        lines.append(f"{name}: {status_text(state, name)}, {c.seeds} seed"
                     f"{'s' * (c.seeds != 1)}, mean {metric} {mean}")
    return lines
