"""The two plots of a sweep: validation accuracy per epoch, and test accuracy against size."""

from __future__ import annotations

import re
from pathlib import Path

from mnist_sweep.report.read import Run, job_number
from mnist_sweep.report.render import write_atomic

# A search's floats (dropout=0.01915194503788923) would make every label a line long.
LONG_NUMBER = re.compile(r"(?<![\w.])\d+\.\d{4,}(?:e-?\d+)?")
LINE_STYLES = ("-", "--", ":", "-.")


def plot_label(label: str) -> str:
    """A run's label for a chart: numbers to 3 significant digits."""
    return LONG_NUMBER.sub(lambda m: f"{float(m.group()):.3g}", label)


def _figure_with_legend_below(entries: int):
    """A chart with room below it for a legend of `entries` lines."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state: safe in any process

    fig = Figure(figsize=(8, 4.5 + 0.2 * entries), layout="constrained")
    return fig, fig.subplots()


def val_acc_figure(runs: list[Run], labels: list[str]):
    """Validation accuracy per epoch, every run on one chart, one tick per whole epoch.
    The legend goes below the chart, which it would otherwise cover once there are a few
    runs; the figure grows with it."""
    from matplotlib.ticker import MaxNLocator

    curves = [(run, label) for run, label in zip(runs, labels, strict=True) if run.val_curve]
    fig, ax = _figure_with_legend_below(len(curves))
    for i, (run, label) in enumerate(curves):
        # ten colours, then the same colours dashed, dotted, ...
        ax.plot(range(1, len(run.val_curve) + 1), run.val_curve, marker="o", markersize=4,
                linestyle=LINE_STYLES[(i // 10) % len(LINE_STYLES)],
                label=f"{job_number(run.job)}: {plot_label(label)}")
    epochs = max((len(r.val_curve) for r in runs), default=0)
    # Epochs are whole numbers: with few of them matplotlib would tick 0.95, 1.00, 1.05
    ax.set_xlim(0.5, max(epochs, 1) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy per epoch")
    ax.grid(alpha=0.3)
    if ax.lines:
        fig.legend(loc="outside lower center", fontsize="small", frameon=False)
    else:
        ax.text(0.5, 0.5, "no run has finished an epoch", ha="center", transform=ax.transAxes)
    return fig


def acc_vs_params_figure(runs: list[Run], labels: list[str]):
    """Test accuracy against parameter count, one point per finished run, marked with its
    job number; the legend below the chart says which configuration each number is."""
    points = [(r.params, r.test_acc, job_number(r.job), plot_label(label))
              for r, label in zip(runs, labels, strict=True)
              if r.params is not None and r.test_acc is not None]
    fig, ax = _figure_with_legend_below(len(points))
    for i, (params, acc, number, label) in enumerate(points):
        ax.scatter(params, acc, label=f"{number}: {label}")
        # alternate the offsets so runs with equal parameter counts stay readable
        ax.annotate(str(number), (params, acc), textcoords="offset points", fontsize="small",
                    xytext=(6, 6 if i % 2 == 0 else -12))
    ax.set(xlabel="trainable parameters", ylabel="test accuracy",
           title="Test accuracy vs parameters")
    ax.grid(alpha=0.3)
    if points:
        fig.legend(loc="outside lower center", fontsize="small", frameon=False)
    else:
        ax.text(0.5, 0.5, "no finished run yet", ha="center", transform=ax.transAxes)
    return fig


def save(fig, path: Path) -> Path:
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def write_plots(runs: list[Run], labels: list[str], folder: Path) -> list[Path]:
    return [save(val_acc_figure(runs, labels), folder / "val_acc.png"),
            save(acc_vs_params_figure(runs, labels), folder / "acc_vs_params.png")]
