"""The racing rule (mnist_sweep/report/racing.py): its guarantee measured on simulated races,
and its replay from records.

The simulation is benchmarks/race_simulation.py's, run once for the module: 2,000 races per
scenario, seed 2002, results i.i.d. normal with std 0.05 points, min_seeds=3, max_seeds=10,
alpha=0.05. The seeds are fixed, so the observed rates themselves are held against the
bounds. Measured (Clopper-Pearson 95% intervals of the rates):

- 2, 3, 5 identical configurations, any dropped: 4.20% [3.36, 5.17], 3.95% [3.14, 4.90],
  4.75% [3.86, 5.78] (the levels are calibrated to 4%, 0.8 x alpha);
- two configurations 0.1 apart: the better wins in 92.5% [91.3, 93.6] of races with 14.2
  runs on average; a fixed paired t test needs 8 seeds each (16 runs) for that power;
- six at +.10 +.06 0 -.05 -.15 -.30: the best dropped in 0.05% [0.00, 0.28], 34.4 runs
  (57% of 60);
- one that cannot learn (10%, std 1 point) with two identical good ones: dropped at the
  first look in 100% [99.8, 100]; a winner among the good ones in 3.50% [2.74, 4.40].
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mnist_sweep.report.racing import (
    DROPPED,
    EQUAL,
    UNDECIDED,
    WINNER,
    RaceSettings,
    replay,
    simulate,
    studentized_range_sf,
)

ROOT = Path(__file__).resolve().parents[1]
ALPHA = 0.05


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "race_simulation", ROOT / "benchmarks" / "race_simulation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


BENCH = _benchmark()


@pytest.fixture(scope="module")
def measured() -> dict:
    assert BENCH.RACES >= 2000
    return {s.name: BENCH.measure(s) for s in BENCH.SCENARIOS}


@pytest.mark.parametrize("name", ["2 identical", "3 identical", "5 identical"])
def test_identical_configurations_are_dropped_in_at_most_alpha_of_races(measured, name):
    m = measured[name]
    assert m.races >= 2000
    assert m.wrong / m.races <= ALPHA, BENCH.row(m)


def test_the_better_of_two_wins_with_fewer_runs_than_a_fixed_design(measured):
    m = measured["2, 0.1 apart"]
    assert m.win >= 0.90, BENCH.row(m)
    fixed = BENCH.fixed_seeds(m.win, 0.1, BENCH.SD, ALPHA)
    assert fixed >= 8  # 8 seeds each: 16 runs for 90% and more
    assert m.runs < 2 * fixed, BENCH.row(m)


def test_six_configurations_keep_the_best_and_save_runs(measured):
    m = measured["6: +.10 +.06 0 -.05 -.15 -.30"]
    assert m.wrong / m.races <= ALPHA, BENCH.row(m)
    assert m.runs <= 0.6 * m.all_to_max, BENCH.row(m)


def test_a_configuration_that_cannot_learn_goes_at_the_first_look(measured):
    m = measured["cannot learn + 2 identical"]
    assert m.dropped_at_first_look(2) >= 0.95, BENCH.row(m)
    assert m.winner_declared <= ALPHA, BENCH.row(m)
    # ... and does not stall the others: they race as if it had never been there
    alone, with_it = measured["2, 0.1 apart"], measured["cannot learn + 2, 0.1 apart"]
    assert with_it.win >= alone.win - 0.01, BENCH.row(with_it)
    assert with_it.runs - 3 <= alone.runs + 0.2, BENCH.row(with_it)


def _race(seed: int, means=(99.1, 99.0, 98.9), sd=0.05, seeds=10) -> dict:
    rng = np.random.default_rng(seed)
    return {f"c{i}": {s: float(m + sd * rng.standard_normal()) for s in range(1, seeds + 1)}
            for i, m in enumerate(means)}


def _decisions(state) -> dict:
    return {n: (c.status, c.seeds, c.drop.look if c.drop else None)
            for n, c in state.configs.items()}


def test_the_simulation_walks_the_races_as_replay_does():
    means = (0.10, 0.06, 0.0, -0.05, -0.15, -0.30)
    settings = RaceSettings()
    sim = simulate(means, 0.05, settings, races=40, seed=7)
    x = np.asarray(means)[None, :, None] + 0.05 * np.random.default_rng(7).standard_normal(
        (40, len(means), settings.max_seeds))
    for r in range(40):
        state = replay({f"c{i}": dict(enumerate(x[r, i].tolist(), start=1))
                        for i in range(len(means))}, settings)
        assert [c.seeds for c in state.configs.values()] == sim.seeds[r].tolist()
        assert [c.status != DROPPED for c in state.configs.values()] == sim.alive[r].tolist()


def test_replay_is_deterministic_and_ignores_the_order_of_records():
    results = _race(1)
    shuffled = {name: dict(reversed(list(results[name].items())))
                for name in reversed(list(results))}
    first, second = replay(results), replay(shuffled)
    assert _decisions(first) == _decisions(second)
    assert first.result() == second.result()
    assert first.looks == second.looks


def test_runs_of_a_dropped_configuration_do_not_bring_it_back():
    results = _race(3, means=(99.3, 99.0, 98.5))
    state = replay(results)
    dropped = [c for c in state.configs.values() if c.status == DROPPED]
    assert dropped
    for c in dropped:  # later seeds far better than anything: still dropped, not counted
        results[c.name].update({s: 100.0 for s in range(c.drop.look + 1, 11)})
    again = replay(results)
    assert _decisions(again) == _decisions(state)


def test_a_missing_or_failed_run_holds_its_look_and_is_asked_for_again():
    settings = RaceSettings()
    start = replay({"a": {}, "b": {}, "c": {}}, settings)
    assert start.next_runs() == [(n, s) for s in (1, 2, 3) for n in "abc"]
    results = _race(5, means=(99.0, 99.0, 99.0))
    results["c1"][5] = None  # failed: no result
    del results["c2"][5]  # absent
    state = replay(results, settings)
    assert not state.over and state.pending == 5
    assert [look.seeds for look in state.looks] == [3, 4]
    assert state.next_runs() == [("c1", 5), ("c2", 5)]
    assert state.failed == (("c1", 5),)
    assert state.configs["c1"].seeds == 4  # the failed run is not a result
    assert state.configs["c1"].done == 4 and state.configs["c0"].done == 5
    nan = dict(results, c1={**results["c1"], 5: math.nan})
    assert _decisions(replay(nan, settings)) == _decisions(state)
    # given up on: dropped at the look it lacks, the others go on; the past is unchanged
    gone = replay(results, settings, withdrawn={"c1"})
    assert gone.configs["c1"].status == DROPPED and gone.configs["c1"].drop.withdrawn
    assert gone.configs["c1"].drop.look == 5 and gone.configs["c1"].seeds == 4
    assert gone.pending == 5 and gone.next_runs() == [("c2", 5)]
    assert gone.looks == state.looks


def test_equal_configurations_stop_the_race_within_the_margin():
    rng = np.random.default_rng(0)
    a = {s: 99.0 + 0.05 * rng.standard_normal() for s in range(1, 11)}
    b = {s: v + 0.001 * rng.standard_normal() for s, v in a.items()}  # same to 0.001
    equal = replay({"a": a, "b": b}, RaceSettings(equivalence=0.05))
    assert equal.over and equal.reason == "equal within 0.05 points"
    assert {c.status for c in equal.configs.values()} == {EQUAL}
    assert equal.looks[-1].seeds == 3
    assert equal.result().endswith("are equal within +/- 0.05 points after 3 seeds")
    off = replay({"a": a, "b": b}, RaceSettings(equivalence=None))
    assert off.reason != "equal within 0.05 points"
    apart = {s: v - 0.08 for s, v in b.items()}  # 0.08 apart, margin 0.05: never equal
    state = replay({"a": a, "b": apart}, RaceSettings(equivalence=0.05))
    assert not (state.reason or "").startswith("equal")
    # TOST at each look: equal configurations stop early in most races
    sim = simulate((0.0, 0.0), 0.05, RaceSettings(equivalence=0.1), races=400, seed=3)
    assert (sim.reason == 2).mean() > 0.9 and sim.runs.mean() < 16


def test_budget_and_sentences():
    won = replay(_race(11, means=(99.3, 99.0, 98.5)))
    assert won.reason == "one left" and won.configs[won.winner].status == WINNER
    assert won.result().startswith(f"{won.winner} beats ")
    assert " points [+" in won.result() and won.result().endswith(" seeds")
    assert "% of the 30 that running all 3 configurations to 10 seeds takes" in (
        won.runs_sentence())
    for row in won.table():
        assert (row["status"] == DROPPED) == bool(row["evidence"])
    tied = replay(_race(2, means=(99.0, 99.0)))
    assert tied.reason == "budget" and {c.status for c in tied.configs.values()} == {UNDECIDED}
    assert tied.result().startswith("undecided after 10 seeds: the difference is below ")
    assert "seeds would settle it" in tied.result()
    capped = replay(_race(4, means=(99.0, 99.0, 99.0)), RaceSettings(max_runs=12))
    assert capped.reason == "budget" and capped.runs_used == 12
    # more than two left: how far apart all of them are, then the two that lead
    means = sorted((c.mean for c in capped.configs.values()), reverse=True)
    lead, second = sorted(capped.configs, key=lambda n: -capped.configs[n].mean)[:2]
    assert capped.result().startswith(
        f"undecided after 4 seeds (3 left, {means[0] - means[-1]:.2f} points from first to "
        f"last, {lead} leads {second}): the difference is below ")


@pytest.mark.parametrize(("change", "names"), [
    ({"min_seeds": 1}, "min_seeds"),
    ({"min_seeds": 2.5}, "min_seeds"),
    ({"max_seeds": 2}, "max_seeds"),
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": 0.7}, "alpha"),
    ({"equivalence": -0.1}, "equivalence"),
    ({"equivalence": "0.05"}, "equivalence"),
    ({"max_runs": 0}, "max_runs"),
])
def test_settings_name_what_to_change(change, names):
    with pytest.raises(ValueError, match=names) as caught:
        RaceSettings(**change)
    assert str(caught.value).count("\n") == 0


def test_max_runs_too_small_for_the_first_look():
    with pytest.raises(ValueError, match=r"max_runs=8 .* raise max_runs"):
        replay({"a": {}, "b": {}, "c": {}}, RaceSettings(max_runs=8))


def test_the_studentized_range_agrees_with_scipy():
    for q, k, df in [(4.0, 3, 6), (6.3, 6, 10), (3.2, 2, 9)]:
        assert studentized_range_sf(q, k, df) == pytest.approx(
            stats.studentized_range.sf(q, k, df), rel=1e-4)
