"""A run's settings as its records show them: which ones make a run what it is, which ones
name it, what each is called in the HParams tab, and how a value is written. The signature
of a job, the folder names, the live view, the report and TensorBoard all read these."""

from __future__ import annotations

from typing import Any

# Settings that do not change what a run computes: where the data lies, how the run is
# shown or resumed, the search's bookkeeping, and how and where the same computation runs
# (threads, layout, compilation, device). The last ones change the numbers in their last
# digits as any other machine does (CPU reductions are not bitwise stable across thread
# counts or kernels, GPUs use TF32); status.json records which were used (`device`,
# `cpu_threads`), and docs/troubleshooting.md says what is exact.
NOT_RESULT_KEYS = frozenset({
    "trainer.accelerator", "trainer.devices",
    "resume", "data.root", "data.download", "data.npm_fallback", "data.eval_batch_size",
    "trainer.enable_progress_bar", "trainer.num_threads", "trainer.lightning_info",
    "logger.name", "logger.checkpoint_every_epoch", "optimized_metric",
    "separable", "filters",  # copies of model.separable and model.filters
    "model.channels_last", "model.compile",  # speed switches: the same network and numbers
})
NOT_RESULT_PREFIXES = ("search_trial.",)

# Settings added after earlier folders were written, each with the value that computes what
# those folders' runs computed: a record without the key is read as having that value.
ADDED_SETTINGS: dict[str, Any] = {"model.ema_decay": 0.0, "model.dropout_masks": "torch"}

# Overrides that never tell two jobs apart, so they stay out of job folder names and the
# live view's labels: where the data is, how much is printed, which sweeper runs the jobs.
# conf/config.yaml gives Hydra the same list (hydra.job.config.override_dirname.exclude_keys;
# tests/test_config.py checks that they agree).
QUIET_OVERRIDES = ("data.root", "resume", "trainer.enable_progress_bar", "trainer.num_threads",
                   "trainer.lightning_info", "hparams_search", "race")

# The config groups that choose the sweeper (conf/race, conf/hparams_search, Hydra's own):
# they belong to the sweep's command line, not to a job; a job is run again without them.
SWEEPER_GROUPS = ("race", "hparams_search", "hydra/sweeper")


def chooses_sweeper(override: str) -> bool:
    """Whether an override (`race=seeds`) picks the sweeper rather than a job's setting."""
    return override.split("=", 1)[0].lstrip("+~") in SWEEPER_GROUPS


# HParams-tab name -> config key; `params` (trainable parameters) comes from the network.
HPARAM_KEYS = {
    "head": "model.head", "separable": "model.separable", "filters": "model.filters",
    "data": "data.name", "lr": "optim.lr", "optimizer": "optim.name",
    "scheduler": "scheduler.name", "batch_size": "data.batch_size",
    "epochs": "trainer.max_epochs", "seed": "seed", "dropout": "model.dropout",
    "weight_decay": "optim.weight_decay", "label_smoothing": "model.label_smoothing",
    "augment": "data.augment.enabled", "precision": "trainer.precision",
    "val_size": "data.val_size",
}


def as_typed(value: Any) -> str:
    """A value as one types it on the command line (`true`, `null`, `0.003`)."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)
