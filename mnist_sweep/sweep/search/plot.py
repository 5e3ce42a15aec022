"""`<sweep>/search.png`: the objective of every trial in the order they were asked, the best
so far as a step line, pruned trials marked where they were stopped."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState


def write_search_plot(trials: list[FrozenTrial], direction: StudyDirection, metric: str,
                      path: Path) -> Path:
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    ax.scatter([t.number for t in complete], [t.value for t in complete], color="tab:blue",
               zorder=3, label=f"complete ({len(complete)})")
    if pruned:
        ax.scatter([t.number for t in pruned],
                   [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
                   marker="x", color="tab:red", zorder=3,
                   label=f"pruned ({len(pruned)}): value and epoch when stopped")
        for t in pruned:
            step = max(t.intermediate_values)
            ax.annotate(f"{step}", (t.number, t.intermediate_values[step]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points", color="tab:red")
    best, xs, ys = None, [], []
    better = max if direction == StudyDirection.MAXIMIZE else min
    for t in sorted(complete, key=lambda t: t.number):
        best = t.value if best is None else better(best, t.value)
        xs.append(t.number)
        ys.append(best)
    if xs:
        last = max(t.number for t in trials)
        ax.step([*xs, last], [*ys, ys[-1]], where="post", color="tab:green",
                label=f"best so far ({ys[-1]:.4f})")
    if failed:
        for t in failed:
            ax.axvline(t.number, color="0.8", linestyle=":", zorder=1)
        ax.plot([], [], color="0.8", linestyle=":", label=f"failed ({len(failed)})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title(f"search: {metric} per trial (pruned: epoch reached)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.savefig(path, dpi=100)
    return path
