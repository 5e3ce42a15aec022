"""The two plots of a sweep: validation accuracy per epoch, and test accuracy against size."""

from __future__ import annotations

from pathlib import Path

from mnist_sweep.report.read import Run, job_number
from mnist_sweep.report.render import write_atomic


def val_acc_figure(runs: list[Run], labels: list[str]):
    """Validation accuracy per epoch, every run on one chart, one tick per whole epoch."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state: safe in any process
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    for run, label in zip(runs, labels, strict=True):
        if run.val_curve:
            ax.plot(range(1, len(run.val_curve) + 1), run.val_curve, marker="o",
                    label=f"{job_number(run.job)}: {label}")
    epochs = max((len(r.val_curve) for r in runs), default=0)
    # Epochs are whole numbers: with few of them matplotlib would tick 0.95, 1.00, 1.05
    ax.set_xlim(0.5, max(epochs, 1) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy per epoch")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no run has finished an epoch", ha="center", transform=ax.transAxes)
    return fig


def acc_vs_params_figure(runs: list[Run], labels: list[str]):
    """Test accuracy against parameter count, one labelled point per finished run."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    points = [(r.params, r.test_acc, f"{job_number(r.job)}: {label}")
              for r, label in zip(runs, labels, strict=True)
              if r.params is not None and r.test_acc is not None]
    for i, (params, acc, label) in enumerate(points):
        ax.scatter(params, acc)
        # alternate the offsets so runs with equal parameter counts stay readable
        ax.annotate(label, (params, acc), textcoords="offset points", fontsize="small",
                    xytext=(6, 6 if i % 2 == 0 else -12))
    ax.set(xlabel="trainable parameters", ylabel="test accuracy",
           title="Test accuracy vs parameters")
    ax.grid(alpha=0.3)
    if not points:
        ax.text(0.5, 0.5, "no finished run yet", ha="center", transform=ax.transAxes)
    return fig


def save(fig, path: Path) -> Path:
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def write_plots(runs: list[Run], labels: list[str], folder: Path) -> list[Path]:
    return [save(val_acc_figure(runs, labels), folder / "val_acc.png"),
            save(acc_vs_params_figure(runs, labels), folder / "acc_vs_params.png")]
