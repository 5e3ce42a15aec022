"""Rendering runs: the terminal table, Markdown documents and CSV records.

Every table names its runs by what differs between them and lists the settings they share
once above it (stats.py). Cells are never cut inside a word: Markdown rows are single lines,
and a terminal table printed to a file or a pipe is given the width its longest words need.
"""

from __future__ import annotations

import csv
import io
import re
import shlex
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mnist_sweep.record.files import write_atomic
from mnist_sweep.record.settings import as_typed
from mnist_sweep.report.compare import (
    BETTER,
    MAX_SEEDS,
    ONE_PAIR,
    PAIRED,
    TIE,
    UNTESTED,
    WELCH,
    WORSE,
    Comparison,
    SeedLevel,
    WhatMatters,
)
from mnist_sweep.report.read import CHOICES, DAMAGED, Run, job_label
from mnist_sweep.report.stats import (
    Group,
    Results,
    images_tested,
    name_of,
    shared_overrides,
    substitute_datasets,
    wilson,
)

COLUMNS = ["job", *CHOICES, "params", "val_acc_best", "test_acc", "test_acc_low",
           "test_acc_high", "test_images", "test_loss", "epochs_completed", "sec_per_epoch",
           "status", "error", "command", "settings", "device"]
LONGEST_NAME = 100  # characters of a configuration's name in the results' first table
# A search's floats (dropout=0.01915194503788923) would make every label a line long.
LONG_NUMBER = re.compile(r"(?<![\w.])\d+\.\d{4,}(?:e-?\d+)?")


def short_numbers(label: str) -> str:
    """A label with its long numbers to 3 significant digits, for charts and names."""
    return LONG_NUMBER.sub(lambda m: f"{float(m.group()):.3g}", label)


# ---- cells -----------------------------------------------------------------------------

def num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def std(value: float | None) -> str:
    """Empty for a single run: not a dash, which would read as 'missing'."""
    return "" if value is None else f"{value:.4f}"


def percent(value: float | None, interval: tuple[float, float] | None = None) -> str:
    """`99.41 +/- 0.05`: a fraction in percent, +/- the larger side of its interval (a
    Wilson interval is not symmetric near 100%), in points."""
    if value is None:
        return "-"
    if interval is None:
        return f"{100 * value:.2f}"
    half = max(value - interval[0], interval[1] - value, 0.0)
    return f"{100 * value:.2f} +/- {100 * half:.2f}"


def run_acc(run: Run) -> str:
    return percent(run.test_acc, wilson(run))


def wilson_line(runs: list[Run]) -> str:
    """Said once above a table of runs: what its +/- is."""
    sizes = sorted({n for r in runs if r.test_acc is not None and (n := images_tested(r))})
    over = (" and ".join(f"{n:,}" for n in sizes) + " test images") if sizes else "the test set"
    return (f"Accuracies in percent. test acc +/-: the 95% Wilson interval of the run's test "
            f"accuracy over its {over} (the larger side: the interval is not symmetric near "
            f"100%); it is the test set's share of the noise only, a seed's share comes on "
            f"top.")


def integer(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def code(text: str | None) -> str:
    return f"`{text}`" if text else "-"


def seed(run: Run) -> str:
    return as_typed(run.config["seed"]) if "seed" in run.config else "-"


def outcome(run: Run) -> str:
    """The status cell: the status, why it did not finish, and any damaged file."""
    if run.status == "pruned":
        text = f"pruned after epoch {run.epochs_completed}"
    elif run.finished or not run.error:
        text = run.status
    else:
        text = f"{run.status}: {run.error}"
    notes = [d for d in run.damage if run.status != DAMAGED or d not in (run.error or "")]
    return "; ".join([text, *notes])


def error_cell(run: Run) -> str | None:
    """The CSV's error column: why the run did not finish, and any damaged file."""
    notes = [run.error] if run.error else []
    notes += [d for d in run.damage if d not in (run.error or "")]
    return "; ".join(notes) or None


def record(run: Run) -> dict[str, Any]:
    """The CSV row of a run: one column per COLUMNS entry."""
    return {"job": run.job, **{name: run.config.get(key) for name, key in CHOICES.items()},
            "params": run.params, "val_acc_best": run.val_acc_best, "test_acc": run.test_acc,
            "test_acc_low": (wilson(run) or (None, None))[0],
            "test_acc_high": (wilson(run) or (None, None))[1],
            "test_images": images_tested(run) if run.test_acc is not None else None,
            "test_loss": run.test_loss, "epochs_completed": run.epochs_completed,
            "sec_per_epoch": run.sec_per_epoch, "status": run.status,
            "error": error_cell(run), "command": run.command,
            "settings": " ".join([*(f"{k}={as_typed(v).replace(' ', '')}"  # one token each
                                    for k, v in sorted(run.config.items())),
                                  *([] if run.all_settings else ["..."])]),
            "device": run.device}


def dataset_note(runs: list[Run], markdown: bool = False) -> str | None:
    """Said wherever results are shown: which runs did not train on a full data set."""
    substitutes = substitute_datasets(runs)
    if not substitutes:
        return None
    parts = []
    for name, subset in substitutes.items():
        which = ("all runs" if len(subset) == len(runs)
                 else "job " + ", ".join(job_label(r.job) for r in subset))
        parts.append(f"{which} trained on {code(name) if markdown else name} "
                     f"({substitute_size(name)})")
    return ("Not full MNIST: " + "; ".join(parts) + "; do not compare these numbers with "
            "full-MNIST ones.")


def substitute_size(label: str) -> str:
    """What a data set that is not a full one holds, from its label."""
    sized = re.search(r"_train(\d+)_test(\d+)$", label)
    if sized:
        return (f"{int(sized.group(1)):,} training and {int(sized.group(2)):,} test images, "
                f"not the official sizes")
    return "the offline sample: 8,000 training and 2,000 test images"


def device_note(runs: list[Run], markdown: bool = False) -> str | None:
    """Said where runs trained on different devices: their seconds per epoch do not compare
    (and a GPU's TF32 convolutions give other last digits than a CPU)."""
    by_device: dict[str, list[Run]] = {}
    for run in runs:
        if run.device:
            by_device.setdefault(run.device, []).append(run)
    if len(by_device) < 2:
        return None
    parts = [f"job {', '.join(job_label(r.job) for r in subset)} on "
             f"{code(name) if markdown else name}" for name, subset in by_device.items()]
    return ("Trained on different devices: " + "; ".join(parts)
            + ". Their seconds per epoch do not compare.")


def common_line(common: list[str], runs: list[Run], markdown: bool = False) -> str:
    """What the runs share (stats.common_settings), said of the runs whose settings are
    known only: a run whose config cannot be read is named as unknown instead."""
    known = [r for r in runs if r.settings_known]
    unknown = [job_label(r.job) for r in runs if not r.settings_known]
    if not unknown:
        what = f"Common to all {len(runs)} runs: " if len(runs) > 1 else "Settings: "
    elif len(known) > 1:
        what = f"Common to the {len(known)} runs whose settings are known: "
    else:
        what = "Settings of the run whose settings are known: " if known else ""
    listed = (code(" ".join(common)) if markdown else " ".join(common)) if common else "-"
    rest = ("every other setting at its default" if all(r.all_settings for r in known)
            else "the records hold no other settings: see each run's command")
    line = f"{what}{listed}; {rest}" if known else ""
    if unknown:
        one = len(unknown) == 1
        line += (("; " if line else "") + f"the settings of job{'' if one else 's'} "
                 f"{', '.join(unknown)} are unknown (see {'its row' if one else 'their rows'})")
    return line[0].upper() + line[1:]


# ---- Markdown --------------------------------------------------------------------------

def md_row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def md_table(header: list[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    return [md_row(header), md_row("---" for _ in header), *map(md_row, rows)]


def summary_markdown(title: str, runs: list[Run], labels: list[str], common: list[str],
                     source: str, plots: bool = True, matters: WhatMatters | None = None) -> str:
    """summary.md of one sweep (or one run): its table, what the runs share, what matters,
    its plots."""
    done = sum(r.finished for r in runs)
    lines = [f"# {title}", "",
             f"{len(runs)} job{'s' * (len(runs) != 1)}, {done} finished, {source}. "
             f"Sorted by test accuracy; "
             f"`config` is what differs between the jobs, `command` re-runs one job.", "",
             common_line(common, runs, markdown=True), ""]
    for note in (dataset_note(runs, markdown=True), device_note(runs, markdown=True)):
        lines += [note, ""] if note else []
    lines += [wilson_line(runs), ""]
    lines += md_table(
        ["job", "config", "params", "best val acc", "test acc", "test loss", "epochs",
         "s/epoch", "status", "command"],
        ([job_label(r.job), label, integer(r.params), percent(r.val_acc_best), run_acc(r),
          num(r.test_loss), r.epochs_completed, num(r.sec_per_epoch, 2), outcome(r),
          code(r.command)] for r, label in zip(runs, labels, strict=True)))
    if matters is not None:
        lines += ["", *matters_markdown(matters)]
    if plots:
        lines += ["", "![validation accuracy per epoch](val_acc.png)", "",
                  "![test accuracy vs parameters](acc_vs_params.png)"]
    return "\n".join([*lines, ""])


def _group_cells(group: Group, name: str) -> list[str]:
    done = group.finished
    test_mean, test_std = group.stats("test_acc")
    val_mean, val_std = group.stats("val_acc_best")
    seconds = group.stats("sec_per_epoch")[0]
    params = sorted({r.params for r in done if r.params is not None})
    return [name, str(len(done)), ", ".join(map(seed, done)),
            percent(test_mean, group.interval("test_acc")), points(test_std),
            percent(val_mean, group.interval("val_acc_best")), points(val_std),
            ", ".join(map(integer, params)) or "-",
            num(seconds, 2), code(shared_overrides(group) or None)]


def points(std_value: float | None) -> str:
    """A standard deviation of fractions, in points; empty for a single run."""
    return "" if std_value is None else f"{100 * std_value:.2f}"


def _cut(text: str, limit: int = LONGEST_NAME) -> str:
    """At most `limit` characters, cut between words."""
    if len(text) <= limit:
        return text
    words, out = text.split(), ""
    for word in words:
        if len(out) + len(word) + 1 + 4 > limit:
            break
        out = f"{out} {word}".strip()
    return f"{out} ..."


def group_names(results: Results) -> list[str]:
    """A short name per group: its preset (`experiment=...` with what its runs changed)
    where it has one; else what tells it from the document's other groups when that is
    short; else what tells it from the other groups of its own sweep, after the sweep's
    name. At most LONGEST_NAME characters; the full settings stay in the CSV."""
    from mnist_sweep.report.stats import describe

    by_sweep: dict[str, list[Group]] = {}
    for g in results.groups:
        by_sweep.setdefault(str(g.runs[0].sweep), []).append(g)
    def within_sweep(g: Group) -> str:
        sweep = g.runs[0].sweep
        mates = by_sweep[str(sweep)]
        if len(mates) == 1:
            return f"sweep {Path(sweep).name}"
        inside = describe([m.runs[0] for m in mates], skip={"seed"})[mates.index(g)]
        return f"{Path(sweep).name}: {short_numbers(inside)}"

    names = []
    for g in results.groups:
        shared = shared_overrides(g)
        if any(o.startswith("experiment=") for o in shared.split()):
            names.append(_cut(shared))
        else:
            names.append(_cut(g.label) if len(g.label) <= LONGEST_NAME else within_sweep(g))
    # a name two groups share (a search's trials, all of one preset) says what differs
    # inside their sweep instead
    repeated = {n for n in names if names.count(n) > 1}
    names = [_cut(within_sweep(g)) if n in repeated else n
             for n, g in zip(names, results.groups, strict=True)]
    return [_cut(f"{n} ({Path(g.runs[0].sweep).name})") if names.count(n) > 1 else n
            for n, g in zip(names, results.groups, strict=True)]


def results_markdown(results: Results, command: str, source: str,
                     matters: WhatMatters | None = None) -> str:
    """The document over several sweeps: mean and interval over seeds, what matters, then
    every run."""
    names = group_names(results)
    lines = [
        "# Results", "",
        f"Generated by `{command}` from {source} of {len(results.runs)} runs; do not edit by "
        f"hand. Only finished runs count. `config` names each configuration by its preset "
        f"where it has one, else by the settings that differ between them (a setting a run "
        f"does not use, such as the augmentation sizes without augmentation, is left out); "
        f"every setting of every run is in the CSV beside this file.", "",
        common_line(results.common, results.runs, markdown=True), ""]
    for note in (dataset_note(results.runs, markdown=True),
                 device_note(results.runs, markdown=True)):
        lines += [note, ""] if note else []
    lines += ["## Mean over seeds", "",
              "Accuracies in percent, std in points. mean +/-: the 95% t interval of the "
              "mean over the configuration's seeds (Student's t, n - 1 degrees of freedom); "
              "for a configuration of one run, the 95% Wilson interval of its test accuracy "
              "over its test images. std: the sample standard deviation over seeds (n - 1), "
              "empty for a single run.", ""]
    # pruned search trials are counted in one line under each table, not listed as
    # configurations without a finished run
    shown = [(g, n) for g, n in zip(results.groups, names, strict=True) if not g.pruned]
    pruned = pruned_line([g for g in results.groups if g.pruned])
    lines += md_table(
        ["config", "n", "seeds", "test acc mean", "test acc std", "best val acc mean",
         "best val acc std", "params", "mean s/epoch", "overrides shared by its runs"],
        [_group_cells(g, n) for g, n in shown])
    lines += ["", pruned] if pruned else []
    if matters is not None:
        lines += ["", *matters_markdown(matters, level=2)]
    lines += ["", "## Runs", "", wilson_line(results.runs), ""]
    lines += md_table(
        ["config", "seed", "status", "test acc", "best val acc", "params", "s/epoch",
         "command"],
        ([n, seed(r), outcome(r), run_acc(r), percent(r.val_acc_best),
          integer(r.params), num(r.sec_per_epoch, 2), code(r.command)]
         for g, n in shown for r in g.runs))
    lines += ["", pruned] if pruned else []
    return "\n".join([*lines, ""])


def pruned_line(groups: list[Group]) -> str | None:
    """`13 pruned search trials (under10k_search), not in this table: ...`: the trials a
    search stopped early, in one line, with when they were stopped and how far they got."""
    runs = [r for g in groups for r in g.runs]
    if not runs:
        return None
    sweeps = ", ".join(dict.fromkeys(Path(r.sweep).name for r in runs))
    when = [f"{e} ({c}{' trials' * (i == 0 and c != 1)}{' trial' * (i == 0 and c == 1)})"
            for i, (e, c) in enumerate(sorted(Counter(r.epochs_completed for r in runs)
                                             .items()))]
    epochs = ", ".join(when[:-1]) + " or " + when[-1] if len(when) > 1 else when[0]
    vals = [r.val_acc_best for r in runs if r.val_acc_best is not None]
    reached = (f"; best val acc when stopped {percent(min(vals))} to {percent(max(vals))}"
               if vals else "")
    many = len(runs) != 1
    return (f"{len(runs)} pruned search trial{'s' * many} ({sweeps}), not in this table: "
            f"pruned after epoch {epochs}{reached}. Their settings and commands are in the "
            f"CSV beside this file.")


def results_records(results: Results) -> Iterable[dict[str, Any]]:
    return ({"sweep": str(r.sweep), "config": g.label, **record(r)}
            for g in results.groups for r in g.runs)


# ---- what matters ----------------------------------------------------------------------

RACE_MAX_SEEDS = 10  # the racing sweeper's default max_seeds (conf/hydra/sweeper/race.yaml)
ONE_SEED_EACH = "1 seed each: run seed=1,2,3, or race=seeds"
ONE_RUN_A_SIDE = "one run on a side: run seed=1,2,3 for both values, or race=seeds"
NOT_EVIDENCE = "that is not evidence about the configuration"


def matters_intro(matters: WhatMatters) -> str:
    family = matters.family_size
    return (
        "Each value of a swept setting against a reference value (the default where it was "
        "swept, else the first value), in points of test accuracy (value minus reference), "
        "over runs that differ in that setting alone. Each comparison gets one verdict about "
        "the configuration, from the seeds: `better` or `worse` (at 5%), `not "
        "distinguishable`, or `not tested` where one seed per value leaves the seed's share "
        "of the noise unknown; what to run is said where the seeds did not settle it. Over "
        "seeds: runs paired by seed within each combination of the other settings, the pairs "
        "of all combinations combined (`all`, the row that carries the comparison's verdict) "
        "in a t-test of the mean difference (Welch's test where no seeds match). p: "
        f"Holm-adjusted within its family: the section's {family} "
        f"comparison{'s' * (family != 1)} tested over seeds (the verdicts), the combinations "
        "of one comparison, and the image-level pairs of one comparison. Each interval is at "
        "the confidence level Holm's procedure tested its row at, 1 - 0.05/k (k: the rows of "
        "its family not yet rejected at its step; a row not rejected, and every row after "
        "it, at the level of the first one not rejected), so an interval excludes 0 exactly "
        "when p < 0.05. On the same test images: McNemar's exact test on the images one run "
        "gets right and the other wrong, per pair of runs: whether these two trained networks "
        "differ on these test images, which is evidence about the two networks, not about "
        "the configuration (another seed can reverse it). `seeds to resolve`: seeds per "
        "value that would detect a true difference of the size seen with 80% power, from the "
        "spread the seeds showed.")


def signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def interval_cell(low: float | None, high: float | None,
                  confidence: float | None = None) -> str:
    if low is None or high is None:
        return "-"
    level = "" if confidence is None else f" at {level_text(confidence)}"
    return f"[{bound(low)}, {bound(high)}]{level}"


def bound(value: float) -> str:
    """An interval's end in points: 2 decimals, 3 where 2 would round it to 0.00, so its
    sign (which side of 0 it is on) stays readable."""
    return f"{value:+.2f}" if round(abs(value), 2) or value == 0 else f"{value:+.3f}"


def level_text(confidence: float) -> str:
    """0.99285 -> `99.29%`, 0.95 -> `95%`."""
    return f"{100 * confidence:.4g}%"


def p_cell(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.2g}" if p >= 0.001 else "< 0.001"


def runs_cell(row: SeedLevel) -> str:
    if row.method == PAIRED:
        return f"{row.n} pairs by seed"
    if row.method == WELCH:
        if row.p is None:
            return f"{row.n} run on a side, no seeds in common: no seed spread"
        return f"{row.n}+ runs each, unpaired"
    if row.method == ONE_PAIR:
        return "1 pair: no seed spread"
    return f"{row.n} combinations"


def seeds_cell(row: SeedLevel) -> str:
    if row.seeds_needed is None:
        return "" if row.verdict in (BETTER, WORSE) else "-"
    if row.seeds_needed > MAX_SEEDS:
        return f"more than {MAX_SEEDS:,}"
    return str(row.seeds_needed)


def what_to_run(row: SeedLevel) -> str | None:
    """Where the seeds did not settle a comparison: the seeds that would, as overrides."""
    if row.verdict == UNTESTED:
        if row.one_seed:
            return ONE_SEED_EACH if row.method == ONE_PAIR else ONE_RUN_A_SIDE
        return "run more seeds, or race=seeds"  # no spread among the seeds' differences
    if row.verdict != TIE or row.seeds_needed is None:
        return None
    n = row.seeds_needed
    if n > MAX_SEEDS:
        return (f"more than {MAX_SEEDS:,} seeds per value would be needed to resolve a "
                f"difference this small")
    race = "race=seeds" + (f" hydra.sweeper.max_seeds={n}" if n > RACE_MAX_SEEDS else "")
    return (f"{n} seeds per value would resolve a difference this size (80% power): run "
            f"seed=range(1,{n + 1}), or {race}")


def image_evidence(comparison: Comparison) -> str | None:
    """What the image-level tests say, worded as evidence about the trained networks."""
    rows = comparison.images
    if not rows:
        return None
    differ = comparison.images_differ
    if len(rows) == 1:
        p = p_cell(rows[0].p_holm)
        if differ:
            return (f"Image level: these two trained networks differ on these test images "
                    f"(McNemar p {p}); {NOT_EVIDENCE}.")
        return (f"Image level: these two trained networks are not distinguishable on these "
                f"test images (McNemar p {p}).")
    if differ:
        name = name_of(comparison.key)
        ahead = sum(r.diff > 0 for r in differ)
        ps = sorted(r.p_holm for r in differ)
        span = p_cell(ps[0]) + (f" to {p_cell(ps[-1])}" if len(ps) > 1 else "")
        return (f"Image level: {len(differ)} of {len(rows)} pairs of trained networks differ "
                f"on these test images (McNemar p {span}, Holm over the {len(rows)} pairs; "
                f"{name}={comparison.value} ahead in {ahead}, {name}={comparison.reference} "
                f"in {len(differ) - ahead}); {NOT_EVIDENCE}.")
    smallest = min(r.p_holm for r in rows)
    return (f"Image level: none of the {len(rows)} pairs of trained networks differ "
            f"measurably on these test images (smallest McNemar p {p_cell(smallest)}, Holm "
            f"over the {len(rows)} pairs).")


def verdict_parts(comparison: Comparison, family: int) -> tuple[str, str, str]:
    """(what is compared, its one verdict, the rest in words) of one comparison."""
    row, name = comparison.answer, name_of(comparison.key)
    what = f"{name}={comparison.value} against {name}={comparison.reference}"
    runs = runs_cell(row)
    if row.verdict == UNTESTED:
        source = ("1 pair of runs (one seed)" if row.method == ONE_PAIR
                  else f"{row.n} run on a side and no seeds in common" if row.one_seed
                  else f"every one of {row.n} pairs by seed alike")
        seeds = f"{signed(row.diff)} points from {source}, with no seed spread to test it against."
    else:
        over = (f"Holm over the {family} comparisons tested over seeds" if family > 1
                else "the only comparison tested over seeds: nothing to adjust")
        seeds = (f"{signed(row.diff)} points over {runs}, interval "
                 f"{interval_cell(row.low, row.high, row.confidence)}, p {p_cell(row.p_holm)} "
                 f"({over}).")
    rest = [seeds]
    todo = what_to_run(row)
    if todo:
        rest.append(todo[0].upper() + todo[1:] + ".")
    evidence = image_evidence(comparison)
    if evidence:
        rest.append(evidence)
    return what, row.verdict, " ".join(rest)


def verdict_lines(matters: WhatMatters, markdown: bool = False) -> list[str]:
    """One line per comparison: its one verdict, in words."""
    lines = []
    for comparison in matters.comparisons:
        what, verdict, rest = verdict_parts(comparison, matters.family_size)
        lines.append(f"- {what}: **{verdict}**: {rest}" if markdown
                     else f"{what}: {verdict}: {rest}")
    return lines


NOTHING_TO_COMPARE = "No two runs differ in one swept setting alone: nothing to compare."
SEED_HEADER = ["setting", "value", "against", "within", "runs", "difference (points)",
               "interval (Holm)", "p", "verdict", "seeds to resolve"]
NETWORKS = "these two trained networks"
IMAGE_HEADER = ["setting", "value", "against", "within", "seed", "images",
                "right only with the reference", "right only with the value",
                "difference (points)", "interval (Holm)", "p", NETWORKS]


def seed_rows(matters: WhatMatters) -> list[list[str]]:
    """The verdict only on a comparison's own row (`all`): its combinations are its parts."""
    return [[name_of(r.key), r.value, r.reference, r.within, runs_cell(r),
             signed(r.diff), interval_cell(r.low, r.high, r.confidence), p_cell(r.p_holm),
             r.verdict if r.within == "all" else "", seeds_cell(r)]
            for r in matters.seed_level]


def image_rows(matters: WhatMatters) -> list[list[str]]:
    return [[name_of(r.key), r.value, r.reference, r.within, r.seed, f"{r.images:,}",
             str(r.reference_only), str(r.value_only), signed(r.diff),
             interval_cell(r.low, r.high, r.confidence), p_cell(r.p_holm),
             "differ on these test images" if r.differ
             else "not distinguishable on these test images"]
            for r in matters.image_level]


def image_note(matters: WhatMatters) -> str | None:
    """Why some pairs have no image-level test, counted, not listed run by run."""
    if not matters.image_notes:
        return None
    missing = {n for n in matters.image_notes if n.endswith("no per-image predictions")}
    other = [n for n in matters.image_notes if n not in missing]
    parts = []
    if missing:
        parts.append(f"{len(missing)} pair{'s' * (len(missing) != 1)} of runs without "
                     f"per-image predictions (runs recorded before they were kept, or whose "
                     f"file is damaged)")
    parts += other
    return "No image-level test for " + "; ".join(parts) + "."


def matters_markdown(matters: WhatMatters, level: int = 2) -> list[str]:
    h = "#" * level
    lines = [f"{h} What matters", "", matters_intro(matters), ""]
    if matters.empty:
        return [*lines, NOTHING_TO_COMPARE]
    lines += [f"{h}# Verdicts", "", *verdict_lines(matters, markdown=True), ""]
    lines += [f"{h}# Over seeds", ""]
    lines += md_table(SEED_HEADER, seed_rows(matters)) if matters.seed_level else [
        "No seed-level comparison: no setting has runs on both sides."]
    lines += ["", f"{h}# On the same test images", ""]
    lines += md_table(IMAGE_HEADER, image_rows(matters)) if matters.image_level else [
        "No image-level comparison."]
    note = image_note(matters)
    lines += ["", note] if note else []
    return lines


def print_what_matters(console: Console, matters: WhatMatters | None) -> None:
    """The section in the terminal, after the table of runs (none for a single run)."""
    if matters is None:
        return
    wrap = not console.is_terminal
    console.print()
    console.print(Text("What matters", style="bold"))
    console.print(matters_intro(matters), markup=False, highlight=False, soft_wrap=wrap)
    if matters.empty:
        console.print(NOTHING_TO_COMPARE, markup=False, highlight=False)
        return
    console.print()
    console.print(Text("Verdicts", style="bold"))
    for line in verdict_lines(matters):
        console.print(line, markup=False, highlight=False, soft_wrap=wrap)
    console.print()
    for title, header, rows in (("Over seeds", SEED_HEADER, seed_rows(matters)),
                                ("On the same test images", IMAGE_HEADER,
                                 image_rows(matters))):
        if not rows:
            continue
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=title, title_justify="left")
        for name in header:
            table.add_column(name)
        for row in rows:
            style = ({"better": "green", "worse": "red"}.get(row[header.index("verdict")])
                     if "verdict" in header else None)
            table.add_row(*map(Text, row), style=style)
        if not console.is_terminal:
            console.width = max(console.width, Console(width=100_000).measure(table).maximum)
        console.print(table)
    note = image_note(matters)
    if note:
        console.print(note, markup=False, highlight=False, soft_wrap=wrap)


# ---- terminal --------------------------------------------------------------------------

def print_table(console: Console, title: str, runs: list[Run], labels: list[str],
                common: list[str]) -> None:
    """The table a sweep ends with. On a terminal rich fits it to the window; elsewhere
    (a log, a pipe) it gets the width that keeps every word whole."""
    header = ("job", "config", "params", "val\nbest", "test acc\n+/- 95%", "test\nloss",
              "epochs", "s/\nepoch", "status")
    rows = [[job_label(r.job), label, integer(r.params), percent(r.val_acc_best),
             run_acc(r), num(r.test_loss), str(r.epochs_completed),
             num(r.sec_per_epoch, 2), outcome(r)]
            for r, label in zip(runs, labels, strict=True)]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for i, name in enumerate(header):
        right = 2 <= i <= 7
        table.add_column(name, justify="right" if right else "left", no_wrap=right)
    for run, row in zip(runs, rows, strict=True):
        table.add_row(*map(Text, row[:-1]),
                      Text(row[-1], style="green" if run.finished else "red"))
    if not console.is_terminal:  # one line per row, however long: nothing is folded
        console.width = max(console.width, Console(width=100_000).measure(table).maximum)
    console.print(Text(title), soft_wrap=True)
    console.print(common_line(common, runs), markup=False, highlight=False,
                  soft_wrap=not console.is_terminal)
    for note in (dataset_note(runs), device_note(runs)):
        if note:
            console.print(Text(note, style="bold yellow"), soft_wrap=not console.is_terminal)
    console.print(wilson_line(runs), markup=False, highlight=False,
                  soft_wrap=not console.is_terminal)
    console.print(table)


# ---- files -----------------------------------------------------------------------------

def write_text(path: Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def csv_text(columns: list[str], records: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in rec.items()} for rec in records)
    return buffer.getvalue()


def quoted(paths: Iterable[Path | str]) -> str:
    return " ".join(shlex.quote(str(p)) for p in paths)
