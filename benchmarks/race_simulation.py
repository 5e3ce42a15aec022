"""The racing rule (mnist_sweep/report/racing.py) on simulated races: how often it drops a
configuration as good as the best, how often the best wins, and how many runs it takes
against running every configuration to max_seeds.

Results per run are i.i.d. normal (std 0.05 points unless said), min_seeds=3, max_seeds=10,
alpha=0.05, 2,000 races per scenario with a fixed seed; the same numbers are asserted by
tests/test_race_guarantee.py. One core, well under a minute (the looks' levels are
calibrated once per number of configurations left, then cached).

    python benchmarks/race_simulation.py [--races 2000] [--seed 2002] [--ablations]

--ablations also runs the rule with one choice undone at a time (module constants of
racing.py), to show what each buys.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mnist_sweep.report import racing  # noqa: E402
from mnist_sweep.report.racing import RaceSettings, Simulation, simulate  # noqa: E402

SETTINGS = RaceSettings(min_seeds=3, max_seeds=10, alpha=0.05)
EQUIVALENCE = RaceSettings(min_seeds=3, max_seeds=10, alpha=0.05, equivalence=0.05)
RACES, SEED, SD = 2000, 2002, 0.05


@dataclass(frozen=True)
class Scenario:
    name: str
    means: tuple[float, ...]
    sds: tuple[float, ...] | float = SD
    bound: str = ""  # the requirement, in words
    guaranteed: bool = True  # False: outside what the rule promises (shown, not asserted)
    settings: RaceSettings = SETTINGS


SCENARIOS = [
    Scenario("2 identical", (0.0, 0.0), bound="any dropped <= 5%"),
    Scenario("3 identical", (0.0,) * 3, bound="any dropped <= 5%"),
    Scenario("5 identical", (0.0,) * 5, bound="any dropped <= 5%"),
    Scenario("2, 0.1 apart", (0.1, 0.0),
             bound="better wins >= 90%, runs < fixed design of same power"),
    Scenario("6: +.10 +.06 0 -.05 -.15 -.30", (0.10, 0.06, 0.0, -0.05, -0.15, -0.30),
             bound="best dropped <= 5%, runs <= 60% of 60"),
    Scenario("cannot learn + 2 identical", (99.0, 99.0, 10.0), (SD, SD, 1.0),
             bound="bad dropped at look 1 >= 95%, winner <= 5%"),
    Scenario("cannot learn + 2, 0.1 apart", (99.1, 99.0, 10.0), (SD, SD, 1.0),
             bound="(not stalled: as 2, 0.1 apart)"),
    Scenario("3 identical, one 3x the spread", (0.0,) * 3, (SD, SD, 3 * SD),
             bound="(not guaranteed)", guaranteed=False),
    Scenario("2 identical, equivalence 0.05", (0.0, 0.0), bound="(stops as equal)",
             settings=EQUIVALENCE),
    Scenario("2, 0.05 apart, equivalence 0.05", (0.05, 0.0), bound="(equal: wrong)",
             settings=EQUIVALENCE),
    Scenario("3: 0.05 0 0, equivalence 0.05", (0.05, 0.0, 0.0), bound="(equal: wrong)",
             settings=EQUIVALENCE),
]


def interval(hits: int, n: int) -> tuple[float, float]:
    """Clopper-Pearson 95% interval of a rate."""
    ci = stats.binomtest(hits, n).proportion_ci(0.95, method="exact")
    return float(ci.low), float(ci.high)


def fixed_seeds(power: float, diff: float, sd: float, alpha: float) -> int:
    """Seeds per configuration a fixed paired two-sided t test at alpha needs for `power`
    against a true difference `diff` (runs i.i.d. with std sd: differences sd * sqrt(2))."""
    effect = diff / (sd * np.sqrt(2))
    for n in range(2, 1000):
        crit = stats.t.isf(alpha / 2, n - 1)
        if stats.nct.sf(crit, n - 1, effect * np.sqrt(n)) >= power:
            return n
    return 1000


@dataclass(frozen=True)
class Measured:
    scenario: Scenario
    sim: Simulation
    seconds: float

    @property
    def races(self) -> int:
        return len(self.sim.runs)

    @property
    def wrong(self) -> int:
        """Races that dropped a configuration as good as the best."""
        return int(self.sim.dropped_any_best().sum())

    @property
    def win(self) -> float:
        """Share of races that end with the best (the first, when unique) alone."""
        return float(self.sim.won(0).mean()) if self.sim.best.sum() == 1 else float("nan")

    @property
    def winner_declared(self) -> float:
        return float((self.sim.reason == 1).mean())

    @property
    def equal(self) -> float:
        """Share of races that stop with all left equal within the margin."""
        return float((self.sim.reason == 2).mean())

    @property
    def runs(self) -> float:
        return float(self.sim.runs.mean())

    @property
    def all_to_max(self) -> int:
        return len(self.scenario.means) * SETTINGS.max_seeds

    def dropped_at_first_look(self, i: int) -> float:
        return float((self.sim.drop_look[:, i] == SETTINGS.min_seeds).mean())


def measure(scenario: Scenario, races: int = RACES, seed: int = SEED) -> Measured:
    start = time.perf_counter()
    sim = simulate(scenario.means, scenario.sds, scenario.settings, races=races, seed=seed)
    return Measured(scenario, sim, time.perf_counter() - start)


def row(m: Measured) -> str:
    low, high = interval(m.wrong, m.races)
    win = "-" if np.isnan(m.win) else f"{m.win:.1%}"
    fixed = f"all to max: {m.all_to_max}"
    if m.scenario.name == "2, 0.1 apart":
        n = fixed_seeds(m.win, 0.1, SD, SETTINGS.alpha)
        fixed = f"same power ({m.win:.1%}) fixed: {n} seeds = {2 * n} runs"
    if m.scenario.settings.margin:
        fixed += f"; declared equal: {m.equal:.1%}"
    if m.scenario.name.startswith("cannot learn"):
        fixed += f"; bad dropped at look 1: {m.dropped_at_first_look(2):.1%}"
        fixed += f"; winner declared: {m.winner_declared:.1%}"
    return (f"| {m.scenario.name} | {m.wrong / m.races:.2%} [{low:.2%}, {high:.2%}] | {win} | "
            f"{m.runs:.1f} ({m.runs / m.all_to_max:.0%}) | {fixed} | {m.scenario.bound} |")


# one choice undone at a time: (label, {racing constant: value})
ABLATIONS = [
    ("as chosen", {}),
    ("levels calibrated to alpha itself (share 1)", {"CALIBRATED_SHARE": 1.0}),
    ("two left: the same level at every look", {"TWO_LEFT_GROWTH": 0.0}),
    ("spread of the survivors' runs only", {"POOL_DROPPED": False}),
    ("no spread screen for dropped configurations", {"SPREAD_SCREEN": 1e-300}),
]
ABLATION_SCENARIOS = ["2 identical", "5 identical", "2, 0.1 apart",
                      "6: +.10 +.06 0 -.05 -.15 -.30", "cannot learn + 2, 0.1 apart"]


def ablations(races: int, seed: int) -> None:
    by_name = {s.name: s for s in SCENARIOS}
    print("\n| variant | 2 identical: dropped | 5 identical: dropped | 0.1 apart: wins, runs | "
          "6: best dropped, runs | cannot learn + 0.1 apart: wins |")
    print("|---|---|---|---|---|---|")
    for label, change in ABLATIONS:
        saved = {name: getattr(racing, name) for name in change}
        for name, value in change.items():
            setattr(racing, name, value)
        try:
            m = {name: measure(by_name[name], races, seed) for name in ABLATION_SCENARIOS}
        finally:
            for name, value in saved.items():
                setattr(racing, name, value)
        two, six = m["2, 0.1 apart"], m["6: +.10 +.06 0 -.05 -.15 -.30"]
        print(f"| {label} | {m['2 identical'].wrong / races:.2%} | "
              f"{m['5 identical'].wrong / races:.2%} | {two.win:.1%}, {two.runs:.1f} | "
              f"{six.wrong / races:.2%}, {six.runs:.1f} | "
              f"{m['cannot learn + 2, 0.1 apart'].win:.1%} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--races", type=int, default=RACES)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--ablations", action="store_true",
                        help="also run the rule with one choice undone at a time")
    args = parser.parse_args()
    start = time.perf_counter()
    print(f"racing: {SETTINGS}, {args.races} races per scenario, seed {args.seed}, "
          f"std {SD} points per run unless said\n")
    print("| scenario | best-as-good dropped [95% CI] | best wins | mean runs (% of all to "
          "max) | fixed design | requirement |")
    print("|---|---|---|---|---|---|")
    for scenario in SCENARIOS:
        print(row(measure(scenario, args.races, args.seed)), flush=True)
    if args.ablations:
        ablations(args.races, args.seed)
    print(f"\n{time.perf_counter() - start:.0f} s in all (levels calibrated on first use)")


if __name__ == "__main__":
    main()
