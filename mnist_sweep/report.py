"""Sweep report (minimal placeholder for the smoke test; replaced below)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mnist_sweep.status import read_status


@dataclass
class Report:
    rows: list = field(default_factory=list)
    unsuccessful: list[str] = field(default_factory=list)


def build_report(sweep_dir: Path) -> Report:
    rep = Report()
    for job in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir()):
        st = read_status(job) or {}
        rep.rows.append((job.name, st))
        if st.get("status") != "finished":
            rep.unsuccessful.append(job.name)
    return rep
