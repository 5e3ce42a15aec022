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

from mnist_sweep.job.hparams import HPARAM_KEYS, HPARAM_METRICS, hparams_summary, proto_value

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
        # set a job really loads (an offline fallback) and the parameter count are not known
        if distinct and name not in ("data", "params") and info.type != api_pb2.DATA_TYPE_FLOAT64:
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
