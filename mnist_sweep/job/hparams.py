"""A job's record in TensorBoard's HParams tab: its settings at the start, its outcome at
the end, and nothing else.

Lightning's `log_hyperparams(params, metrics)` also writes each metric's initial value as a
scalar point at step 0, which TensorBoard then shows as data (a `test/acc` of 0.0 for a run
that never tested). Here the session start info is written alone; the metric values the tab
shows are the runs' real scalar series, and the session end info says how the run ended.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from google.protobuf import struct_pb2
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from mnist_sweep.config import RunConfig
from mnist_sweep.job.signature import flatten
from mnist_sweep.record.settings import HPARAM_KEYS

if TYPE_CHECKING:  # Lightning loads torch: seconds that a command's start need not pay
    from pytorch_lightning.loggers import TensorBoardLogger

# The metrics the HParams tab lists, in order; each is a scalar series of the run.
HPARAM_METRICS = ("test/acc", "val/acc_best", "test/loss", "params")
# How a job's end shows in the tab's Status column. An interrupted job writes nothing: it has
# not ended, and the run continues in the same TensorBoard folder when it is resumed.
SESSION_END = {"finished": api_pb2.STATUS_SUCCESS, "failed": api_pb2.STATUS_FAILURE,
               "diverged": api_pb2.STATUS_FAILURE}


def hparams_of(cfg: RunConfig, dataset: str, params: int, precision: str) -> dict[str, Any]:
    """The HParams-tab record: the same keys for every run so TensorBoard can compare them.
    `dataset` and `precision` are what the run used (its data set's label, and what
    trainer.precision=auto chose), not what the config asked for."""
    flat = flatten(dataclasses.asdict(cfg))
    record = {name: flat[key] for name, key in HPARAM_KEYS.items()}
    return record | {"data": dataset, "params": params, "precision": precision}


def proto_value(value: Any) -> struct_pb2.Value:
    """Booleans stay booleans (torch's writer turns them into 0.0 / 1.0)."""
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, (int, float)):
        return struct_pb2.Value(number_value=value)
    return struct_pb2.Value(string_value=str(value))


def hparams_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    return Summary(value=[Summary.Value(tag=tag,
                                        metadata=metadata.create_summary_metadata(data))])


def _write(logger: TensorBoardLogger, summary: Summary) -> None:
    writer = logger.experiment._get_file_writer()
    writer.add_summary(summary)
    writer.flush()


def write_session_start(logger: TensorBoardLogger, hparams: dict[str, Any]) -> None:
    info = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for key, value in hparams.items():
        if value is not None:
            info.hparams[key].CopyFrom(proto_value(value))
    _write(logger, hparams_summary(metadata.SESSION_START_INFO_TAG,
                                   plugin_data_pb2.HParamsPluginData(session_start_info=info)))


def write_session_end(logger: TensorBoardLogger, status: str) -> None:
    if status in SESSION_END:
        info = plugin_data_pb2.SessionEndInfo(status=SESSION_END[status],
                                              end_time_secs=time.time())
        _write(logger, hparams_summary(metadata.SESSION_END_INFO_TAG,
                                       plugin_data_pb2.HParamsPluginData(session_end_info=info)))
