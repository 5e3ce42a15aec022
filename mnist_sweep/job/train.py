"""One job of a sweep: build data, model and trainer from the config, train, test, record.

Everything a job leaves behind lives in its own folder (Hydra's output dir):
    .hydra/            the composed config and overrides (written by Hydra)
    tb/<dataset>/      TensorBoard event files: scalars per epoch and the hparams record
    checkpoints/       last.ckpt, to continue an interrupted job
    status.json        running | finished | failed | diverged | interrupted, with metrics
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from mnist_sweep.config import ConfigError, RunConfig, validate
from mnist_sweep.job.callbacks import (
    DivergedError,
    DivergenceGuard,
    EpochTimer,
    ProgressRecorder,
)
from mnist_sweep.job.data import MNISTDataModule
from mnist_sweep.job.datasets import DataError
from mnist_sweep.job.module import CNNClassifier
from mnist_sweep.job.quiet import quiet_lightning
from mnist_sweep.job.status import (
    DIVERGED,
    FAILED,
    FINISHED,
    INTERRUPTED,
    RUNNING,
    read_status,
    write_status,
)

log = logging.getLogger(__name__)
# Noise from Lightning's internals on recent torch releases; nothing a user can act on.
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
CHECKPOINT_DIR = "checkpoints"
HPARAM_METRICS = ("val/acc_best", "test/acc", "test/loss")


class CheckpointError(RuntimeError):
    """A checkpoint that does not fit the configured network."""


class JobInterrupted(SystemExit):
    """Ctrl-C or SIGTERM: the job saved its state and the process should stop."""


def hparams_of(cfg: RunConfig, dataset: str, params: int) -> dict[str, Any]:
    """The HParams-tab record: the same keys for every run so TensorBoard can compare them."""
    return {
        "head": cfg.model.head, "separable": cfg.model.separable, "filters": cfg.model.filters,
        "data": dataset, "lr": cfg.optim.lr, "optimizer": cfg.optim.name,
        "scheduler": cfg.scheduler.name, "batch_size": cfg.data.batch_size,
        "epochs": cfg.trainer.max_epochs, "seed": cfg.seed, "params": params,
        "dropout": cfg.model.dropout, "weight_decay": cfg.optim.weight_decay,
        "label_smoothing": cfg.model.label_smoothing, "augment": cfg.data.augment.enabled,
        "precision": str(cfg.trainer.precision), "val_size": cfg.data.val_size,
    }


# Values of signature keys added after some result folders were written: an older folder
# without the key ran with this value.
SIGNATURE_DEFAULTS = {"val_size": 5000}


def job_signature(cfg: RunConfig) -> dict[str, Any]:
    """What makes two runs the same job: a folder's finished result is reused only for this."""
    return {k: v for k, v in hparams_of(cfg, cfg.data.name, 0).items() if k != "params"}


def same_job(recorded: dict[str, Any] | None, signature: dict[str, Any]) -> bool:
    """Whether a folder's recorded signature is this job's (older records lack newer keys)."""
    if recorded is None:
        return True
    return SIGNATURE_DEFAULTS | recorded == SIGNATURE_DEFAULTS | signature


def _devices(cfg: RunConfig, job_num: int | None) -> Any:
    """One GPU per job in parallel sweeps: job k takes GPU k mod the number of GPUs."""
    count = torch.cuda.device_count() if cfg.trainer.accelerator in ("auto", "gpu",
                                                                      "cuda") else 0
    if count > 1 and cfg.trainer.devices == 1 and job_num is not None:
        return [job_num % count]
    return cfg.trainer.devices


def _check_checkpoint(path: Path, model: CNNClassifier) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    except Exception as exc:
        raise CheckpointError(f"{path} cannot be read ({type(exc).__name__}); delete it to "
                              f"start this job from scratch.") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        raise CheckpointError(
            f"{path} was saved by a different network than the one configured "
            f"(head={model.model_cfg.head}, separable={model.model_cfg.separable}, "
            f"filters={model.model_cfg.filters}). Use the overrides it was trained with, a new "
            f"output folder, or delete the checkpoint to start again.")


def build_trainer(cfg: RunConfig, job_dir: Path, logger: TensorBoardLogger,
                  job_num: int | None, extra_callbacks: list[pl.Callback]) -> pl.Trainer:
    t = cfg.trainer
    callbacks: list[pl.Callback] = [EpochTimer(), ProgressRecorder(job_dir), *extra_callbacks]
    if cfg.logger.checkpoint_every_epoch:
        # One file, replaced atomically after every epoch. An interrupted job resumes from
        # here: the end of its last whole epoch (Lightning cannot resume reliably mid-epoch).
        # save_last alone would save nothing with save_top_k=0.
        callbacks.append(ModelCheckpoint(dirpath=job_dir / CHECKPOINT_DIR, filename="last",
                                         save_top_k=1, monitor=None,
                                         enable_version_counter=False))
    bar = t.enable_progress_bar and job_num is None  # a multirun shows its live view instead
    if bar:
        callbacks.append(RichProgressBar(leave=True))
    return pl.Trainer(
        accelerator=t.accelerator, devices=_devices(cfg, job_num), precision=t.precision,
        max_epochs=t.max_epochs, limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches if cfg.data.validates else 0,
        limit_test_batches=t.limit_test_batches,
        enable_progress_bar=bar, deterministic=t.deterministic,
        logger=logger, callbacks=callbacks, enable_model_summary=False,
        num_sanity_val_steps=0, log_every_n_steps=50, default_root_dir=str(job_dir),
        enable_checkpointing=cfg.logger.checkpoint_every_epoch,
    )


def train_job(cfg: RunConfig, job_dir: Path, job_num: int | None = None) -> dict[str, Any]:
    """Train and test one configuration; return the final metrics. Raises on failure."""
    quiet_lightning(cfg.trainer.lightning_info)
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = MNISTDataModule(cfg.data, shuffle_seed=cfg.seed)
    datamodule.prepare_data()
    model = CNNClassifier(cfg.model, cfg.optim, cfg.scheduler)
    log.info("network: head=%s separable=%s filters=%d -> %d trainable parameters",
             cfg.model.head, cfg.model.separable, cfg.model.filters, model.num_parameters)

    ckpt = job_dir / CHECKPOINT_DIR / "last.ckpt"
    previous = read_status(job_dir) or {}
    resume_from = ckpt if (cfg.resume and ckpt.is_file()
                           and previous.get("status") != DIVERGED) else None
    if resume_from is not None:
        _check_checkpoint(resume_from, model)
        log.info("resuming from %s", resume_from)

    logger = TensorBoardLogger(save_dir=str(job_dir), name=cfg.logger.name,
                               version=datamodule.dataset_label, default_hp_metric=False)
    if resume_from is None:
        hparams = hparams_of(cfg, datamodule.dataset_label, model.num_parameters)
        metrics = [m for m in HPARAM_METRICS if cfg.data.validates or not m.startswith("val/")]
        logger.log_hyperparams(hparams, {m: 0.0 for m in metrics}
                               | {"params": float(model.num_parameters)})
    divergence = DivergenceGuard()
    trainer = build_trainer(cfg, job_dir, logger, job_num, [divergence])
    write_status(job_dir, RUNNING, params=model.num_parameters,
                 dataset=datamodule.dataset_label, resumed_from=str(resume_from or ""),
                 error=None)
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    if divergence.reason:
        logger.finalize("failed")
        raise DivergedError(divergence.reason)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    trainer.test(model, datamodule=datamodule, verbose=False)
    test_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    final = {
        "val/acc_best": float(model.best_val_acc) if cfg.data.validates else None,
        "val/acc": fit_metrics.get("val/acc"),
        "test/acc": test_metrics.get("test/acc"), "test/loss": test_metrics.get("test/loss"),
        "epochs": trainer.current_epoch, "params": model.num_parameters,
        "epoch_seconds": fit_metrics.get("time/epoch_seconds"),
    }
    logger.finalize("success")
    return final


def _raise_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (`kill`, `scancel`, a preempting scheduler) stops the job like Ctrl-C does."""
    raise SIGTERMException()


def _install_sigterm_handler() -> Any:
    try:
        return signal.signal(signal.SIGTERM, _raise_sigterm)
    except ValueError:  # not the main thread (some launchers): keep the default handler
        return None


def run_job(cfg: DictConfig, job_dir: Path, job_num: int | None = None,
            multirun: bool = False) -> float | None:
    """Run one job with the sweep's failure policy and return the metric to optimise.

    A finished job is skipped (resume). Failures are recorded in status.json; in a multirun
    the sweep carries on with the next job, in a single run the process exits non-zero.
    """
    job_dir = Path(job_dir)
    try:
        run_cfg = validate(cfg)
    except ConfigError as exc:  # grid sweeps are checked up front; a search's trials are not
        if not multirun:
            raise
        job_dir.mkdir(parents=True, exist_ok=True)
        write_status(job_dir, FAILED, error=str(exc))
        log.error("job failed: %s", exc)
        return None
    previous = read_status(job_dir) or {}
    signature = job_signature(run_cfg)
    if previous.get("status") == FINISHED:
        if not same_job(previous.get("signature"), signature):
            message = (f"{job_dir} holds a finished run of a different configuration "
                       f"({previous.get('signature')}); finished results are never "
                       f"overwritten. Choose a new folder (hydra.run.dir=... or "
                       f"hydra.sweep.dir=...).")
        elif not run_cfg.resume:
            message = (f"{job_dir} holds a finished run and resume=false; finished results "
                       f"are never overwritten. Choose a new folder or drop resume=false.")
        else:
            log.info("%s already finished: skipping (resume=true)", job_dir)
            return previous.get("metrics", {}).get(run_cfg.optimized_metric or "")
        if not multirun:
            print(f"Error: {message}", file=sys.stderr)
            raise SystemExit(1)
        log.error(message)
        return None

    job_dir.mkdir(parents=True, exist_ok=True)
    write_status(job_dir, RUNNING, signature=signature, error=None)
    previous_handler = _install_sigterm_handler()
    try:
        metrics = train_job(run_cfg, job_dir, job_num)
    except (KeyboardInterrupt, SIGTERMException, SystemExit) as exc:
        code = 143 if isinstance(exc, SIGTERMException) else 130
        if type(exc) is SystemExit and exc.code not in (None, 0, 1):
            # A launcher's own exit (submitit requeues a timed-out job with exit code 144):
            # record it and let the launcher see its code unchanged.
            write_status(job_dir, INTERRUPTED, error=f"stopped by its launcher (exit {exc.code})")
            raise
        ckpt = job_dir / CHECKPOINT_DIR / "last.ckpt"
        write_status(job_dir, INTERRUPTED, error=f"interrupted ({signal.Signals(code - 128).name})",
                     checkpoint=str(ckpt) if ckpt.is_file() else None)
        again = f"hydra.sweep.dir={job_dir.parent}" if multirun else f"hydra.run.dir={job_dir}"
        where = (f"from {ckpt} (the end of its last whole epoch)" if ckpt.is_file()
                 else "from the start (no epoch had finished)")
        log.error("job interrupted. Run the same command with %s to continue it %s.", again,
                  where)
        raise JobInterrupted(code) from None
    except DivergedError as exc:
        write_status(job_dir, DIVERGED, error=str(exc))
        log.error("job diverged: %s", exc)
        if not multirun:
            raise SystemExit(1) from None
        return None
    except (ConfigError, DataError, CheckpointError) as exc:
        write_status(job_dir, FAILED, error=str(exc))
        if not multirun:
            print(f"Error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        log.error("job failed: %s", exc)
        return None
    except Exception as exc:  # anything else: keep the sweep going, keep the evidence
        write_status(job_dir, FAILED, error=f"{type(exc).__name__}: {exc}")
        log.exception("job failed")
        if not multirun:
            raise SystemExit(1) from None
        return None
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    write_status(job_dir, FINISHED, metrics=metrics, error=None)
    value = metrics.get(run_cfg.optimized_metric or "")
    return None if value is None or not math.isfinite(value) else value
