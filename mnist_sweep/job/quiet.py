"""Lightning's informational lines off by default; `trainer.lightning_info=true` brings them back.

Every job of a sweep would otherwise repeat the hardware ("GPU available: ..."), an advert
("Tip: ... litlogger"), its own settings ("`Trainer(limit_train_batches=1.0)` was configured
so ...") and "`Trainer.fit` stopped: `max_epochs=N` reached". Lightning sends these at INFO
through a few module loggers, so raising those loggers to WARNING silences exactly them.
Lightning's warnings go through Python's `warnings` module (rank_zero_warn) or are logged at
WARNING and above, and are still shown.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator

# The loggers Lightning's rank_zero_info and device announcements write to (the standalone
# `pytorch_lightning` package and the unified `lightning` one).
INFO_LOGGERS = (
    "lightning_utilities.core.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "pytorch_lightning.utilities.rank_zero",
    "pytorch_lightning.accelerators.cuda",
    "lightning.fabric.utilities.rank_zero",
    "lightning.pytorch.utilities.rank_zero",
    "lightning.pytorch.accelerators.cuda",
)


def quiet_lightning(show_info: bool = False) -> None:
    """Hide Lightning's INFO lines, or show them again with `show_info=True`."""
    level = logging.NOTSET if show_info else logging.WARNING
    for name in INFO_LOGGERS:
        logging.getLogger(name).setLevel(level)


# Lightning's Slurm detection (lightning_fabric/plugins/environments/slurm.py) on a machine
# with Slurm installed, in a process that srun did not start
SRUN_HINT = "The `srun` command is available on your system but is not used"
# Warnings a job would give that are never the fix here (regular expressions, matched at
# the start of the message): the srun hint above; ModelCheckpoint's note that the folder it
# saves into is not empty, which on a resume is the job's own checkpoint folder; the note on
# fewer batches than the logging interval (tiny data, e.g. the tests'); a deprecation inside
# torch's pytree that Lightning triggers on recent torch releases.
NOT_THE_FIX = (
    re.escape(SRUN_HINT),
    r"Checkpoint directory .* exists and is not empty",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    r".*isinstance\(treespec, LeafSpec\)",
)


@contextlib.contextmanager
def hints_off() -> Iterator[None]:
    """For the job's training: none of the warnings in NOT_THE_FIX.

    Lightning looks for Slurm whenever a Trainer starts and at every fit() and test() without
    a checkpoint, and on a machine with Slurm installed warns each time that the process was
    not started by srun. A job here trains on one device and is started by this command (or,
    on Slurm, by the submitit launcher, through srun), so the hint is never the fix; nor are
    the others. They are ignored only while the job trains (warnings.catch_warnings restores
    the filters after, so nothing process-wide stays behind); Lightning's other warnings
    still show.
    """
    with warnings.catch_warnings():
        for message in NOT_THE_FIX:
            warnings.filterwarnings("ignore", message=message)
        yield
