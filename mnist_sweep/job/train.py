"""One job of a sweep: build data, model and trainer from the config, train, test, record.

Everything a job leaves behind lives in its own folder (Hydra's output dir):
    .hydra/            the composed config and overrides (written by Hydra)
    tb/<dataset>/      TensorBoard event files: scalars per epoch and the hparams record
    checkpoints/       last.ckpt, to continue an interrupted job
    predictions.npz    the predicted class of each test image (job/predictions.py)
    status.json        running | finished | failed | diverged | interrupted | pruned
    .mnist_sweep.lock  held while a process trains here (see locks.py)

How a job can end is one table, ENDINGS: for each way (finished, refused, interrupted by
Ctrl-C or SIGTERM, stopped by its launcher, pruned, diverged, failed, unable to write...),
the status status.json records, the exit code of a single run, whether a sweep carries on
with its next job or stops, and whether the record names the checkpoint the job continues
from. run_job tells which way a job ended (_ending_of) and does what the table says (_end).
"""

from __future__ import annotations

import errno
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException

from mnist_sweep.config import ConfigError, RunConfig, validate
from mnist_sweep.job.averaging import WarmupEMA
from mnist_sweep.job.callbacks import (
    DivergedError,
    DivergenceGuard,
    EpochCheckpoint,
    EpochLogger,
    EpochTimer,
    ProgressRecorder,
    StopBetweenBatches,
)
from mnist_sweep.job.checkpoints import (
    AtomicCheckpointIO,
    CheckpointError,
    JobSignature,
    RandomState,
    check_checkpoint,
)
from mnist_sweep.job.data import MNISTDataModule
from mnist_sweep.job.datasets import DataError
from mnist_sweep.job.devices import DeviceUnavailable, Placement, place_job
from mnist_sweep.job.dropout import masks_used
from mnist_sweep.job.folder import (
    REFUSE,
    REFUSED_AT_START,
    RESUME,
    SKIP,
    describe_files,
    judge,
    remove_stale_temporaries,
    start_afresh,
)
from mnist_sweep.job.hparams import hparams_of, write_session_end, write_session_start
from mnist_sweep.job.module import CNNClassifier
from mnist_sweep.job.predictions import write_predictions
from mnist_sweep.job.pruning import TrialPruned, trial_pruning
from mnist_sweep.job.quiet import hints_off, quiet_lightning
from mnist_sweep.job.signals import (
    install_stop_handlers,
    restore_stop_handlers,
    stops_between_batches,
)
from mnist_sweep.job.signature import job_signature
from mnist_sweep.job.threads import set_cpu_threads
from mnist_sweep.locks import FolderLocked, acquire, release
from mnist_sweep.record.folders import folder_override
from mnist_sweep.record.layout import CHECKPOINT_DIR, last_checkpoint
from mnist_sweep.record.status import (
    DIVERGED,
    FAILED,
    FINISHED,
    INTERRUPTED,
    PRUNED,
    RUNNING,
    read_status,
    write_interrupted,
    write_status,
)

log = logging.getLogger(__name__)


class JobInterrupted(SystemExit):
    """Ctrl-C or SIGTERM: the job saved its state and the process should stop."""


class WriteFailed(SystemExit):
    """The job's folder cannot be written (a full disk): the sweep stops, since every job
    after this one would fail the same way, half-way through writing its files."""

    def __init__(self, message: str, sweep_dir: Path | None) -> None:
        super().__init__(1)
        self.message, self.sweep_dir = message, sweep_dir


# errnos of a storage that cannot take more data; torch.save reports them as RuntimeError
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def write_failure(exc: BaseException) -> str | None:
    """The OS error behind `exc` when it is a failed write, else None."""
    for cause in (exc, exc.__cause__, exc.__context__):
        if isinstance(cause, OSError) and cause.errno in WRITE_ERRNOS:
            return f"{cause.strerror} ({cause.filename or 'writing the job folder'})"
    text = str(exc)
    if isinstance(exc, RuntimeError) and ("file write failed" in text
                                          or "PytorchStreamWriter failed" in text):
        return f"writing a checkpoint failed ({text.splitlines()[0][:200]})"
    return None


def build_trainer(cfg: RunConfig, job_dir: Path, logger: TensorBoardLogger,
                  job_num: int | None, placement: Placement,
                  extra_callbacks: list[pl.Callback]) -> pl.Trainer:
    t = cfg.trainer
    recorder = ProgressRecorder(job_dir, after_checkpoint=cfg.logger.checkpoint_every_epoch)
    callbacks: list[pl.Callback] = [EpochTimer(), recorder, RandomState(),
                                    StopBetweenBatches(), *extra_callbacks]
    if cfg.logger.checkpoint_every_epoch:
        # One file, replaced atomically after every epoch. An interrupted job resumes from
        # here: the end of its last whole epoch (Lightning cannot resume reliably mid-epoch).
        # save_last alone would save nothing with save_top_k=0.
        callbacks.append(EpochCheckpoint(recorder, dirpath=job_dir / CHECKPOINT_DIR,
                                         filename="last", save_top_k=1, monitor=None,
                                         enable_version_counter=False))
    if cfg.model.ema_decay > 0:
        # validation and the final test use the averaged weights; checkpoints keep both
        callbacks.append(WarmupEMA(cfg.model.ema_decay))
    bar = t.enable_progress_bar and job_num is None  # a multirun shows its live view instead
    if bar:
        callbacks.append(RichProgressBar(leave=True))
    return pl.Trainer(
        accelerator=placement.accelerator, devices=placement.devices, precision=placement.precision,
        max_epochs=t.max_epochs, limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches if cfg.data.validates else 0,
        limit_test_batches=t.limit_test_batches,
        enable_progress_bar=bar, deterministic=t.deterministic,
        logger=logger, callbacks=callbacks, enable_model_summary=False,
        num_sanity_val_steps=0, log_every_n_steps=50, default_root_dir=str(job_dir),
        enable_checkpointing=cfg.logger.checkpoint_every_epoch,
        plugins=[AtomicCheckpointIO()],
        # inference mode makes tensors torch.compile must compile a graph apart for (the test
        # set's); under no_grad validation and test share one compiled graph
        inference_mode=not cfg.model.compile,
    )


def train_job(cfg: RunConfig, job_dir: Path, job_num: int | None = None,
              resume: bool = False, placement: Placement | None = None) -> dict[str, Any]:
    """Train and test one configuration; return the final metrics. Raises on failure.

    `resume`: continue from the folder's last checkpoint (job/folder.py decided it).
    `placement`: the device run_job chose (job/devices.py); checked here when not given.
    """
    quiet_lightning(cfg.trainer.lightning_info)
    placement = placement or place_job(cfg, None, None)
    governor = set_cpu_threads(cfg.trainer.num_threads)
    log.info("torch %d CPU threads", torch.get_num_threads())
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = MNISTDataModule(cfg.data, shuffle_seed=cfg.seed)
    datamodule.prepare_data()
    model = CNNClassifier(cfg.model, cfg.optim, cfg.scheduler)
    log.info("network: head=%s separable=%s filters=%d -> %d trainable parameters",
             cfg.model.head, cfg.model.separable, cfg.model.filters, model.num_parameters)

    resume_from = last_checkpoint(job_dir) if resume else None
    if resume_from is not None:
        check_checkpoint(resume_from, model, cfg)
        log.info("resuming from %s", resume_from)
    else:  # the project's files of an earlier attempt go, a user's stay (folder.py)
        removed = start_afresh(job_dir, cfg.logger.name)
        if removed:
            log.warning("starting afresh: removed the earlier attempt's %s from %s (other "
                        "files there stay)", describe_files(job_dir, removed), job_dir)

    # an epoch's scalars reach TensorBoard once its checkpoint is in place (EpochLogger)
    logger = EpochLogger(save_dir=str(job_dir), name=cfg.logger.name,
                         version=datamodule.dataset_label, default_hp_metric=False)
    if resume_from is None:
        write_session_start(logger, hparams_of(cfg, datamodule.dataset_label,
                                               model.num_parameters, placement.precision))
        logger.log_metrics({"params": float(model.num_parameters)}, step=0)
    divergence = DivergenceGuard(cfg.trainer.divergence_loss)
    pruning = trial_pruning(cfg, job_dir)  # None unless the job is a trial of a search
    job_callbacks: list[pl.Callback] = [divergence, JobSignature(job_signature(cfg))]
    trainer = build_trainer(cfg, job_dir, logger, job_num, placement,
                            job_callbacks + ([pruning] if pruning else [])
                            + ([governor] if governor else []))
    device = placement.record(trainer.strategy.root_device)
    warn_if_device_changed(job_dir, resume_from, device)
    write_status(job_dir, RUNNING, params=model.num_parameters,
                 dataset=datamodule.dataset_label, resumed_from=str(resume_from or ""),
                 error=None, **device,
                 dropout_masks=masks_used(cfg.model.dropout_masks, device["device"]))
    with stops_between_batches():
        trainer.fit(model, datamodule=datamodule,
                    ckpt_path=str(resume_from) if resume_from else None)
    if divergence.reason:
        write_session_end(logger, DIVERGED)
        raise DivergedError(divergence.reason)
    if pruning is not None and pruning.pruned is not None:
        write_session_end(logger, PRUNED)
        logger.finalize("success")
        raise pruning.pruned
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if device["device"] == "cpu":
        record_cpu_threads(job_dir, resume_from is not None,
                           governor.counts_used if governor else {torch.get_num_threads()})
    with stops_between_batches():
        trainer.test(model, datamodule=datamodule, verbose=False)
    test_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    final = {
        "val/acc_best": float(model.best_val_acc) if cfg.data.validates else None,
        "val/acc": fit_metrics.get("val/acc"),
        "test/acc": test_metrics.get("test/acc"), "test/loss": test_metrics.get("test/loss"),
        "epochs": trainer.current_epoch, "params": model.num_parameters,
        "epoch_seconds": fit_metrics.get("time/epoch_seconds"),
    }
    not_finite = [k for k in ("test/loss", "test/acc") if not math.isfinite(final[k] or 0.0)]
    if not_finite:
        write_session_end(logger, DIVERGED)
        raise DivergedError(f"{not_finite[0]} is {final[not_finite[0]]} on the test set: the "
                            f"trained network produces non-finite outputs; lower optim.lr")
    # before `finished` (run_job): a finished job always has its predictions file
    assert datamodule.loaded is not None
    write_status(job_dir, RUNNING, predictions=write_predictions(
        job_dir, model.test_predictions(), datamodule.loaded.test_images,
        datamodule.loaded.test_labels))
    write_session_end(logger, FINISHED)
    logger.finalize("success")
    return final


def warn_if_device_changed(job_dir: Path, resume_from: Path | None,
                           device: dict[str, str]) -> None:
    """One line when a resumed run continues on another kind of device than it started on:
    its numbers will not be those of the uninterrupted run."""
    status = (read_status(job_dir) or {}) if resume_from else {}
    before = status.get("device")
    if before and before != device["device"]:
        log.warning("this run started on %s and continues on %s (%s): its remaining epochs "
                    "compute other numbers than the uninterrupted run would have", before,
                    device["device"], device["device_name"])
    was = status.get("precision")
    if was and was != device["precision"]:
        log.warning("this run started in %s and continues in %s (trainer.precision=auto on "
                    "%s): its remaining epochs compute other numbers than the uninterrupted "
                    "run would have", was, device["precision"], device["device_name"])


def record_cpu_threads(job_dir: Path, resumed: bool, used: set[int]) -> None:
    """`cpu_threads`: every torch thread count the run trained with. CPU reductions are not
    bitwise stable across thread counts, so a run reproduces exactly only with one count."""
    before = (read_status(job_dir) or {}).get("cpu_threads") if resumed else None
    write_status(job_dir, RUNNING, cpu_threads=sorted(set(before or []) | used))


@dataclass(frozen=True)
class Ending:
    """What one way of ending does: `status` is what status.json records (None: nothing,
    the folder is not this job's to write); `single_exit` the exit code of a single run (0:
    it returns; None: the exception it ended with goes on unchanged, in a sweep too);
    `sweep_goes_on` whether a sweep carries on with its next job (False: it stops here);
    `checkpoint` whether the record names the checkpoint the job continues from."""

    status: str | None
    single_exit: int | None
    sweep_goes_on: bool
    checkpoint: bool = False


REFUSED, CTRL_C, SIGTERM, LAUNCHER_EXIT, REQUEUED, OUT_OF_REQUEUES, WRITE_FAILED, CRASHED = (
    "refused", "ctrl-c", "sigterm", "launcher exit", "requeued", "out of requeues",
    "write failed", "crashed")
# Every way a job ends -> what it records, a single run's exit code, whether the sweep
# goes on, whether the record names the checkpoint to continue from.
ENDINGS: dict[str, Ending] = {
    # trained and tested: its metrics are recorded; a single run prints them
    FINISHED: Ending(FINISHED, 0, True),
    # its folder changed since the sweep's check, or another process holds it
    REFUSED: Ending(None, 1, True),
    # Ctrl-C (or a SystemExit inside the training): JobInterrupted(130)
    CTRL_C: Ending(INTERRUPTED, 130, False, checkpoint=True),
    # SIGTERM (`kill`, `scancel`, a preempting scheduler): JobInterrupted(143)
    SIGTERM: Ending(INTERRUPTED, 143, False, checkpoint=True),
    # a launcher's own exit (submitit requeues a timed-out job with exit code 144)
    LAUNCHER_EXIT: Ending(INTERRUPTED, None, False),
    # recorded just before the launcher requeues the job (Slurm kills the process then)
    REQUEUED: Ending(INTERRUPTED, None, False, checkpoint=True),
    # submitit's time-limit warning with no requeue left: the next command continues it
    OUT_OF_REQUEUES: Ending(INTERRUPTED, 0, True, checkpoint=True),
    # the search stopped a losing trial: a final end of its own, not a failure
    PRUNED: Ending(PRUNED, 0, True),
    # the loss, or the trained network's test outputs, are not finite
    DIVERGED: Ending(DIVERGED, 1, True),
    # a config (a search trial's, or one Lightning refuses), data, checkpoint or device
    # problem its message names
    FAILED: Ending(FAILED, 1, True),
    # the folder cannot be written (a full disk): every later job would fail the same way
    WRITE_FAILED: Ending(FAILED, 1, False),
    # anything else: the traceback goes to the log
    CRASHED: Ending(FAILED, 1, True),
}


def _ending_of(exc: BaseException, job_dir: Path,
               run_cfg: RunConfig) -> tuple[str, str] | None:
    """Which of ENDINGS an exception out of the training is, and why in words (status.json's
    `error`; a pruned trial's: the line saying so); None for one that ends no job."""
    if isinstance(exc, SIGTERMException):
        return SIGTERM, "interrupted (SIGTERM)"
    if type(exc) is SystemExit and exc.code not in (None, 0, 1):
        return LAUNCHER_EXIT, f"stopped by its launcher (exit {exc.code})"
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return CTRL_C, "interrupted (SIGINT)"
    if isinstance(exc, TrialPruned):
        return PRUNED, (f"pruned after epoch {exc.epoch} of {run_cfg.trainer.max_epochs} "
                        f"({run_cfg.optimized_metric}={exc.value:.4f}): behind the search's "
                        f"other trials")
    if isinstance(exc, DivergedError):
        return DIVERGED, str(exc)
    if isinstance(exc, (ConfigError, DataError, CheckpointError, DeviceUnavailable)):
        return FAILED, str(exc)
    if isinstance(exc, MisconfigurationException):  # Lightning refused a trainer.* setting
        return FAILED, f"Lightning refused the settings: {exc}"
    if not isinstance(exc, Exception):
        return None
    if _out_of_requeues(exc):
        return OUT_OF_REQUEUES, f"interrupted (time limit: {exc})"
    failure = write_failure(exc)
    if failure:
        return WRITE_FAILED, f"cannot write to {job_dir}: {failure}"
    return CRASHED, f"{type(exc).__name__}: {exc}"


def _out_of_requeues(exc: BaseException) -> bool:
    """submitit's answer to Slurm's time-limit warning (USR2) when the job may not be
    requeued again (hydra.launcher.max_num_timeout used up): it raises UncompletedJobError
    inside the training. The job is then interrupted, with its checkpoint, not failed."""
    return (type(exc).__name__ == "UncompletedJobError"
            and type(exc).__module__.startswith("submitit"))


def _record(how: str, job_dir: Path, error: str, exc: BaseException | None = None
            ) -> Path | None:
    """Write status.json as ENDINGS[how] says; returns the checkpoint it names, if any.

    The records a resume relies on (interrupted with its checkpoint, pruned) raise when they
    cannot be written; a failure is recorded as far as the disk still allows, its own
    message being the one that matters."""
    ending = ENDINGS[how]
    if ending.checkpoint:
        return write_interrupted(job_dir, error)
    if how == PRUNED:
        write_status(job_dir, PRUNED, epoch=getattr(exc, "epoch", None), error=None)
    elif ending.status is not None:
        try:
            write_status(job_dir, ending.status, error=error)
        except OSError as write_exc:
            log.error("could not record the job's end in %s/status.json: %s", job_dir,
                      write_exc)
    return None


def _record_requeue(job_dir: Path) -> None:
    """The job's record, written just before its launcher requeues it. A finished record is
    left as it is."""
    if (read_status(job_dir) or {}).get("status") == RUNNING:
        _record(REQUEUED, job_dir, "interrupted (requeued by its launcher)")


def _end(how: str, job_dir: Path, multirun: bool, error: str,
         exc: BaseException | None = None) -> None:
    """End the job as ENDINGS[how] says: record it, say it, then stop the sweep where it
    does not go on (JobInterrupted or WriteFailed, with a single run's exit code; the
    launcher's own exception where there is none: run_job raises it), or end a single run
    with its exit code."""
    ending = ENDINGS[how]
    ckpt = _record(how, job_dir, error, exc)
    _say(how, job_dir, multirun, error, ckpt)
    if not ending.sweep_goes_on:
        if ending.single_exit is None:
            return
        if how == WRITE_FAILED:
            assert exc is not None
            raise WriteFailed(f"{job_dir} cannot be written: {write_failure(exc)}. Free space "
                              f"(or choose a folder on another disk) and run the same command "
                              f"again; finished jobs are kept.",
                              job_dir.parent if multirun else None) from None
        raise JobInterrupted(ending.single_exit) from None
    if not multirun and ending.single_exit:
        raise SystemExit(ending.single_exit) from None


def _say(how: str, job_dir: Path, multirun: bool, error: str, ckpt: Path | None) -> None:
    """The job's last words in its log (and a single run's on the terminal)."""
    if how in (CTRL_C, SIGTERM):
        again = (folder_override("hydra.sweep.dir", job_dir.parent) if multirun
                 else folder_override("hydra.run.dir", job_dir))
        where = (f"from {ckpt} (the end of its last whole epoch)" if ckpt
                 else "from the start (no epoch had finished)")
        log.error("job interrupted. Run the same command with %s to continue it %s.", again,
                  where)
    elif how == OUT_OF_REQUEUES:
        log.error("job interrupted at its time limit. Run the same command with %s to "
                  "continue it.", folder_override("hydra.sweep.dir", job_dir.parent))
    elif how == PRUNED:
        log.info("job %s", error)
        if not multirun:
            print(f"{error}\nfiles: {job_dir}")
    elif how == CRASHED:  # keep the evidence
        log.exception("job failed")
    elif how in (REFUSED, DIVERGED, FAILED):
        log.error("job %s: %s", how, error)
        if not multirun:
            print(f"Error: {error}", file=sys.stderr)


def _take_folder(job_dir: Path) -> str | None:
    """Lock the job's folder and remove what a writer that died mid-write left there; why
    the job is refused when another live process holds it."""
    try:
        note = acquire(job_dir, "job")
    except FolderLocked as exc:
        return str(exc)
    if note:
        log.warning(note)
    for stale in remove_stale_temporaries(job_dir):  # under the lock: no live writer
        log.warning("removed %s, a temporary file left by a process that ended mid-write",
                    stale)
    return None


def run_job(cfg: DictConfig, job_dir: Path, job_num: int | None = None,
            multirun: bool = False) -> float | None:
    """Run one job and return the metric to optimise. A finished job is skipped (resume);
    every other way it ends is one of ENDINGS, and is recorded and acted on as it says."""
    job_dir = Path(job_dir)
    try:
        run_cfg = validate(cfg)
    except ConfigError as exc:  # grid sweeps are checked up front; a search's trials are not
        if not multirun:
            raise
        job_dir.mkdir(parents=True, exist_ok=True)
        _end(FAILED, job_dir, multirun, str(exc))
        return None
    verdict = judge(job_dir, run_cfg, "hydra.sweep.dir" if multirun else "hydra.run.dir")
    if verdict.action == SKIP:
        log.info("%s %s: skipping (resume=true)", job_dir, verdict.detail)
        metrics = (read_status(job_dir) or {}).get("metrics") or {}
        return metrics.get(run_cfg.optimized_metric or "")
    # REFUSE was checked before the sweep; it comes here only if the folder changed since
    refusal = verdict.detail if verdict.action == REFUSE else _take_folder(job_dir)
    if refusal is not None:
        REFUSED_AT_START[job_dir.resolve()] = refusal
        _end(REFUSED, job_dir, multirun, refusal)
        return None
    # SIGTERM (`kill`, `scancel`, a preempting scheduler) stops the job like Ctrl-C does
    previous_handlers = install_stop_handlers(record_stop=lambda: _record_requeue(job_dir))
    placement = None
    try:
        write_status(job_dir, RUNNING, signature=job_signature(run_cfg), error=None)
        placement = place_job(run_cfg, job_num, job_dir.parent if multirun else None)
        with hints_off():  # job/quiet.py: warnings that are never the fix here
            metrics = train_job(run_cfg, job_dir, job_num, resume=verdict.action == RESUME,
                                placement=placement)
        write_status(job_dir, FINISHED, metrics=metrics, error=None)
    except BaseException as exc:
        how, error = _ending_of(exc, job_dir, run_cfg) or (None, "")
        if how is not None:
            _end(how, job_dir, multirun, error, exc)  # raises where the process stops
        if how is None or ENDINGS[how].single_exit is None:
            raise  # no job's ending, or a launcher's exit: it goes on unchanged
        return None
    finally:
        restore_stop_handlers(previous_handlers)
        if placement is not None:
            placement.release()
        release(job_dir)
    if not multirun:
        print_result(job_dir, metrics)
    value = metrics.get(run_cfg.optimized_metric or "")
    return None if value is None or not math.isfinite(value) else value


def print_result(job_dir: Path, metrics: dict[str, Any]) -> None:
    """A single run's last words: its result and where its files are."""
    val = metrics.get("val/acc_best")
    print(f"finished: test acc {metrics['test/acc']:.4f}"
          + (f", best val acc {val:.4f}" if val is not None else "")
          + f", {metrics['params']:,} parameters, {metrics['epochs']} epochs\n"
          f"files: {job_dir}  (tensorboard --logdir {job_dir}; "
          f"mnist-sweep-report {job_dir})")
