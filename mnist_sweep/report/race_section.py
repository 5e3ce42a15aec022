"""The race section of a sweep's report, rendered from <sweep>/race.json.

race.json is written by the racing sweeper (mnist_sweep/sweep/race) after every round; it
is the one source of this section: the race's settings, each configuration's status and
its finished runs' values (the race's metric and test accuracy, per seed), why the race
stopped and its result in one sentence. This module reads it (also for the live view) and
renders: the final standing with each configuration's mean and 95% interval over its seeds,
every drop with its evidence, the result, and the runs used against the fixed design (every
configuration run to max_seeds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mnist_sweep.report.stats import t_interval

RACE_FILE = "race.json"
STATUS_ORDER = {"winner": 0, "equal": 1, "undecided": 2, "racing": 2, "dropped": 3}
STYLES = {"winner": "green", "equal": "green", "undecided": "yellow", "racing": "cyan",
          "dropped": "red"}


class RaceFileDamaged(RuntimeError):
    """A race.json that exists but cannot be read."""


def read_race(folder: Path) -> dict[str, Any] | None:
    """The race record of a sweep folder; None when it holds no race. Raises
    RaceFileDamaged for a file that is not a race record."""
    path = Path(folder) / RACE_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RaceFileDamaged(f"{path} is damaged ({exc})") from None
    if not (isinstance(record, dict) and isinstance(record.get("configurations"), list)):
        raise RaceFileDamaged(f"{path} is damaged (no `configurations` list)")
    return record


def read_race_or_none(folder: Path) -> dict[str, Any] | None:
    """For displays (the live view): a damaged file reads as no race."""
    try:
        return read_race(folder)
    except RaceFileDamaged:
        return None


# ---- numbers ---------------------------------------------------------------------------

def _values(config: dict[str, Any], key: str) -> list[float]:
    """The values (fractions) of the runs the race counts for this configuration."""
    return [float(r[key]) for r in config.get("runs", [])
            if r.get("counted") and isinstance(r.get(key), (int, float))]


def mean_cell(values: list[float]) -> str:
    """`99.41 +/- 0.17` (percent, 95% t interval over seeds), or the single value."""
    if not values:
        return "-"
    mean = sum(values) / len(values)
    interval = t_interval(values)
    if interval is None:
        return f"{100 * mean:.2f}" + (" +/- 0.00" if len(values) > 1 else "")
    return f"{100 * mean:.2f} +/- {100 * (interval[1] - interval[0]) / 2:.2f}"


def metric_cell(config: dict[str, Any]) -> str:
    """The race's own mean and 95% interval (points, over the seeds it counts)."""
    mean, low, high = config.get("mean"), config.get("low"), config.get("high")
    if not isinstance(mean, (int, float)):
        return "-"
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        return f"{mean:.2f} +/- {(high - low) / 2:.2f}"
    return f"{mean:.2f}" + (" +/- 0.00" if int(config.get("seeds_counted") or 0) > 1 else "")


def standing(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The configurations in final order: winner, equal, still racing, then the dropped
    ones (latest drop first); by mean within each."""
    def key(c: dict[str, Any]) -> tuple[int, float, float]:
        mean = c.get("mean")
        mean = float(mean) if isinstance(mean, (int, float)) else float("-inf")
        return (STATUS_ORDER.get(str(c.get("status")), 4), -float(c.get("dropped_after") or 0),
                -mean)
    return sorted(record["configurations"], key=key)


def metric_name(record: dict[str, Any]) -> str:
    return str(record.get("metric", "val/acc_best"))


def selected_on_test(record: dict[str, Any]) -> bool:
    return metric_name(record).startswith("test/")


def rows(record: dict[str, Any]) -> list[list[str]]:
    beside = metric_name(record) != "test/acc"
    out = []
    for c in standing(record):
        out.append([str(c["name"]), str(c.get("status_text") or c.get("status")),
                    str(c.get("seeds_counted", len(_values(c, "value")))), metric_cell(c),
                    *([mean_cell(_values(c, "test"))] if beside else [])])
    return out


def header(record: dict[str, Any]) -> list[str]:
    metric = metric_name(record)
    return ["configuration", "status", "seeds", f"{metric} (%, 95%)",
            *(["test/acc (%, 95%)"] if metric != "test/acc" else [])]


def drops(record: dict[str, Any]) -> list[str]:
    """One line per dropped configuration, with the evidence the race recorded."""
    lines = []
    for c in standing(record):
        if c.get("status") == "dropped":
            lines.append(f"{c['name']}: {c.get('evidence') or c.get('status_text')}")
    return lines


def settings_line(record: dict[str, Any]) -> str:
    s = record.get("settings") or {}
    parts = [f"{k}={s[k]}" for k in ("min_seeds", "max_seeds", "alpha", "equivalence",
                                     "max_runs") if k in s]
    return (f"Raced on {metric_name(record)} over seeds 1, 2, 3, ... ({', '.join(parts)}); "
            f"test accuracy is shown beside it.")


def runs_line(record: dict[str, Any]) -> str:
    used, fixed = record.get("runs_launched"), record.get("runs_fixed_design")
    counted = record.get("runs_counted")
    n = len(record["configurations"])
    max_seeds = (record.get("settings") or {}).get("max_seeds")
    text = f"Runs used: {used}"
    if fixed:
        share = f", {100 * used / fixed:.0f}%" if isinstance(used, int) else ""
        text += (f" against the fixed design's {fixed} (all {n} configurations to "
                 f"{max_seeds} seeds{share})")
    if counted is not None and counted != used:
        text += f"; {counted} of them counted by the race"
    return text + "."


def stop_line(record: dict[str, Any]) -> str:
    state = "Over" if record.get("over") else "Not over"
    reason = record.get("stop_reason")
    return f"{state}: {reason}." if reason else f"{state}."


def result_line(record: dict[str, Any]) -> str:
    """The race's result in one sentence, with the metric it was decided on."""
    result = str(record.get("result") or "-")
    return f"on {metric_name(record)}, {result}" + ("" if result.endswith(".") else ".")


TEST_WARNING = ("Selected on the test set (hydra.sweeper.metric=test/acc): the test accuracy "
                "of the configuration the race kept is biased upward; confirm it on data the "
                "race did not see.")


# ---- rendering -------------------------------------------------------------------------

def race_markdown(record: dict[str, Any], level: int = 2) -> list[str]:
    """The race section of summary.md."""
    h = "#" * level
    lines = [f"{h} Race", ""]
    if selected_on_test(record):
        lines += [f"**{TEST_WARNING}**", ""]
    lines += [f"**Result:** {result_line(record)}", "", settings_line(record), ""]
    head = header(record)
    lines += ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
              for row in rows(record)]
    dropped = drops(record)
    if dropped:
        lines += ["", "Drops:", "", *(f"- {d}" for d in dropped)]
    lines += ["", stop_line(record), "", runs_line(record)]
    return lines


def print_race(console: Console, record: dict[str, Any]) -> None:
    """The race section in the terminal, after the report's tables."""
    soft = not console.is_terminal
    console.print()
    console.print(Text("Race", style="bold"))
    if selected_on_test(record):
        console.print(Text(TEST_WARNING, style="bold yellow"), soft_wrap=soft)
    console.print(settings_line(record), markup=False, highlight=False, soft_wrap=soft)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for i, name in enumerate(header(record)):
        table.add_column(name, justify="right" if i >= 2 else "left")
    for c, row in zip(standing(record), rows(record), strict=True):
        table.add_row(*map(Text, row), style=STYLES.get(str(c.get("status"))))
    if not console.is_terminal:
        console.width = max(console.width, Console(width=100_000).measure(table).maximum)
    console.print(table)
    for line in drops(record):
        console.print(line, markup=False, highlight=False, soft_wrap=soft)
    for line in (stop_line(record), runs_line(record), f"Result: {result_line(record)}"):
        console.print(line, markup=False, highlight=False, soft_wrap=soft)


def race_section_markdown(folder: Path) -> str:
    """The section as text to append to summary.md ('' when the folder holds no race; a
    damaged race.json is named, never read)."""
    try:
        record = read_race(folder)
    except RaceFileDamaged as exc:
        return f"\n## Race\n\n{exc}: the race's state is not shown.\n"
    return "" if record is None else "\n" + "\n".join(race_markdown(record)) + "\n"


def print_race_section(console: Console, folder: Path) -> None:
    try:
        record = read_race(folder)
    except RaceFileDamaged as exc:
        console.print(f"{exc}: the race's state is not shown.", markup=False, highlight=False)
        return
    if record is not None:
        print_race(console, record)


def live_lines(folder: Path) -> list[str]:
    """One short line per configuration for the live view: status, seeds, mean so far."""
    record = read_race_or_none(folder)
    if record is None:
        return []
    lines = []
    for c in record["configurations"]:
        seeds = int(c.get("seeds_counted") or 0)
        mean = c.get("mean")
        shown = f", mean {mean:.2f}" if isinstance(mean, (int, float)) else ""
        lines.append(f"race: {c['name']}: {c.get('status_text') or c.get('status')} "
                     f"({seeds} seed{'s' * (seeds != 1)}{shown})")
    if record.get("over") and record.get("result"):
        lines.append(f"race over: {result_line(record)}")
    return lines
