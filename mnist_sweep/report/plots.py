"""The two plots of a sweep: validation accuracy per epoch, and test accuracy against size.

Both draw configurations, not runs: runs that differ only in their seed are one
configuration, drawn as its seed mean with its spread (a min-to-max band of the curves, an
error bar of the test accuracy); val_acc.png draws at most the 10 best configurations and
counts the others in its title. Accuracies are in percent, test accuracies with their 95%
intervals as error bars (a seed group's t interval of its mean, a single run's Wilson
interval), and the y axis never spans less than the largest interval or 0.2 points: a
difference inside the noise looks like one, instead of being stretched over the whole
height of the chart.
"""

from __future__ import annotations

import re
from pathlib import Path

from mnist_sweep.report.read import Run, job_label
from mnist_sweep.report.render import short_numbers, write_atomic
from mnist_sweep.report.stats import t_interval, wilson

MAX_CURVES = 10  # configurations drawn in val_acc.png: one colour each
SEED_TOKEN = re.compile(r"(^|\s)seed=\S+")
MIN_SPAN = 0.2  # points: the least a y axis of accuracies spans


def y_limits(lows: list[float], highs: list[float], largest: float) -> tuple[float, float]:
    """y limits (percent) that hold every point and bar and span at least the largest
    interval and MIN_SPAN, centred on the data."""
    low, high = min(lows), max(highs)
    span = max(high - low, largest, MIN_SPAN)
    middle, pad = (low + high) / 2, 0.08 * span
    return middle - span / 2 - pad, middle + span / 2 + pad


def plot_label(label: str) -> str:
    """A run's label for a chart: numbers to 3 significant digits."""
    return short_numbers(label)


def legend_numbers(numbers: list[str]) -> str:
    """A configuration's job numbers in its legend entry: up to four, else the first two and
    the last (a race to 30 seeds would otherwise fill a line with them)."""
    if len(numbers) <= 4:
        return ",".join(numbers)
    return f"{numbers[0]},{numbers[1]},...,{numbers[-1]}"


def _figure_with_legend_below(entries: int):
    """A chart with room below it for a legend of `entries` lines."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state: safe in any process

    fig = Figure(figsize=(8, 4.5 + 0.2 * entries), layout="constrained")
    return fig, fig.subplots()


def val_acc_figure(runs: list[Run], labels: list[str]):
    """Validation accuracy per epoch of each configuration (runs whose labels differ only in
    their seed): the mean over its seeds as a line, the band from their minimum to their
    maximum, one colour and one legend entry each; at most the MAX_CURVES best
    configurations (by mean test accuracy, then by best validation accuracy), the others
    counted in the title. One tick per whole epoch. The legend goes below the chart, which
    it would otherwise cover once there are a few configurations; the figure grows with
    it."""
    from matplotlib.ticker import MaxNLocator

    configs = configurations(runs, labels)
    drawn = configs[:MAX_CURVES]
    fig, ax = _figure_with_legend_below(len(drawn))
    values = []
    for i, (label, members) in enumerate(drawn):
        epochs, mean, low, high = seed_band([r.val_curve for r in members])
        colour = f"C{i % 10}"
        numbers = legend_numbers(sorted((job_label(r.job) for r in members),
                                        key=lambda n: (len(n), n)))
        name = plot_label(label)
        if len(members) > 1:
            seeds = f"mean of {len(members)} seeds, band min to max"
            name = f"{name} ({seeds})" if name else seeds
            ax.fill_between(epochs, low, high, color=colour, alpha=0.2, linewidth=0)
        ax.plot(epochs, mean, marker="o", markersize=4, color=colour,
                label=f"{numbers}: {name}")
        values += low + high
    longest = max((len(r.val_curve) for r in runs), default=0)
    # Epochs are whole numbers: with few of them matplotlib would tick 0.95, 1.00, 1.05
    ax.set_xlim(0.5, max(longest, 1) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    title = "Validation accuracy per epoch"
    if len(configs) > len(drawn):
        title += (f": the {len(drawn)} best of {len(configs)} configurations "
                  f"({len(configs) - len(drawn)} more not drawn)")
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    if values:
        ax.set_ylim(*y_limits(values, values, 0.0))
    if ax.lines:
        fig.legend(loc="outside lower center", fontsize="small", frameon=False)
    else:
        ax.text(0.5, 0.5, "no run has finished an epoch", ha="center", transform=ax.transAxes)
    return fig


def configurations(runs: list[Run], labels: list[str]) -> list[tuple[str, list[Run]]]:
    """(label without the seed, runs) of each configuration with a validation curve, best
    first: by mean test accuracy over its finished runs, then (none finished) by the best
    validation accuracy any of its runs reached."""
    groups: dict[str, list[Run]] = {}
    for run, label in zip(runs, labels, strict=True):
        if run.val_curve:
            groups.setdefault(SEED_TOKEN.sub("", label).strip(), []).append(run)

    def rank(item: tuple[str, list[Run]]) -> tuple[int, float, float]:
        accs = [r.test_acc for r in item[1] if r.test_acc is not None]
        best_val = max(v for r in item[1] for v in r.val_curve)
        return (0, -sum(accs) / len(accs), -best_val) if accs else (1, 0.0, -best_val)

    return sorted(groups.items(), key=rank)


def seed_band(curves: list[list[float]]
              ) -> tuple[list[int], list[float], list[float], list[float]]:
    """Epochs, mean, minimum and maximum (percent) over the curves that reach each epoch."""
    epochs = list(range(1, max(map(len, curves)) + 1))
    at = [[100 * c[e - 1] for c in curves if len(c) >= e] for e in epochs]
    return epochs, [sum(v) / len(v) for v in at], [min(v) for v in at], [max(v) for v in at]


def _points(runs: list[Run], labels: list[str]) -> list[tuple]:
    """(params, accuracy %, low %, high %, marker text, legend text, members) per seed group
    (runs whose labels differ only in their seed) or single run, in order of first run."""
    groups: dict[tuple, list[tuple[Run, str]]] = {}
    for run, label in zip(runs, labels, strict=True):
        if run.params is not None and run.test_acc is not None:
            key = (SEED_TOKEN.sub("", label).strip(), run.params)
            groups.setdefault(key, []).append((run, label))
    points = []
    for (label, params), members in groups.items():
        accs = [100 * r.test_acc for r, _ in members]
        numbers = ",".join(sorted((job_label(r.job) for r, _ in members),
                                  key=lambda n: (len(n), n)))
        if len(members) > 1:
            interval = t_interval(accs)
            mean = sum(accs) / len(accs)
            low, high = interval if interval else (mean, mean)
            text = f"{numbers}: {plot_label(label)} (mean of {len(members)} seeds, 95% t)"
            points.append((params, mean, low, high, numbers, text, accs))
        else:
            run, own = members[0]
            ci = wilson(run)
            low, high = (100 * ci[0], 100 * ci[1]) if ci else (accs[0], accs[0])
            points.append((params, accs[0], low, high, numbers,
                           f"{numbers}: {plot_label(own)}", accs))
    return points


def acc_vs_params_figure(runs: list[Run], labels: list[str]):
    """Test accuracy (%) against parameter count: one point per seed group (its mean, its
    seeds as small dots) or single run, with its 95% interval as an error bar, marked with
    its job numbers; the legend below the chart says which configuration each number is."""
    points = _points(runs, labels)
    fig, ax = _figure_with_legend_below(len(points))
    for i, (params, acc, low, high, number, label, members) in enumerate(points):
        bar = ax.errorbar(params, acc, yerr=[[acc - low], [high - acc]], fmt="o", capsize=4,
                          label=label)
        if len(members) > 1:
            ax.scatter([params] * len(members), members, s=10, alpha=0.5,
                       color=bar.lines[0].get_color())
        # alternate the sides so points with equal parameter counts stay readable
        ax.annotate(str(number), (params, acc), textcoords="offset points", fontsize="small",
                    xytext=(8, -3) if i % 2 == 0 else (-8, -3),
                    ha="left" if i % 2 == 0 else "right")
    ax.set(xlabel="trainable parameters", ylabel="test accuracy (%), 95% interval",
           title="Test accuracy vs parameters")
    ax.grid(alpha=0.3)
    if points:
        lows = [p[2] for p in points] + [m for p in points for m in p[6]]
        highs = [p[3] for p in points] + [m for p in points for m in p[6]]
        ax.set_ylim(*y_limits(lows, highs, max(p[3] - p[2] for p in points)))
        fig.legend(loc="outside lower center", fontsize="small", frameon=False)
    else:
        ax.text(0.5, 0.5, "no finished run yet", ha="center", transform=ax.transAxes)
    return fig


def save(fig, path: Path) -> Path:
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def write_plots(runs: list[Run], labels: list[str], folder: Path) -> list[Path]:
    return [save(val_acc_figure(runs, labels), folder / "val_acc.png"),
            save(acc_vs_params_figure(runs, labels), folder / "acc_vs_params.png")]
