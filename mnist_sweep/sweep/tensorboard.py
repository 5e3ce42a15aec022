"""The sweep's HParams experiment: what TensorBoard's HParams tab lists, in which order.

Without it TensorBoard infers the columns from the runs, alphabetically, and ticks the first
five (`augment, batch_size, data, dropout, epochs`: settings no sweep varies). Written at the
sweep folder's root, it puts the swept settings first (ticked), gives booleans and choices
their values, and names the real metrics. A re-run of the sweep replaces it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from mnist_sweep.job.hparams import HPARAM_METRICS, hparams_summary, proto_value
from mnist_sweep.record.settings import HPARAM_KEYS

SUFFIX = ".hparams_experiment"
METRIC_NAMES = {"test/acc": "test accuracy", "val/acc_best": "best validation accuracy",
                "test/loss": "test loss", "params": "trainable parameters"}


def _data_type(values: list[Any]) -> int:
    if all(isinstance(v, bool) for v in values):
        return api_pb2.DATA_TYPE_BOOL
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return api_pb2.DATA_TYPE_FLOAT64
    return api_pb2.DATA_TYPE_STRING


def experiment_summary(records: list[dict[str, Any]], swept: Iterable[str]) -> Any:
    """The experiment summary for runs with these HParams records; `swept` names first."""
    swept = [name for name in swept if name in HPARAM_KEYS or name == "params"]
    names = swept + [n for n in [*HPARAM_KEYS, "params"] if n not in swept]
    infos = []
    for name in names:
        values = [r[name] for r in records if r.get(name) is not None]
        # `differs` is what TensorBoard sorts by (then by name): the swept settings first
        info = api_pb2.HParamInfo(name=name, type=_data_type(values) if values else
                                  api_pb2.DATA_TYPE_STRING, differs=name in swept)
        distinct = list(dict.fromkeys(values))
        # a run outside a listed domain would be hidden by the tab's default filter: the data
        # set a job really loads (an offline fallback), the parameter count and the precision
        # trainer.precision=auto picks on the job's device are not known
        unknown = name in ("data", "params", "precision")
        if distinct and not unknown and info.type != api_pb2.DATA_TYPE_FLOAT64:
            info.domain_discrete.CopyFrom(
                struct_pb2.ListValue(values=[proto_value(v) for v in distinct]))
        infos.append(info)
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag),
                                  display_name=METRIC_NAMES.get(tag, tag))
               for tag in HPARAM_METRICS]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics)
    return hparams_summary(metadata.EXPERIMENT_TAG,
                           plugin_data_pb2.HParamsPluginData(experiment=experiment))


def swept_names(records: list[dict[str, Any]]) -> list[str]:
    """The HParams names whose values differ among the runs, in HPARAM_KEYS order."""
    return [n for n in HPARAM_KEYS if len({repr(r.get(n)) for r in records}) > 1]


# Command-line keys that stand for a config key of the record (a group, or a copied value).
ALIASES = {"head": "model.head", "separable": "model.separable", "filters": "model.filters",
           "optim": "optim.name", "scheduler": "scheduler.name", "data": "data.name"}


def names_of_keys(keys: Iterable[str]) -> list[str]:
    """HParams names of command-line keys, e.g. `optim.lr` -> `lr`, `head` -> `head`."""
    by_key = {key: name for name, key in HPARAM_KEYS.items()}
    return [by_key[k] for k in (ALIASES.get(k, k) for k in keys) if k in by_key]


def write_experiment(sweep_dir: Path, records: list[dict[str, Any]],
                     swept: Iterable[str]) -> Path:
    """Replace the sweep folder's experiment file; returns it."""
    from torch.utils.tensorboard.writer import FileWriter

    for old in sweep_dir.glob(f"events.out.tfevents.*{SUFFIX}"):
        old.unlink()
    writer = FileWriter(str(sweep_dir), filename_suffix=SUFFIX)
    writer.add_summary(experiment_summary(records, swept))
    writer.close()
    return Path(writer.get_logdir())


# ---- seed groups -----------------------------------------------------------------------

GROUPS_DIR = "seed_groups"
BAND_CHART = "val/acc: seed mean, band from the lowest to the highest seed"
GROUP_LAYOUT = {"seed groups": {
    BAND_CHART: ["Margin", ["val/acc", "val/acc_min", "val/acc_max"]],
    "test/acc: seed mean, band from the lowest to the highest seed":
        ["Margin", ["test/acc", "test/acc_min", "test/acc_max"]],
}}


def group_folder_name(label: str) -> str:
    """`head=gmp filters=20` -> `head=gmp,filters=20`: one path component, as Hydra names
    job folders."""
    return ",".join(label.split()).replace("/", "_") or "defaults"


def write_seed_groups(sweep_dir: Path, runs: list[Any]) -> list[Path]:
    """One TensorBoard run per group of finished runs that differ only in seed (two or more
    with a validation curve): `seed_groups/<what differs>/`, whose `val/acc` at each epoch
    is the mean over the seeds and `val/acc_min` / `val/acc_max` the lowest and highest
    seed, and the same for `test/acc` at the last epoch. A custom-scalars layout draws each
    as a margin chart, so one chart holds every configuration with its spread (single runs
    are in the Time Series tab as they are). Replaces the folder's earlier group runs.

    `runs`: the sweep's runs as the report read them (report/read.py's Run).
    """
    import shutil

    import numpy as np
    from torch.utils.tensorboard import SummaryWriter

    from mnist_sweep.report.stats import group_runs

    root = Path(sweep_dir) / GROUPS_DIR
    shutil.rmtree(root, ignore_errors=True)
    written = []
    for group in group_runs(list(runs), [Path(sweep_dir)]).groups:
        curves = [r.val_curve for r in group.finished if r.val_curve]
        if len(curves) < 2:
            continue
        folder = root / group_folder_name(group.label)
        writer = SummaryWriter(str(folder))
        try:
            writer.add_custom_scalars(GROUP_LAYOUT)
            epochs = min(len(c) for c in curves)
            for epoch in range(epochs):
                values = np.array([c[epoch] for c in curves])
                for tag, value in (("val/acc", values.mean()), ("val/acc_min", values.min()),
                                   ("val/acc_max", values.max())):
                    writer.add_scalar(tag, float(value), epoch + 1)
            tests = np.array([r.test_acc for r in group.finished if r.test_acc is not None])
            if len(tests):
                for tag, value in (("test/acc", tests.mean()), ("test/acc_min", tests.min()),
                                   ("test/acc_max", tests.max())):
                    writer.add_scalar(tag, float(value), epochs)
            seeds = ", ".join(str(r.config.get("seed")) for r in group.finished)
            writer.add_text("seeds", f"{group.label}: mean over the seeds {seeds}")
        finally:
            writer.close()
        written.append(folder)
    return written
