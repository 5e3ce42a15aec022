"""Racing: train every configuration on a few seeds, add one seed per surviving configuration
each round, drop those shown worse than the leader; stop when one is left, when all left are
equal within a margin, or when the budget is spent (F-Race, Birattari et al. 2002; irace,
Lopez-Ibanez et al. 2016; the instances here are seeds). Accuracy in points, higher better.

The rule, and why (numbers in docs/racing.md, from benchmarks/race_simulation.py):

- Test: each survivor's gap to the leader, in standard errors of a mean, against the
  studentized range of the k left (Tukey). Among k equal configurations the leader is the
  largest of k means and the one dropped the smallest, so it is the range that must stay
  under the critical value; a test against a leader picked after looking (Holm, or Hsu's
  MCB with Dunnett's constant) drops one of five equal configurations in ~10% of races.
  After a drop the look is tested again with the k - 1 left (step-down).
- Spread: the seed-blocked residual (configuration + seed, least squares) of every run the
  race counted: the survivors' and the dropped configurations', unless a dropped one's own
  spread is out of line (F test at 1%: a network that cannot learn), which would stall
  the others. Seeds are blocks: what a seed does to all configurations cancels.
- Looks: one nominal level per look, calibrated by Monte Carlo (fixed seed, cached) so that
  a race of k equal configurations drops any of them in at most CALIBRATED_SHARE x alpha of
  races over all looks (group-sequential, as Pocock's constant): the same level at every
  look with three or more left (early drops save the most runs), growing as
  (seeds / max_seeds)^1.5 with two left (the power to pick a winner is at the late looks).
- Equal configurations are the least favourable case (the gap to a worse leader only
  shrinks), hence the guarantee: a configuration as good as the best is dropped in at most
  alpha of races, whatever the number of looks and configurations, if the configurations
  spread alike over seeds.

A run without a result (absent, or None/NaN: failed) never counts: its look waits for it and
`next_runs()` asks for it again. A configuration given up on (`withdrawn`) is dropped at the
first look whose run it lacks, so the looks before replay unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from scipy import special
from scipy import stats as sps

RACING, DROPPED, WINNER, EQUAL, UNDECIDED = "racing", "dropped", "winner", "equal", "undecided"
ONE_LEFT, BUDGET = "one left", "budget"
CONFIDENCE = 0.95  # of the intervals reported (means, differences)
CALIBRATED_SHARE = 0.8  # the looks are calibrated to this share of alpha (see docs/racing.md)
SPREAD_SCREEN = 0.01  # F test: a dropped configuration's spread out of line leaves the pool
POOL_DROPPED = True  # the dropped configurations' runs count in the spread (False: survivors')
TWO_LEFT_GROWTH = 1.5  # with two left the level grows as (seeds / max_seeds) ** this
POWER = 0.8  # of the "about N seeds would settle it" estimate
MAX_SEEDS_ESTIMATE = 1000
CALIBRATION_RACES = 100_000
CALIBRATION_SEED = 20020707  # fixed: the same settings give the same levels everywhere
_REASONS = {1: ONE_LEFT, 3: BUDGET}  # 2: "equal within X points"


@dataclass(frozen=True)
class RaceSettings:
    """A race's settings; part of its record (other settings replay it differently)."""

    min_seeds: int = 3
    max_seeds: int = 10
    alpha: float = 0.05
    equivalence: float | None = None  # points; None or 0: no stop for equality
    max_runs: int | None = None  # runs in all, over every configuration

    def __post_init__(self) -> None:
        def whole(name: str, value: object) -> int:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"racing: {name}={value!r} must be a whole number")
            return int(value)

        if whole("min_seeds", self.min_seeds) < 2:
            raise ValueError(f"racing: min_seeds={self.min_seeds} is too few: the spread "
                             "between seeds needs at least 2 seeds; set min_seeds >= 2")
        if whole("max_seeds", self.max_seeds) < self.min_seeds:
            raise ValueError(f"racing: max_seeds={self.max_seeds} is below min_seeds="
                             f"{self.min_seeds}; raise max_seeds or lower min_seeds")
        if self.max_seeds > 200:
            raise ValueError(f"racing: max_seeds={self.max_seeds} is more looks than the "
                             "calibration is made for; set max_seeds <= 200")
        if (isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float))
                or not 0 < self.alpha < 0.5):
            raise ValueError(f"racing: alpha={self.alpha!r} must be a number between 0 and "
                             "0.5 (the share of races allowed to drop a best configuration)")
        eq = self.equivalence
        if eq is not None and (isinstance(eq, bool) or not isinstance(eq, (int, float))
                               or not math.isfinite(eq) or eq < 0):
            raise ValueError(f"racing: equivalence={eq!r} must be a margin in points "
                             "(e.g. 0.05), or None or 0 for no stop on equality")
        if self.max_runs is not None and whole("max_runs", self.max_runs) < 1:
            raise ValueError(f"racing: max_runs={self.max_runs} must be a positive number "
                             "of runs, or None for no limit but max_seeds")

    @property
    def looks(self) -> range:
        """Seeds per configuration at each look."""
        return range(self.min_seeds, self.max_seeds + 1)

    @property
    def margin(self) -> float | None:
        return float(self.equivalence) if self.equivalence else None


# --- the studentized range (scipy's is exact but ~0.1-0.3 s per quantile; this is
# vectorised Gauss-Legendre quadrature, within 1e-4 of scipy for 2+ degrees of freedom) ----
_Z, _ZW = np.polynomial.legendre.leggauss(96)
_Z, _ZW = _Z * 8.5, _ZW * 8.5
_PHI_ZW = np.exp(-_Z ** 2 / 2) / np.sqrt(2 * np.pi) * _ZW
_U, _UW = np.polynomial.legendre.leggauss(96)


def _range_sf(w: np.ndarray, k: np.ndarray) -> np.ndarray:
    """P(range of k standard normals > w)."""
    inside = np.clip(special.ndtr(_Z) - special.ndtr(_Z - w[..., None]), 0.0, 1.0)
    return np.clip(1.0 - k * (inside ** (k[..., None] - 1) * _PHI_ZW).sum(-1), 0.0, 1.0)


def studentized_range_sf(q, k, df) -> np.ndarray:
    """P(studentized range of k means with df degrees of freedom > q), as
    scipy.stats.studentized_range.sf, vectorised."""
    q, k, df = np.broadcast_arrays(np.asarray(q, float), np.asarray(k, float),
                                   np.asarray(df, float))
    if q.size > 256:  # in pieces: the quadrature holds size x 96 x 96 numbers
        flat = [a.ravel() for a in (q, k, df)]
        return np.concatenate([studentized_range_sf(*(a[i:i + 256] for a in flat))
                               for i in range(0, q.size, 256)]).reshape(q.shape)
    # s = sqrt(chi2_df / df), integrated over log s across all but 1e-15 of each tail
    lo = 0.5 * np.log(sps.chi2.ppf(1e-15, df) / df)
    hi = 0.5 * np.log(sps.chi2.isf(1e-15, df) / df)
    half, mid = (hi - lo) / 2, (hi + lo) / 2
    u = mid[..., None] + half[..., None] * _U
    d = df[..., None]
    log_density = ((d / 2) * np.log(d) - special.gammaln(d / 2) - (d / 2 - 1) * np.log(2)
                   + d * u - d * np.exp(2 * u) / 2)  # of u = log s, Jacobian included
    weights = np.exp(log_density) * half[..., None] * _UW
    return (weights * _range_sf(q[..., None] * np.exp(u), k[..., None])).sum(-1)


def _range_isf(level: np.ndarray, k: np.ndarray, df: np.ndarray) -> np.ndarray:
    """The critical studentized range: P(> q) = level (two left: sqrt(2) x Student's t)."""
    level, k, df = (np.asarray(a, float) for a in np.broadcast_arrays(level, k, df))
    out = np.sqrt(2) * sps.t.isf(level / 2, df)
    many = k > 2
    if many.any():
        lo = np.full(many.sum(), np.log(0.01))
        hi = np.full(many.sum(), np.log(1e6))
        for _ in range(60):
            mid = (lo + hi) / 2
            above = studentized_range_sf(np.exp(mid), k[many], df[many]) > level[many]
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        out[many] = np.exp((lo + hi) / 2)
    return out


_CRITICAL: dict[tuple[int, int, float], float] = {}


def _critical(k: np.ndarray, df: np.ndarray, level: np.ndarray) -> np.ndarray:
    keys = [(int(a), int(b), float(c)) for a, b, c in zip(k, df, level, strict=True)]
    todo = sorted(set(keys) - _CRITICAL.keys())
    if todo:
        values = _range_isf(*(np.array(x) for x in zip(*[(c, a, b) for a, b, c in todo],
                                                        strict=True)))
        _CRITICAL.update(zip(todo, values.tolist(), strict=True))
    return np.array([_CRITICAL[key] for key in keys])


# --- the looks' levels ---------------------------------------------------------------------
@cache
def _calibrated(k: int, min_seeds: int, max_seeds: int, target: float, growth: float
                ) -> tuple[float, ...]:
    """Levels a * shape per look, a the target quantile of min over looks of p / shape in
    races of k equal configurations (no drop happens before the first wrong one)."""
    looks = np.arange(min_seeds, max_seeds + 1)
    shape = (looks / max_seeds) ** growth if k == 2 else np.ones(len(looks))
    dfs = (looks - 1) * (k - 1)
    if k > 2:  # p of the range, interpolated in log-log over a grid per look
        grid = np.exp(np.linspace(np.log(0.5), np.log(2000.0), 160))
        log_p = np.log(np.maximum(studentized_range_sf(
            grid[None, :], k, dfs[:, None]), 1e-300))
    rng = np.random.default_rng(CALIBRATION_SEED)
    ratios = []
    chunk = max(1000, 2_000_000 // (k * max_seeds))
    for start in range(0, CALIBRATION_RACES, chunk):
        x = rng.standard_normal((min(chunk, CALIBRATION_RACES - start), k, max_seeds))
        rows = x.cumsum(2)  # a configuration's sum over seeds 1..n
        squares = (x ** 2).sum(1).cumsum(1)
        columns = (x.sum(1) ** 2).cumsum(1)  # sum over seeds of (seed total)^2
        p = np.empty((len(x), len(looks)))
        for j, n in enumerate(looks):
            r = rows[:, :, n - 1]
            residual = (squares[:, n - 1] - (r ** 2).sum(1) / n - columns[:, n - 1] / k
                        + r.sum(1) ** 2 / (k * n))
            w = (r.max(1) - r.min(1)) / n * np.sqrt(n) / np.sqrt(residual / dfs[j])
            p[:, j] = (2 * sps.t.sf(w / np.sqrt(2), dfs[j]) if k == 2 else
                       np.exp(np.interp(np.log(w), np.log(grid), log_p[j])))
        ratios.append((p / shape).min(1))
    a = float(np.quantile(np.concatenate(ratios), target, method="inverted_cdf"))
    return tuple((a * shape).tolist())


def look_levels(k: int, settings: RaceSettings) -> tuple[float, ...]:
    """The nominal level of each look (min_seeds..max_seeds) with k configurations left."""
    if k < 2:
        return (0.0,) * len(settings.looks)
    return _calibrated(k, settings.min_seeds, settings.max_seeds,
                       settings.alpha * CALIBRATED_SHARE, TWO_LEFT_GROWTH)


def _levels(k: np.ndarray, look: int, settings: RaceSettings) -> np.ndarray:
    j = look - settings.min_seeds
    return np.array([look_levels(int(a), settings)[j] for a in k])


# --- one look, for many races at once (the simulation) or one (the replay) -----------------
def _pooled_spread(x: np.ndarray, alive: np.ndarray, used: np.ndarray, n: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Seed-blocked residual variance and its df over the survivors' runs (seeds 1..n) and
    the dropped configurations' counted runs whose own spread is in line (F test)."""
    races, k, seeds = x.shape
    counted = np.arange(seeds)[None, None, :] < used[:, :, None]
    xc = np.where(counted, x, 0.0)
    own_mean = xc.sum(2) / np.maximum(used, 1)
    own_ss = (np.where(counted, x - own_mean[:, :, None], 0.0) ** 2).sum(2)
    left = alive.sum(1)
    survivors_df = left * (n - 1)
    survivors_var = (own_ss * alive).sum(1) / survivors_df
    floor = np.where(survivors_var > 0, survivors_var, 1e-300)[:, None]
    ratio = own_ss / np.maximum(used - 1, 1) / floor
    in_line = ratio <= sps.f.isf(SPREAD_SCREEN, np.maximum(used - 1, 1), survivors_df[:, None])
    pool = alive | (~alive & (used >= 2) & in_line & POOL_DROPPED)
    cells = counted & pool[:, :, None]
    # least squares of x = config + seed over the cells: the normal equations, seed 1 as base
    size = k + seeds - 1
    per_config, per_seed = cells.sum(2), cells.sum(1)
    normal = np.zeros((races, size, size))
    diagonal = np.concatenate([per_config, per_seed[:, 1:]], axis=1).astype(float)
    normal[:, np.arange(size), np.arange(size)] = np.where(diagonal > 0, diagonal, 1.0)
    normal[:, :k, k:] = cells[:, :, 1:]
    normal[:, k:, :k] = cells[:, :, 1:].transpose(0, 2, 1)
    totals = np.concatenate([xc.sum(2) * pool, (xc * pool[:, :, None]).sum(1)[:, 1:]], axis=1)
    solution = np.linalg.solve(normal, totals[:, :, None])[:, :, 0]
    seed_effect = np.concatenate([np.zeros((races, 1)), solution[:, k:]], axis=1)
    fitted = solution[:, :k, None] + seed_effect[:, None, :]
    residual = (np.where(cells, xc - fitted, 0.0) ** 2).sum((1, 2))
    df = cells.sum((1, 2)) - pool.sum(1) - ((per_seed > 0).sum(1) - 1)
    return residual / np.maximum(df, 1), df


@dataclass
class _Walk:
    """Arrays over races (r) and configurations (c) of a race walked look by look."""

    alive: np.ndarray  # r x c
    used: np.ndarray  # r x c: seeds counted
    over: np.ndarray  # r
    reason: np.ndarray  # r: 0 racing, 1 one left, 2 equal, 3 budget
    pending: np.ndarray  # r: the look waiting for runs (0: none)
    last_look: np.ndarray  # r: the last look evaluated (0: none)
    drop: dict[str, np.ndarray] = field(default_factory=dict)  # r x c evidence
    look: dict[str, np.ndarray] = field(default_factory=dict)  # r x looks history


def _walk(x: np.ndarray, settings: RaceSettings, withdrawn: np.ndarray | None = None,
          evidence: bool = True) -> _Walk:
    races, k, _ = x.shape
    x = x[:, :, :settings.max_seeds]
    have = np.isfinite(x)
    n_looks = len(settings.looks)
    w = _Walk(alive=np.ones((races, k), bool), used=np.zeros((races, k), int),
              over=np.zeros(races, bool), reason=np.zeros(races, int),
              pending=np.zeros(races, int), last_look=np.zeros(races, int))
    nan = np.full((races, k), np.nan)
    w.drop = {"look": np.zeros((races, k), int), "kind": np.zeros((races, k), int),
              **{name: nan.copy() for name in
                 ("leader", "gap", "critical", "statistic", "spread", "df", "left", "level")}}
    w.look = {name: np.full((races, n_looks), np.nan) for name in
              ("left", "leader", "spread", "df", "level", "tost_low", "tost_high")}
    if k == 1:
        w.over[:], w.reason[:] = True, 1
        return w
    stalled = np.zeros(races, bool)
    for j, n in enumerate(settings.looks):
        act = ~w.over & ~stalled
        if not act.any():
            break
        complete = have[:, :, :n].all(2)
        if withdrawn is not None:  # given up on: dropped at the first look it lacks a run of
            out = w.alive & ~complete & withdrawn[None, :] & act[:, None]
            w.alive &= ~out
            w.drop["look"][out], w.drop["kind"][out] = n, 2
            runs = np.concatenate([have[:, :, :n], np.zeros((races, k, 1), bool)], axis=2)
            w.used[out] = runs[out].argmin(1)  # its results before the first it lacks
        waiting = (w.alive & ~complete).any(1) & act
        w.pending[waiting], stalled = n, stalled | waiting
        act &= ~waiting
        if not act.any():
            break
        w.used[w.alive & act[:, None]] = n
        w.last_look[act] = n
        _drops(x, w, act, n, j, settings, evidence)
        left = w.alive.sum(1)
        one = act & (left <= 1)
        w.over[one], w.reason[one] = True, 1
        if settings.margin:
            _equality(x, w, act & (left >= 2), n, j, settings)
        more = act & ~w.over
        budget = more & (n == settings.max_seeds)
        if settings.max_runs is not None:
            budget |= more & (w.used.sum(1) + left > settings.max_runs)
        w.over[budget], w.reason[budget] = True, 3
    return w


def _drops(x: np.ndarray, w: _Walk, act: np.ndarray, n: int, j: int,
           settings: RaceSettings, evidence: bool) -> None:
    """Drop, step by step, the survivors whose gap to the leader exceeds the critical range
    of the configurations left, with the spread of the runs counted so far."""
    changed = act.copy()
    first = True
    while True:
        left = w.alive.sum(1)
        idx = np.flatnonzero(changed & (left >= 2))
        if not len(idx):
            return
        alive, used, xs = w.alive[idx], w.used[idx], x[idx]
        var, df = _pooled_spread(xs, alive, used, n)
        means = np.where(alive, np.nan_to_num(xs[:, :, :n]).sum(2) / n, -np.inf)
        leader = means.argmax(1)
        rowsel = np.arange(len(idx))
        gap = means[rowsel, leader][:, None] - means
        level = _levels(left[idx], n, settings)
        spread = np.sqrt(var)[:, None]
        se = spread / np.sqrt(n)
        with np.errstate(divide="ignore", invalid="ignore"):
            statistic = np.where(gap > 0, np.where(se > 0, gap / se, np.inf), 0.0)
        critical = _critical(left[idx], df, level)[:, None]
        out = alive & (statistic > critical)
        if first:
            for name, value in (("left", left[idx]), ("leader", leader),
                                ("spread", np.sqrt(var)), ("df", df), ("level", level)):
                w.look[name][idx, j] = value
            first = False
        rows, cols = np.nonzero(out)
        races = idx[rows]
        w.alive[races, cols] = False
        w.drop["look"][races, cols], w.drop["kind"][races, cols] = n, 1
        if evidence:
            for name, value in (("leader", leader[rows]), ("gap", gap[rows, cols]),
                                ("critical", (critical * se)[rows, 0]),
                                ("statistic", statistic[rows, cols]),
                                ("spread", spread[rows, 0]), ("df", df[rows]),
                                ("left", left[races]), ("level", level[rows])):
                w.drop[name][races, cols] = value
        changed = np.zeros_like(changed)
        changed[idx] = out.any(1)


def _equality(x: np.ndarray, w: _Walk, act: np.ndarray, n: int, j: int,
              settings: RaceSettings) -> None:
    """TOST: every survivor's paired difference to the leader inside +/- the margin, each
    one-sided test at the look's level (its 1 - 2 level interval inside the margin)."""
    idx = np.flatnonzero(act)
    if not len(idx):
        return
    alive, xs = w.alive[idx], x[idx, :, :n]
    means = np.where(alive, xs.sum(2) / n, -np.inf)
    leader = means.argmax(1)
    diff = xs - xs[np.arange(len(idx)), leader][:, None, :]
    mean = diff.mean(2)
    sd = diff.std(2, ddof=1)
    level = _levels(alive.sum(1), n, settings)
    half = sps.t.isf(level, n - 1)[:, None] * sd / np.sqrt(n)
    others = alive & (np.arange(alive.shape[1])[None, :] != leader[:, None])
    low = np.where(others, mean - half, np.inf).min(1)
    high = np.where(others, mean + half, -np.inf).max(1)
    equal = (low > -settings.margin) & (high < settings.margin)
    w.look["tost_low"][idx, j], w.look["tost_high"][idx, j] = low, high
    done = idx[equal]
    w.over[done], w.reason[done] = True, 2


# --- the replay ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Drop:
    """Why a configuration left the race."""

    look: int  # seeds per configuration at the look that dropped it
    leader: str | None  # the configuration it was compared with
    gap: float = math.nan  # leader's mean minus its mean over the look's seeds, points
    critical: float = math.nan  # the gap that drops at that look, points
    statistic: float = math.nan  # gap / standard error (studentized range)
    p: float = math.nan  # nominal p of the studentized range of `left` means, `df` df
    level: float = math.nan  # the look's nominal level p was held against
    left: int = 0  # configurations left at the look
    df: int = 0
    withdrawn: bool = False

    def __str__(self) -> str:
        if self.withdrawn:
            return f"withdrawn at {self.look} seeds (its run was given up on)"
        return (f"dropped at {self.look} seeds: {self.gap:.3f} points below {self.leader} "
                f"(drops beyond {self.critical:.3f}; studentized range of {self.left}, "
                f"{self.df} df: p={self.p:.2g} at level {self.level:.3g})")


@dataclass(frozen=True)
class ConfigState:
    name: str
    status: str  # racing, dropped, winner, equal, undecided (left when the budget ran out)
    seeds: int  # seeds the race counts (its runs up to the last look it was in)
    mean: float | None  # over those seeds, points
    low: float | None  # 95% t interval of that mean
    high: float | None
    drop: Drop | None = None
    done: int = 0  # runs with a result it can use: the counted ones and the waiting look's


@dataclass(frozen=True)
class Look:
    seeds: int
    left: int  # configurations at the look, before its drops
    leader: str
    spread: float  # pooled seed-blocked standard deviation before its drops, points
    df: int
    level: float
    dropped: tuple[str, ...]
    # the TOST: the widest (1 - 2 level) interval of a survivor minus the leader, points
    equal_interval: tuple[float, float] | None = None


@dataclass(frozen=True)
class RaceState:
    """Where a race stands after replaying its records (see `replay`)."""

    settings: RaceSettings
    configs: dict[str, ConfigState]
    looks: tuple[Look, ...]
    over: bool
    reason: str | None  # one left / equal within X points / budget; None while racing
    pending: int | None  # the look waiting for runs
    failed: tuple[tuple[str, int], ...]  # runs recorded without a result (asked for again)
    values: dict[str, dict[int, float]]  # the results the replay read, failed left out

    @property
    def survivors(self) -> list[str]:
        return [c.name for c in self.configs.values() if c.status != DROPPED]

    @property
    def runs_used(self) -> int:
        """Runs the race counts (the waiting look's finished runs not yet)."""
        return sum(c.seeds for c in self.configs.values())

    @property
    def runs_fixed(self) -> int:
        """Runs of the fixed design: every configuration to max_seeds."""
        return len(self.configs) * self.settings.max_seeds

    @property
    def winner(self) -> str | None:
        return next((c.name for c in self.configs.values() if c.status == WINNER), None)

    @property
    def leader(self) -> str | None:
        alive = [c for c in self.configs.values() if c.status != DROPPED and c.mean is not None]
        return max(alive, key=lambda c: c.mean).name if alive else None

    def next_runs(self) -> list[tuple[str, int]]:
        """(configuration, seed) to launch: the runs the waiting look lacks, by seed (a look
        with a failed or absent run first gets that run again); [] once the race is over."""
        if self.over or not self.pending:
            return []
        return [(name, seed) for seed in range(1, self.pending + 1) for name in self.survivors
                if seed not in self.values[name]]

    def _pair(self, a: str, b: str) -> tuple[np.ndarray, int]:
        n = min(self.configs[a].seeds, self.configs[b].seeds)
        diff = np.array([self.values[a][s] - self.values[b][s] for s in range(1, n + 1)])
        return diff, n

    def difference(self, a: str, b: str) -> tuple[float, float | None, float | None, int]:
        """a minus b over their common counted seeds: mean and 95% paired t interval."""
        diff, n = self._pair(a, b)
        if n < 2 or diff.std() == 0:
            return (float(diff.mean()) if n else math.nan), None, None, n
        ci = sps.ttest_1samp(diff, 0.0).confidence_interval(CONFIDENCE)
        return float(diff.mean()), float(ci.low), float(ci.high), n

    def seeds_to_settle(self, a: str, b: str) -> int | None:
        """Seeds per configuration at which the two-configuration test of the last look
        drops b with 80% power, if the true difference is the one seen (noncentral t)."""
        diff, n = self._pair(a, b)
        spread = float(diff.std(ddof=1)) if n > 1 else 0.0
        gap = abs(float(diff.mean()))
        if spread <= 0 or gap == 0:
            return None
        level = look_levels(2, self.settings)[-1]

        def power(m: int) -> float:
            crit = sps.t.isf(level / 2, m - 1)
            return float(sps.nct.sf(crit, m - 1, gap / spread * math.sqrt(m)))

        if power(MAX_SEEDS_ESTIMATE) < POWER:
            return MAX_SEEDS_ESTIMATE + 1
        low, high = 1, MAX_SEEDS_ESTIMATE
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if power(middle) >= POWER else (middle, high)
        return high

    def runs_sentence(self) -> str:
        k, used, fixed = len(self.configs), self.runs_used, self.runs_fixed
        return (f"{used} runs, {100 * used / fixed:.0f}% of the {fixed} that running all {k} "
                f"configurations to {self.settings.max_seeds} seeds takes")

    def result(self) -> str:
        """The race's result in one sentence."""
        if len(self.configs) == 1:
            return f"{next(iter(self.configs))} is the only configuration: nothing to race"
        if not self.over and not self.looks:
            first = len(self.configs) * self.settings.min_seeds
            done = sum(c.done for c in self.configs.values())
            return (f"racing: waiting for the first look ({self.settings.min_seeds} seeds "
                    f"each): {done} of {first} runs done")
        alive = sorted((c for c in self.configs.values() if c.status != DROPPED
                        and c.mean is not None), key=lambda c: -c.mean)
        if not alive:
            return "no configuration is left (all withdrawn)"
        lead, n = alive[0].name, alive[0].seeds
        if self.reason == ONE_LEFT:
            dropped = [c for c in self.configs.values() if c.drop and c.drop.look
                       == max(d.drop.look for d in self.configs.values() if d.drop)]
            if not dropped:
                return f"{lead} is the only configuration"
            runner = max(dropped, key=lambda c: (c.mean is not None, c.mean or 0)).name
            mean, low, high, _ = self.difference(lead, runner)
            if math.isnan(mean):
                return f"{lead} is the last one left after {n} seeds (the others withdrawn)"
            interval = f" [{low:+.2f}, {high:+.2f}]" if low is not None else ""
            return f"{lead} beats {runner} by {mean:.2f} points{interval} after {n} seeds"
        if self.reason and self.reason.startswith("equal"):
            names = [c.name for c in alive]
            joined = ", ".join(names[:-1]) + " and " + names[-1]
            return (f"{joined} are equal within +/- {self.settings.margin:g} points after "
                    f"{n} seeds")
        second = alive[1].name
        mean, low, high, _ = self.difference(lead, second)
        below = f"below {high:.2f} points" if high is not None else f"{mean:.2f} points"
        if self.reason == BUDGET:
            need = self.seeds_to_settle(lead, second)
            settle = ("no seed count would settle it (no spread)" if need is None else
                      f"more than {MAX_SEEDS_ESTIMATE:,} seeds would settle it"
                      if need > MAX_SEEDS_ESTIMATE else f"about {need} seeds would settle it")
            among = "" if len(alive) == 2 else (
                f" ({len(alive)} left, {alive[0].mean - alive[-1].mean:.2f} points from first "
                f"to last, {lead} leads {second})")
            return f"undecided after {n} seeds{among}: the difference is {below}; {settle}"
        return (f"racing after {self.looks[-1].seeds} seeds: {len(alive)} of "
                f"{len(self.configs)} left, {lead} leads {second} by {mean:.2f} points")

    def table(self) -> list[dict[str, object]]:
        """One row per configuration, best mean first: status, seeds, mean, 95% interval,
        and why it was dropped."""
        order = sorted(self.configs.values(),
                       key=lambda c: (c.status == DROPPED, -(c.mean if c.mean is not None
                                                             else -math.inf)))
        return [{"config": c.name, "status": c.status, "seeds": c.seeds, "mean": c.mean,
                 "low": c.low, "high": c.high, "evidence": str(c.drop) if c.drop else ""}
                for c in order]


def _number(name: str, seed: object, value: object) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"racing: the result of {name} seed {seed} is {value!r}, not a "
                         "number (record a failed run as None)")
    return float(value)


def replay(results: Mapping[str, Mapping[int, float | None]],
           settings: RaceSettings | None = None, withdrawn: Collection[str] = ()) -> RaceState:
    """Walk the looks min_seeds, min_seeds+1, ... as the race did, from its records alone.

    `results`: configuration -> {seed: accuracy in points} of the runs that finished; None
    or NaN records a run that failed (it counts as no result and is asked for again).
    Seeds are 1, 2, ...; those beyond max_seeds, and a dropped configuration's runs beyond
    its drop, are not counted. Configurations are taken in sorted order (ties in the mean go
    to the first), so the same records give the same decisions."""
    settings = settings or RaceSettings()
    names = sorted(results)
    if not names:
        raise ValueError("racing: no configurations to race")
    unknown = sorted(set(withdrawn) - set(names))
    if unknown:
        raise ValueError(f"racing: withdrawn names no configuration of the race: {unknown}")
    if settings.max_runs is not None and settings.max_runs < len(names) * settings.min_seeds:
        raise ValueError(f"racing: max_runs={settings.max_runs} cannot pay for the first look "
                         f"({len(names)} configurations x min_seeds={settings.min_seeds} = "
                         f"{len(names) * settings.min_seeds} runs); raise max_runs")
    x = np.full((1, len(names), settings.max_seeds), np.nan)
    values: dict[str, dict[int, float]] = {}
    failed = []
    for i, name in enumerate(names):
        values[name] = {}
        for seed, value in results[name].items():
            if isinstance(seed, str) and seed.strip().isdigit():
                seed = int(seed)
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise ValueError(f"racing: {name} has seed {seed!r}: seeds are 1, 2, ...")
            seed, number = int(seed), _number(name, seed, value)
            if not 1 <= seed <= settings.max_seeds:
                continue
            if math.isfinite(number):
                x[0, i, seed - 1] = values[name][seed] = number
            else:
                failed.append((name, seed))
    w = _walk(x, settings, np.array([n in set(withdrawn) for n in names]))
    return _state(w, names, x[0], values, failed, settings)


def _state(w: _Walk, names: list[str], x: np.ndarray, values: dict[str, dict[int, float]],
           failed: list[tuple[str, int]], settings: RaceSettings) -> RaceState:
    reason = int(w.reason[0])
    status_of_survivor = {0: RACING, 1: WINNER, 2: EQUAL, 3: UNDECIDED}[reason]
    configs = {}
    for i, name in enumerate(names):
        used = int(w.used[0, i])
        waiting = not w.over[0] and w.alive[0, i] and w.pending[0]
        done = int(np.isfinite(x[i, :int(w.pending[0]) if waiting else used]).sum())
        runs = x[i, :used]
        mean = float(runs.mean()) if used else None
        low = high = None
        if used >= 2 and runs.std() > 0:
            ci = sps.ttest_1samp(runs, 0.0).confidence_interval(CONFIDENCE)
            low, high = float(ci.low), float(ci.high)
        drop = None
        kind = int(w.drop["kind"][0, i])
        if kind:
            d = {key: value[0, i] for key, value in w.drop.items()}
            drop = Drop(look=int(d["look"]), leader=None, withdrawn=True) if kind == 2 else Drop(
                look=int(d["look"]), leader=names[int(d["leader"])], gap=float(d["gap"]),
                critical=float(d["critical"]), statistic=float(d["statistic"]),
                p=float(studentized_range_sf(d["statistic"], d["left"], d["df"]))
                if math.isfinite(d["statistic"]) else 0.0,
                level=float(d["level"]), left=int(d["left"]), df=int(d["df"]))
        status = DROPPED if drop else status_of_survivor
        configs[name] = ConfigState(name, status, used, mean, low, high, drop, done)
    looks = []
    for j, n in enumerate(settings.looks):
        if n > w.last_look[0]:
            break
        if math.isnan(w.look["left"][0, j]):  # one left before the look's test (withdrawn)
            continue
        low, high = w.look["tost_low"][0, j], w.look["tost_high"][0, j]
        looks.append(Look(n, int(w.look["left"][0, j]), names[int(w.look["leader"][0, j])],
                          float(w.look["spread"][0, j]), int(w.look["df"][0, j]),
                          float(w.look["level"][0, j]),
                          tuple(c.name for c in configs.values()
                                if c.drop and c.drop.look == n and not c.drop.withdrawn),
                          None if math.isnan(low) else (float(low), float(high))))
    text = (f"equal within {settings.margin:g} points" if reason == 2 else
            _REASONS.get(reason))
    return RaceState(settings, configs, tuple(looks), bool(w.over[0]), text,
                     int(w.pending[0]) or None, tuple(sorted(failed, key=lambda f: f[::-1])),
                     values)


# --- simulation ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Simulation:
    """Races on normal results (mean, std per configuration, i.i.d. over seeds)."""

    means: np.ndarray
    alive: np.ndarray  # races x configurations, at the end
    seeds: np.ndarray  # races x configurations, counted
    reason: np.ndarray  # races: 1 one left, 2 equal, 3 budget
    drop_look: np.ndarray  # races x configurations (0: not dropped)

    @property
    def best(self) -> np.ndarray:
        return self.means == self.means.max()

    def dropped_any_best(self) -> np.ndarray:
        """Per race: whether a configuration as good as the best was dropped."""
        return (~self.alive[:, self.best]).any(1)

    def won(self, i: int) -> np.ndarray:
        return (self.reason == 1) & self.alive[:, i]

    @property
    def runs(self) -> np.ndarray:
        return self.seeds.sum(1)


def simulate(means, sds, settings: RaceSettings, races: int = 2000, seed: int = 0
             ) -> Simulation:
    """`races` races with results drawn as mean + sd * N(0, 1) per run, walked by the same
    code as `replay` (all races at once)."""
    means, sds = np.asarray(means, float), np.broadcast_to(np.asarray(sds, float), (len(means),))
    rng = np.random.default_rng(seed)
    x = means[None, :, None] + sds[None, :, None] * rng.standard_normal(
        (races, len(means), settings.max_seeds))
    w = _walk(x, settings, evidence=False)
    return Simulation(means, w.alive.copy(), w.used.copy(), w.reason.copy(),
                      w.drop["look"].copy())
