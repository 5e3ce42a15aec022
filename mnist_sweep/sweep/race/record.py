"""<sweep dir>/race.json: the race's settings and state, replaced atomically after every
round (a temporary file, then os.replace), so a reader (the report, the live view, a
person) always finds a whole file, also after Ctrl-C or SIGTERM.

Means and intervals are in percentage points over the seeds the race counts (racing.py);
each run's `value` and `test` are the accuracies its status.json records (fractions)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mnist_sweep.record.files import write_atomic
from mnist_sweep.report.race_section import RACE_FILE
from mnist_sweep.report.racing import RaceState
from mnist_sweep.sweep.race import adapt
from mnist_sweep.sweep.race.configs import Configuration
from mnist_sweep.sweep.race.runs import RaceRun

VERSION = 1


def race_record(state: RaceState, configs: list[Configuration],
                runs: dict[tuple[str, int], RaceRun], metric: str,
                stop_note: str | None, most_runs: int,
                round_jobs: list[int]) -> dict[str, Any]:
    """`round_jobs`: the job numbers of the round being launched (empty between rounds),
    so that a live view knows the runs of the round that have not started yet."""
    configurations = []
    for config in configs:
        mine = sorted((r for (name, _), r in runs.items() if name == config.name),
                      key=lambda r: r.seed)
        counted = state.configs[config.name].seeds
        configurations.append({
            "name": config.name,
            "overrides": list(config.overrides),
            **adapt.config_facts(state, config.name),
            "runs": [{"seed": r.seed, "job": r.folder.name if r.folder != Path() else None,
                      "status": r.status, "result": r.result, "counted": r.result
                      and r.seed <= counted, "value": r.value, "test": r.test,
                      "error": None if r.result else r.error}
                     for r in mine if r.status is not None],
        })
    launched = sum(r.status is not None for r in runs.values())
    return {
        "version": VERSION,
        "metric": metric,
        "selected_on_test": metric.startswith("test/"),
        "settings": adapt.settings_dict(state.settings),
        "over": state.over,
        "stop_reason": stop_note or state.reason,
        "result": state.result(),
        "runs_launched": launched,
        "runs_counted": state.runs_used,
        "runs_fixed_design": state.runs_fixed,
        "runs_most": most_runs,
        "round_jobs": list(round_jobs),
        "configurations": configurations,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def write_race(sweep_dir: Path, record: dict[str, Any]) -> Path:
    """Replace race.json atomically (record/files.py: temporary file, fsync, os.replace)."""
    return write_atomic(Path(sweep_dir) / RACE_FILE,
                        json.dumps(record, indent=2, allow_nan=False) + "\n")
