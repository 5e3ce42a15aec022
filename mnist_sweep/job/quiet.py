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


@contextlib.contextmanager
def srun_hint_off() -> Iterator[None]:
    """For the job's training: no "The `srun` command is available on your system but is not
    used. HINT: ... prepend your python command with `srun`" warning.

    Lightning looks for Slurm whenever a Trainer starts and at every fit() and test() without
    a checkpoint, and on a machine with Slurm installed warns each time that the process was
    not started by srun. A job here trains on one device and is started by this command (or,
    on Slurm, by the submitit launcher, through srun), so the hint is never the fix. The
    warning is a PossibleUserWarning with that text, raised through `warnings`: it alone is
    ignored, and only while the job trains (warnings.catch_warnings restores the filters
    after); Lightning's other warnings still show.
    """
    from lightning_fabric.utilities.warnings import PossibleUserWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape(SRUN_HINT),
                                category=PossibleUserWarning)
        yield
