"""Lightning's informational lines off by default; `trainer.lightning_info=true` brings them back.

Every job of a sweep would otherwise repeat the hardware ("GPU available: ..."), an advert
("Tip: ... litlogger"), its own settings ("`Trainer(limit_train_batches=1.0)` was configured
so ...") and "`Trainer.fit` stopped: `max_epochs=N` reached". Lightning sends these at INFO
through a few module loggers, so raising those loggers to WARNING silences exactly them.
Lightning's warnings go through Python's `warnings` module (rank_zero_warn) or are logged at
WARNING and above, and are still shown.
"""

from __future__ import annotations

import logging

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
