"""What a job folder holds, by name: every module that reads or writes one of these files
takes its name from here.

    <job>/status.json              the job's record: status, progress, outcome, metrics
    <job>/checkpoints/last.ckpt    the end of the last whole epoch, with the random state
    <job>/predictions.npz          each test image's predicted class, fingerprinted
    <job>/.hydra/config.yaml       the composed config (Hydra)
    <job>/.hydra/overrides.yaml    the job's overrides as typed (Hydra)
    <job>/<logger>/<dataset>/      TensorBoard event files and Lightning's hparams.yaml
"""

from __future__ import annotations

import re
from pathlib import Path

STATUS_FILE = "status.json"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT = Path(CHECKPOINT_DIR) / "last.ckpt"  # relative to the job folder
PREDICTIONS_FILE = "predictions.npz"
HYDRA_DIR = ".hydra"
CONFIG_FILE = Path(HYDRA_DIR) / "config.yaml"
OVERRIDES_FILE = Path(HYDRA_DIR) / "overrides.yaml"
EVENT_FILES = "events.out.tfevents.*"  # TensorBoard's, in <logger.name>/<dataset>/
HPARAMS_FILE = "hparams.yaml"  # Lightning's TensorBoardLogger writes it beside them
# temporary files of an atomic write (record/files.py) of the checkpoint and the status,
# named by the writer's pid
TEMPORARIES = {CHECKPOINT_DIR: re.compile(r"\.last\.ckpt\.(\d+)\.tmp"),
               ".": re.compile(r"\.status\.json\.(\d+)\.tmp")}


def last_checkpoint(job_dir: Path) -> Path:
    """Where the job in `job_dir` keeps the checkpoint it continues from (whether or not
    one has been written yet)."""
    return Path(job_dir) / CHECKPOINT
