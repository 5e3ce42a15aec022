"""The config schema: every value is checked here before any training starts.

Hydra composes `conf/` into a DictConfig; `validate` merges it onto these dataclasses
(catching type errors and unknown keys) and then checks ranges, so a bad value ends in one
message that names the key and the fix instead of a traceback deep inside training.

The dataclasses hold the names, types and checks of the settings, not their values: every
default is written once, in conf/ (`default_config()` composes it). A field reads MISSING
(`???`), so a key that no YAML file sets fails `validate` instead of taking a second,
silent default.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

HEADS = ("gmp", "gap", "flatten")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("inverse_time", "onecycle", "cosine", "constant")
DATASETS = ("mnist", "fashion_mnist")
DROPOUT_MASKS = ("auto", "int16", "torch")
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true")
# auto: bf16-mixed on a CPU with bf16 units, 32-true elsewhere (job/devices.py: precision_used)
# Lightning's CPU accelerator runs 16-mixed as bfloat16 autocast, so a run recorded as
# 16-mixed would hold bf16 numbers.
CPU_PRECISION_HINT = ("32-true or bf16-mixed on the CPU (float16 autocast needs a GPU; on the "
                      "CPU Lightning would train in bfloat16 instead)")


class ConfigError(ValueError):
    """A value the user can fix on the command line."""


def _check(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value} is not valid: expected {expected}. "
                          f"Change it on the command line, e.g. `{key}=<value>`.")


@dataclass
class ModelConfig:
    """conf/config.yaml's `model` node; `head` comes from the conf/head/ group."""

    head: str = MISSING
    separable: bool = MISSING
    filters: int = MISSING
    dropout: float = MISSING
    transition_channels: int = MISSING
    label_smoothing: float = MISSING
    ema_decay: float = MISSING  # > 0: validate and test a moving average of the weights
    channels_last: bool = MISSING  # NHWC: faster convolutions on every CPU measured
    compile: bool = MISSING
    dropout_masks: str = MISSING  # auto | int16 | torch (mnist_sweep/job/dropout.py)

    def __post_init__(self) -> None:
        _check(self.head in HEADS, "head", self.head, " | ".join(HEADS))
        _check(self.dropout_masks in DROPOUT_MASKS, "model.dropout_masks", self.dropout_masks,
               " | ".join(DROPOUT_MASKS) + " (auto: 16-bit masks on the CPU, torch's dropout "
               "on a GPU)")
        _check(1 <= self.filters <= 512, "model.filters", self.filters, "an integer in 1..512")
        _check(0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "a value in [0, 1)")
        _check(1 <= self.transition_channels <= 512, "model.transition_channels",
               self.transition_channels, "an integer in 1..512")
        _check(0.0 <= self.label_smoothing < 1.0, "model.label_smoothing",
               self.label_smoothing, "a value in [0, 1)")
        _check(0.0 <= self.ema_decay < 1.0, "model.ema_decay", self.ema_decay,
               "a value in [0, 1): 0 is off, 0.999 averages about the last 1,000 steps")


@dataclass
class AugmentConfig:
    """`data.augment`, in each option of conf/data/."""

    enabled: bool = MISSING
    rotation: float = MISSING
    translate: float = MISSING
    scale: float = MISSING

    def __post_init__(self) -> None:
        _check(0.0 <= self.rotation <= 180.0, "data.augment.rotation", self.rotation,
               "degrees in [0, 180]")
        _check(0.0 <= self.translate < 0.5, "data.augment.translate", self.translate,
               "a fraction of the image in [0, 0.5)")
        _check(0.0 <= self.scale < 0.5, "data.augment.scale", self.scale,
               "a fraction in [0, 0.5)")


@dataclass
class DataConfig:
    """The conf/data/ group (mnist, fashion_mnist)."""

    name: str = MISSING
    root: str | None = MISSING
    download: bool = MISSING
    npm_fallback: bool = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    val_size: int = MISSING
    split_seed: int = MISSING
    augment: AugmentConfig = MISSING

    def __post_init__(self) -> None:
        _check(self.name in DATASETS, "data.name", self.name, " | ".join(DATASETS))
        _check(self.batch_size >= 1, "data.batch_size", self.batch_size, "an integer >= 1")
        _check(self.eval_batch_size >= 1, "data.eval_batch_size", self.eval_batch_size,
               "an integer >= 1")
        _check(0 <= self.val_size < 60000, "data.val_size", self.val_size,
               "an integer in 0..59999")

    @property
    def validates(self) -> bool:
        """False with val_size=0: every training image trains and nothing is validated."""
        return self.val_size > 0


@dataclass
class OptimConfig:
    """The conf/optim/ group (adam, adamw, sgd)."""

    name: str = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    momentum: float = MISSING

    def __post_init__(self) -> None:
        _check(self.name in OPTIMIZERS, "optim.name", self.name, " | ".join(OPTIMIZERS))
        _check(0.0 < self.lr, "optim.lr", self.lr, "a learning rate > 0")
        _check(0.0 <= self.weight_decay, "optim.weight_decay", self.weight_decay, "a value >= 0")
        _check(0.0 <= self.momentum < 1.0, "optim.momentum", self.momentum, "a value in [0, 1)")


@dataclass
class SchedulerConfig:
    """The conf/scheduler/ group (inverse_time, onecycle, cosine, constant)."""

    name: str = MISSING
    decay: float = MISSING
    max_lr: float | None = MISSING
    pct_start: float = MISSING
    min_lr: float = MISSING

    def __post_init__(self) -> None:
        _check(self.name in SCHEDULERS, "scheduler.name", self.name, " | ".join(SCHEDULERS))
        _check(self.decay >= 0.0, "scheduler.decay", self.decay, "a value >= 0")
        _check(self.max_lr is None or self.max_lr > 0, "scheduler.max_lr", self.max_lr,
               "null or a learning rate > 0")
        _check(0.0 <= self.pct_start < 1.0, "scheduler.pct_start", self.pct_start,
               "a fraction in [0, 1)")
        _check(self.min_lr >= 0.0, "scheduler.min_lr", self.min_lr, "a value >= 0")


@dataclass
class TrainerConfig:
    """The conf/trainer/ group (default)."""

    accelerator: str = MISSING
    devices: Any = MISSING  # 1, or a list of one device index
    precision: str = MISSING
    max_epochs: int = MISSING
    limit_train_batches: Any = MISSING  # a batch count (int) or a fraction (float)
    limit_val_batches: Any = MISSING  # the same
    limit_test_batches: Any = MISSING  # the same
    enable_progress_bar: bool = MISSING
    deterministic: bool = MISSING
    num_threads: int | None = MISSING  # None: job/threads.py follows the machine's free cores
    # A mean training loss above this ends the run as diverged: a classifier guessing
    # uniformly among 10 classes has a loss of ln 10 = 2.3, so 100 is a run that blew up.
    divergence_loss: float = MISSING
    lightning_info: bool = MISSING  # Lightning's INFO lines (job/quiet.py)

    def __post_init__(self) -> None:
        _check(self.accelerator in ("auto", "cpu", "gpu", "cuda", "mps"), "trainer.accelerator",
               self.accelerator, "auto | cpu | gpu | mps")
        # Whether the device exists is checked where the job runs (job/devices.py): a Slurm
        # login node that submits a GPU sweep has no GPU of its own.
        _check(not (self.accelerator == "cpu" and str(self.precision) == "16-mixed"),
               "trainer.precision", self.precision, CPU_PRECISION_HINT)
        _check(self.devices == 1 or (isinstance(self.devices, list) and len(self.devices) == 1),
               "trainer.devices", self.devices,
               "1 (one job trains on one device; run jobs side by side with "
               "hydra/launcher=joblib; each job of a sweep takes a free GPU)")
        _check(str(self.precision) in PRECISIONS, "trainer.precision", self.precision,
               " | ".join(PRECISIONS))
        _check(self.max_epochs >= 1, "trainer.max_epochs", self.max_epochs, "an integer >= 1")
        for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
            value = getattr(self, key)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
                (isinstance(value, int) and value >= 1) or (isinstance(value, float)
                                                             and 0.0 < value <= 1.0))
            _check(ok, f"trainer.{key}", value, "a batch count >= 1 or a fraction in (0, 1]")
        _check(self.num_threads is None or self.num_threads >= 1, "trainer.num_threads",
               self.num_threads, "null or an integer >= 1")
        _check(self.divergence_loss > 0, "trainer.divergence_loss", self.divergence_loss,
               "a loss > 0")


@dataclass
class LoggerConfig:
    """The conf/logger/ group (tensorboard)."""

    name: str = MISSING
    checkpoint_every_epoch: bool = MISSING


@dataclass
class SearchTrialConfig:
    """The Optuna trial a job of a search reports to (set by the search sweeper, never by
    hand): where the study is stored, its name and the trial's number."""

    storage: str = MISSING
    study_name: str = MISSING
    number: int = MISSING


@dataclass
class RunConfig:
    """The whole config minus Hydra's own `hydra` node: conf/config.yaml and its groups."""

    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    optim: OptimConfig = MISSING
    scheduler: SchedulerConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    separable: bool = MISSING  # copied into model.separable by conf/config.yaml
    filters: int = MISSING  # copied into model.filters
    seed: int = MISSING
    resume: bool = MISSING
    # The two keys no YAML file of a plain run sets, so the only values written here.
    # What a job returns to a sweeper (set by hparams_search=optuna); None for grid sweeps.
    optimized_metric: str | None = None
    # Which trial of a search this job is (set by the search sweeper, not a setting of the
    # training); None outside a search.
    search_trial: SearchTrialConfig | None = None

    def __post_init__(self) -> None:
        # torch and Lightning's seed_everything take seeds in [0, 2**32)
        _check(0 <= self.seed < 2**32, "seed", self.seed, "an integer in 0..4294967295")
        sched = self.scheduler
        _check(sched.name != "onecycle" or sched.max_lr is None or sched.max_lr > self.optim.lr,
               "scheduler.max_lr", sched.max_lr,
               f"a peak above optim.lr={self.optim.lr} (the one-cycle schedule starts at "
               f"optim.lr and rises to scheduler.max_lr), or null for 10 x optim.lr")
        _check(not (not self.data.validates and self.optimized_metric
                    and self.optimized_metric.startswith("val/")),
               "optimized_metric", self.optimized_metric,
               "a test/ metric, or a data.val_size > 0: data.val_size=0 trains on all the "
               "training images and leaves no validation set to measure")


# Keys that only a config group sets: a group removed on the command line (`~head`) is named
# as such, with one of its options, rather than as the keys it leaves without a value.
GROUP_KEYS = {"model.head": "head=gmp", "optim.name": "optim=adam",
              "scheduler.name": "scheduler=inverse_time", "data.name": "data=mnist"}


def reject_non_finite(values: Any, key: str = "") -> None:
    """No setting is infinite or not a number: `inf`, `nan` and a float beyond float's range
    (`1e400` reads as inf) pass a range check like `> 0` or fail it with a misleading hint,
    then diverge the run. Checked once for every float of the config, whatever its key."""
    if isinstance(values, dict):
        for name, value in values.items():
            reject_non_finite(value, f"{key}.{name}" if key else str(name))
    elif isinstance(values, list):
        for index, value in enumerate(values):
            reject_non_finite(value, f"{key}[{index}]")
    elif isinstance(values, float):
        _check(math.isfinite(values), key, values,
               "a finite number (inf, nan and values beyond 1.8e308 are not)")


def validate(cfg: DictConfig) -> RunConfig:
    """Check a composed config and return it as typed dataclasses.

    Raises ConfigError with a one-line, actionable message.
    """
    for key, example in GROUP_KEYS.items():
        if OmegaConf.select(cfg, key, default=None) is None:
            group = example.split("=")[0]
            raise ConfigError(f"{key} has no value: the `{group}` config group was removed "
                              f"(`~{group}`?). Choose one of its options, e.g. `{example}`.")
    try:
        # Hydra's own node is left out unresolved: resolving it would create output folders.
        plain = OmegaConf.to_container(
            OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
        merged = OmegaConf.merge(OmegaConf.structured(RunConfig), plain)
        reject_non_finite(OmegaConf.to_container(merged))
        run_cfg = OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except MissingMandatoryValue as exc:  # a key conf/ sets was removed (`~model.dropout`)
        key = getattr(exc, "full_key", None) or "?"
        raise ConfigError(f"{key} has no value (removed with `~{key}`?). Give it one on the "
                          f"command line, e.g. `{key}=<value>` (`python -m mnist_sweep --cfg "
                          f"job` prints every key).") from None
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        reason = str(exc).splitlines()[0]
        raise ConfigError(f"config key `{key}`: {reason}. Check its spelling and type "
                          f"(`python -m mnist_sweep --cfg job` prints every key).") from None
    except ValueError as exc:  # raised by our own __post_init__ checks wrapped by OmegaConf
        raise ConfigError(str(exc)) from None
    assert isinstance(run_cfg, RunConfig)
    return run_cfg


def default_config() -> RunConfig:
    """Every setting at its default: conf/'s primary config composed with no overrides and
    validated. The defaults are written in conf/ only (the dataclasses above hold none).

    Works outside Hydra (`mnist-sweep-report`) and inside a running Hydra app (the report a
    sweep writes at its end), whose global state it leaves as it found it. A fresh copy each
    call: change it freely, e.g. with `dataclasses.replace`.
    """
    return copy.deepcopy(_composed_defaults())


@functools.lru_cache(maxsize=1)
def _composed_defaults() -> RunConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import JobRuntime
    from hydra.version import VersionBase

    from mnist_sweep.paths import config_dir

    # Hydra keeps one global instance, which a running app (a sweep writing its report)
    # holds: it is set aside while conf/ is composed on its own, then put back as it was,
    # with the job name and version base that composing conf/ sets globally.
    running = GlobalHydra.instance()
    app, job_name = running.hydra, JobRuntime.instance().get("name")
    version_base = VersionBase.instance().getbase()
    running.clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name="config")
    finally:  # the context made its instance in `running`, and left a copy of it in place
        running.clear()
        if app is not None:
            running.initialize(app)
        GlobalHydra.set_instance(running)
        JobRuntime.instance().set("name", job_name)
        VersionBase.instance().version_base = version_base
    return validate(cfg)
