"""`race=seeds`, the racing sweeper, run for real on tiny data through joblib's launcher
(the race's own process is this one, through the command's entry point, except where a
signal is sent to it; its jobs train in joblib's worker processes): a configuration that
cannot learn is dropped after min_seeds, two configurations that train identically never
get a winner, the same command again launches nothing, a SIGTERM leaves it consistent and
the same command continues it to the same decisions, the report shows the race, and a race
that cannot start is refused with one message and nothing left behind. The statistics
themselves are report/racing.py's."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from rich.console import Console

from mnist_sweep.job.signals import NUM_JOBS_ENV, descendants
from mnist_sweep.report.race_section import RACE_FILE, race_markdown
from mnist_sweep.sweep.live import JobState, SweepWatcher
from mnist_sweep.sweep.race.adapt import check_budget, make_settings
from mnist_sweep.sweep.race.configs import RaceError, configurations
from mnist_sweep.sweep.race.runs import Matcher
from tests.conftest import MPL_CONFIG_DIR, run_in_process

pytest.importorskip("hydra_plugins.hydra_joblib_launcher")

# 2 epochs of 16 batches: lr=0.01 learns the tiny digits (100% validation accuracy on
# every seed), lr=1e-9 stays at chance (8-15%).
RACE = ["-m", "race=seeds", "trainer.num_threads=1", "trainer.enable_progress_bar=false",
        "data.val_size=128", "data.batch_size=32", "trainer.max_epochs=2",
        "hydra.sweeper.max_seeds=4"]
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]  # two 1-thread jobs at a time
LEARNS, CANNOT = "optim.lr=0.01", "optim.lr=1e-09"


def race_args(tiny_root: Path, sweep: Path, *extra: str, joblib: bool = True) -> list[str]:
    return [*RACE, *(JOBLIB if joblib else []), *extra, f"data.root={tiny_root}",
            f"hydra.sweep.dir={sweep}"]



def run_race(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The race command through its entry point in this process (no signal is sent to it)."""
    return run_in_process(args, cwd=cwd)


def read_race(sweep: Path) -> dict:
    return json.loads((sweep / RACE_FILE).read_text())


def by_name(record: dict) -> dict[str, dict]:
    return {c["name"]: c for c in record["configurations"]}


def decisions(record: dict) -> dict:
    """What a race decided: per configuration its status, the look that dropped it, the
    seeds counted and each counted seed's value; the stop reason and the runs used."""
    return {"stop": record["stop_reason"], "over": record["over"],
            "launched": record["runs_launched"],
            "configs": {c["name"]: (c["status"], c["dropped_after"], c["seeds_counted"],
                                    {r["seed"]: r["value"] for r in c["runs"] if r["counted"]})
                        for c in record["configurations"]}}


def job_folders(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()),
                  key=lambda p: int(p.name.split("_")[0]))


def seed_and_lr(folder: Path) -> tuple[int, str]:
    overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
    seed = next(int(o.split("=")[1]) for o in overrides if o.startswith("seed="))
    lr = next(o for o in overrides if o.startswith("optim.lr="))
    return seed, lr


@pytest.fixture(scope="module")
def race(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """One finished race: optim.lr=1e-9 against 0.01, min_seeds 3, max_seeds 4."""
    cwd = tmp_path_factory.mktemp("race")
    sweep = cwd / "race"
    args = race_args(tiny_root, sweep, "optim.lr=1e-9,0.01")
    result = run_race(args, cwd=cwd)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return SimpleNamespace(cwd=cwd, sweep=sweep, args=args, result=result,
                           out=result.stdout + result.stderr,
                           text=(sweep / RACE_FILE).read_text())


# ---- a real race ----------------------------------------------------------------------

def test_a_configuration_that_cannot_learn_is_dropped_after_min_seeds(race) -> None:
    record = json.loads(race.text)
    configs = by_name(record)
    assert configs[CANNOT]["status"] == "dropped", configs
    assert configs[CANNOT]["dropped_after"] == 3
    assert configs[CANNOT]["status_text"].startswith("dropped after seed 3 (p ")
    assert configs[CANNOT]["evidence"].startswith("dropped at 3 seeds: ")
    assert f"below {LEARNS}" in configs[CANNOT]["evidence"]
    assert configs[LEARNS]["status"] == "winner" and configs[LEARNS]["seeds_counted"] == 3
    assert record["over"] and record["stop_reason"] == "one left"
    assert record["metric"] == "val/acc_best" and not record["selected_on_test"]
    assert record["settings"] == {"min_seeds": 3, "max_seeds": 4, "alpha": 0.05,
                                  "equivalence": 0.05, "max_runs": None}
    assert (record["runs_launched"], record["runs_fixed_design"]) == (6, 8)
    # one round, one launch: six runs numbered in launch order, one folder per
    # (configuration, seed), each run's numbers as its status.json records them
    assert race.out.count("Launching jobs, sweep output dir") == 1
    folders = job_folders(race.sweep)
    assert [int(p.name.split("_")[0]) for p in folders] == list(range(6))
    assert sorted(seed_and_lr(p) for p in folders) == sorted(
        (s, lr) for s in (1, 2, 3) for lr in (LEARNS, CANNOT))
    for folder in folders:
        seed, lr = seed_and_lr(folder)
        status = json.loads((folder / "status.json").read_text())
        assert status["status"] == "finished"
        run = next(r for r in configs[lr]["runs"] if r["seed"] == seed)
        assert run["job"] == folder.name and run["counted"]
        assert run["value"] == status["metrics"]["val/acc_best"]
        assert run["test"] == status["metrics"]["test/acc"]
    assert all(r["value"] == 1.0 for r in configs[LEARNS]["runs"])
    # one line per configuration per round, and the result
    assert f"race: {CANNOT}: dropped after seed 3 (p " in race.out
    assert f"race: {LEARNS}: winner, 3 seeds, mean val/acc_best 100.00%" in race.out
    assert f"race on val/acc_best: {LEARNS} beats {CANNOT} by" in race.out


def test_the_report_has_a_race_section(race) -> None:
    summary = (race.sweep / "summary.md").read_text()
    section = summary[summary.index("## Race"):]
    assert f"**Result:** on val/acc_best, {LEARNS} beats {CANNOT} by" in section
    assert "| configuration | status | seeds | val/acc_best (%, 95%) | test/acc (%, 95%) |" \
        in section
    assert f"| {LEARNS} | winner | 3 | 100.00 +/- 0.00 |" in section
    assert f"| {CANNOT} | dropped after seed 3 (p " in section
    assert f"- {CANNOT}: dropped at 3 seeds: " in section
    assert "Runs used: 6 against the fixed design's 8 (all 2 configurations to 4 seeds, 75%)." \
        in section
    assert "Selected on the test set" not in section
    assert "\nRace\n" in race.result.stdout and f"Result: on val/acc_best, {LEARNS} beats" \
        in race.result.stdout
    # rebuilt from the folder alone (race.json), the section is the same
    from mnist_sweep.report import build_report

    build_report(race.sweep, Console(file=StringIO(), width=200))
    rebuilt = (race.sweep / "summary.md").read_text()
    assert rebuilt[rebuilt.index("## Race"):] == section


def test_a_race_jobs_command_runs_that_job_alone(race) -> None:
    # summary.csv's `command` runs one job again by hand: without the sweeper it ran under,
    # since `race=seeds` on a single run is refused (a race runs with -m)
    from mnist_sweep import cli

    with open(race.sweep / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    for row in rows:
        words = shlex.split(row["command"])
        assert words[:3] == ["python", "-m", "mnist_sweep"] and "race=seeds" not in words
        assert any(w.startswith("seed=") for w in words) and any(
            w.startswith("optim.lr=") for w in words), words
        cli.check_sweep_needs_multirun(words[3:])  # raises SystemExit(2) where it would


def test_the_live_lines_count_jobs_as_the_job_lines_do(race) -> None:
    # a job's own line and the live view's plain lines give one N: the race's most runs
    # (2 configurations x max_seeds 4), a bound the race may stop short of
    counts = set(re.findall(r"\[job \d+ of (\d+)\]", race.out))
    assert counts == {"8"}, counts
    summaries = re.findall(r"\| sweep: (\d+ of [^,;]+)", race.out)
    assert summaries and all(re.fullmatch(r"\d+ of at most 8 jobs finished", s)
                             for s in summaries), summaries
    assert "left in this round" in race.out


def test_the_live_view_shows_each_configurations_race_status(race) -> None:
    from mnist_sweep.sweep.live import render

    console = Console(file=StringIO(), width=200)
    watcher = SweepWatcher(race.sweep)
    console.print(render(watcher, watcher.states()))
    shown = console.file.getvalue()
    assert f"race: {LEARNS}: winner (3 seeds, mean 100.00)" in shown
    assert f"race: {CANNOT}: dropped after seed 3 (p " in shown
    assert f"race over: on val/acc_best, {LEARNS} beats {CANNOT} by" in shown


def test_the_same_command_again_launches_nothing_and_decides_the_same(race) -> None:
    again = run_race(race.args, cwd=race.cwd)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    out = again.stdout + again.stderr
    assert "6 finished run(s) found" in out
    assert "Launching jobs" not in out and "race round" not in out
    assert len(job_folders(race.sweep)) == 6
    before, after = json.loads(race.text), read_race(race.sweep)
    before.pop("updated"), after.pop("updated")
    assert after == before


def test_the_time_left_in_a_round_counts_its_runs_not_started(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # round 2 of a race: jobs 4 and 5 train (5 of 20 epochs done, 30 s each), jobs 6 and 7
    # have no folder yet; two at a time, the round needs (15 + 15 + 20 + 20) x 30 s / 2
    monkeypatch.delenv(NUM_JOBS_ENV, raising=False)  # as in `mnist-sweep watch`: race.json
    (tmp_path / RACE_FILE).write_text(json.dumps(
        {"configurations": [], "runs_most": 16, "round_jobs": [4, 5, 6, 7]}))
    watcher = SweepWatcher(tmp_path, racing=True)
    states = [JobState(num, f"{num}_head=gap,seed=4", "", "running", epoch=5, max_epochs=20,
                       sec_per_epoch=30.0) for num in (4, 5)]
    assert watcher.round_unseen(states) == [6, 7]
    assert watcher.time_left(states) == (15 + 15 + 20 + 20) * 30.0 / 2
    assert watcher.summary(states).startswith(
        "0 of at most 16 jobs finished, 2 running, 2 more in this round; ")
    assert watcher.summary(states).endswith("about 0:17:30 left in this round")


def test_a_dry_run_shows_the_standing_and_the_next_round_and_writes_nothing(
        race, tiny_root: Path, tmp_path: Path) -> None:
    # a new race: its first round, every configuration on seeds 1 to min_seeds
    sweep = tmp_path / "race"
    dry = run_race([*race_args(tiny_root, sweep, "optim.lr=1e-9,0.01"), "--dry-run"],
                   cwd=tmp_path)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert "0 finished run(s) of at most 8" in dry.stdout
    rounds = re.findall(r"^job (\d+): run +(\S+) +\(new\)$", dry.stdout, re.MULTILINE)
    assert [int(num) for num, _ in rounds] == list(range(6))
    named = [[o for o in Path(folder).name.split("_", 1)[1].split(",")
              if o.startswith(("seed=", "optim.lr="))] for _, folder in rounds]
    assert sorted(named) == sorted([lr, f"seed={s}"] for s in (1, 2, 3)
                                   for lr in (LEARNS, CANNOT))
    assert "6 to run." in dry.stdout and "Launching jobs" not in dry.stdout + dry.stderr
    assert not sweep.exists()
    # a finished race: its standing and result, nothing to run, nothing touched
    before = {p: p.stat().st_mtime_ns for p in race.sweep.rglob("*")}
    dry = run_race([*race.args, "--dry-run"], cwd=race.cwd)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert f"  {LEARNS}: winner, 3 seeds, mean val/acc_best 100.00%" in dry.stdout
    assert f"  {CANNOT}: dropped after seed 3 (p " in dry.stdout
    assert f"The race is over: {LEARNS} beats {CANNOT} by" in dry.stdout
    assert dry.stdout.rstrip().endswith("Nothing to run.")
    assert {p: p.stat().st_mtime_ns for p in race.sweep.rglob("*")} == before


def _running(sweep: Path) -> list[Path]:
    """The job folders whose status.json says `running` (written atomically)."""
    return [p.parent for p in sweep.glob("*_*/status.json")
            if json.loads(p.read_text()).get("status") == "running"]


def _freeze(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def test_sigterm_leaves_the_race_consistent_and_the_same_command_continues_it(
        race, tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM to the race's process while a job trains: the job records itself
    interrupted, race.json stays whole, and the same command relaunches that run in its own
    folder and ends with the decisions of the uninterrupted race (the fixture's command)."""
    sweep = tmp_path / "race"
    args = race_args(tiny_root, sweep, "optim.lr=1e-9,0.01")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / ".cache"), "HYDRA_FULL_ERROR": "",
           "MPLCONFIGDIR": MPL_CONFIG_DIR}
    env.pop("MNIST_SWEEP_DATA", None)
    started = time.time() - 1  # the race's command starts after this (1 s records)
    proc = subprocess.Popen([sys.executable, "-m", "mnist_sweep", *args], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    workers: list[int] = []
    running: list[Path] = []
    try:
        # Look with the race's workers stopped (SIGSTOP), so that what status.json says is
        # still true when the signal comes: a job that says `running` has its stop handler
        # installed and cannot finish before it gets the SIGTERM.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if _running(sweep):  # then look again with the workers stopped
                workers = descendants(proc.pid)
                _freeze(workers, signal.SIGSTOP)
                running = _running(sweep)
                if running:
                    break
                _freeze(workers, signal.SIGCONT)
            time.sleep(0.05)
        assert running, "no job of the race was seen running"
        # race.json names the round's jobs before it is launched, so a live view counts
        # the runs of the round that have not started yet
        assert read_race(sweep)["round_jobs"] == list(range(6))
        monkeypatch.delenv(NUM_JOBS_ENV, raising=False)  # the bound read from race.json
        watcher = SweepWatcher(sweep, racing=True)  # as `mnist-sweep watch` makes it
        watcher.started = started
        states = watcher.states()
        counts = {s: sum(j.status == s for j in states) for s in ("finished", "running")}
        assert counts["running"] >= 1, [(j.name, j.status) for j in states]
        assert (f"{counts['finished']} of at most 8 jobs finished, {counts['running']} running, "
                f"{6 - counts['finished'] - counts['running']} more in this round; "
                in watcher.summary(states))
        os.kill(proc.pid, signal.SIGTERM)  # the race's process passes it on to its workers
        proc.wait(timeout=60)
    finally:
        _freeze(workers, signal.SIGCONT)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), proc.returncode
    deadline = time.monotonic() + 60  # the workers record the stop, then exit
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in workers):
        time.sleep(0.05)
    record = read_race(sweep)  # whole: the state before the round that was stopped
    assert not record["over"] and record["runs_launched"] == 0
    assert {c["status"] for c in record["configurations"]} == {"racing"}
    stopped = {p.name: json.loads((p / "status.json").read_text()) for p in running}
    for name, status in stopped.items():
        assert status["status"] == "interrupted", (name, status)

    # its dry run lists each stopped run under its own number, in its own folder, as
    # interrupted (resumed from its checkpoint, or run again where it had none); it writes
    # nothing
    before = sorted(str(p) for p in sweep.rglob("*"))
    dry = run_race([*args, "--dry-run"], cwd=tmp_path)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    for name in stopped:
        num = name.split("_")[0]
        assert re.search(rf"^job {num}: (run|resume) +{re.escape(str(sweep / name))}  "
                         rf"\(interrupted: ", dry.stdout, re.MULTILINE), dry.stdout
    assert sorted(str(p) for p in sweep.rglob("*")) == before

    result = run_race(args, cwd=tmp_path)  # the same command, continuing the race
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in stopped:  # relaunched under its own number, in its own folder
        status = json.loads((sweep / name / "status.json").read_text())
        assert status["status"] == "finished" and "resumed_from" in status, status
    assert len(job_folders(sweep)) == 6
    assert decisions(read_race(sweep)) == decisions(json.loads(race.text))


def test_identical_configurations_never_get_a_winner(tiny_root: Path, tmp_path: Path) -> None:
    # trainer.lightning_info only shows or hides Lightning's informational lines: the two
    # configurations train the same network on the same seeds, so they are equal. Hydra's
    # basic launcher: one run after another, in the race's own process.
    sweep = tmp_path / "race"
    result = run_race(race_args(tiny_root, sweep, "optim.lr=0.01",
                                "trainer.lightning_info=false,true", joblib=False),
                      cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = read_race(sweep)
    statuses = {c["name"]: c["status"] for c in record["configurations"]}
    assert set(statuses) == {"trainer.lightning_info=False", "trainer.lightning_info=True"}
    assert "winner" not in statuses.values() and "dropped" not in statuses.values(), record
    a, b = record["configurations"]
    assert [r["value"] for r in a["runs"]] == [r["value"] for r in b["runs"]]
    # the same values on every seed: equal within the margin at the first look
    assert record["over"] and record["stop_reason"] == "equal within 0.05 points"
    assert set(statuses.values()) == {"equal"} and a["seeds_counted"] == b["seeds_counted"] == 3
    summary = (sweep / "summary.md").read_text()
    assert "are equal within +/- 0.05 points after 3 seeds" in summary


def test_a_failed_run_never_counts_is_asked_again_then_stops_the_race(
        tiny_root: Path, tmp_path: Path) -> None:
    # optim.lr=1e6 diverges in its first epoch, on every seed
    sweep = tmp_path / "race"
    result = run_race(race_args(tiny_root, sweep, "optim.lr=1e6,0.01", "trainer.max_epochs=1",
                                "hydra.sweeper.min_seeds=2", "hydra.sweeper.max_seeds=2",
                                joblib=False), cwd=tmp_path)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    record = read_race(sweep)
    assert not record["over"] and record["stop_reason"].startswith(
        "stopped: optim.lr=1000000.0 seed 1 (job 1) ended diverged")
    assert "2 times in this command" in record["stop_reason"]
    diverging = by_name(record)["optim.lr=1000000.0"]
    assert diverging["seeds_counted"] == 0 and diverging["mean"] is None
    assert [(r["status"], r["result"], r["value"]) for r in diverging["runs"]] == [
        ("diverged", False, None)] * 2
    assert by_name(record)[LEARNS]["status"] == "racing"  # nothing is decided on it
    assert len(job_folders(sweep)) == 4  # asked again in their own folders, not new ones
    out = result.stdout + result.stderr
    assert out.count("-> diverged") == 4
    assert "Not over: stopped: optim.lr=1000000.0 seed 1" in result.stdout


# ---- refusals -------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "says"), [
    (["optim.lr=1e-9,0.01", "seed=1,2"], "`seed=1,2`: a race chooses the seeds itself"),
    (["optim.lr=1e-9,0.01", "data.val_size=0"],
     "hydra.sweeper.metric=val/acc_best needs a validation set, and every configuration "
     "has data.val_size=0"),
    (["optim.lr=1e-9,0.01", "hydra.sweeper.alpha=0.7"], "hydra.sweeper.alpha=0.7 must be"),
])
def test_a_race_that_cannot_start_is_refused_with_one_message(
        tiny_root: Path, tmp_path: Path, extra: list[str], says: str) -> None:
    sweep = tmp_path / "race"
    result = run_race(race_args(tiny_root, sweep, *extra), cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and says in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not sweep.exists()  # no folder, lock or file left behind


# ---- the pieces, in this process ------------------------------------------------------

def test_the_grid_is_expanded_as_the_basic_sweeper_does() -> None:
    configs = configurations(["head=gmp,gap", "optim.lr=0.01,0.001", "data.root=/d",
                              "race=seeds"])
    assert [c.name for c in configs] == ["head=gmp optim.lr=0.01", "head=gmp optim.lr=0.001",
                                         "head=gap optim.lr=0.01", "head=gap optim.lr=0.001"]
    assert configs[0].run_overrides(2) == ["head=gmp", "optim.lr=0.01", "data.root=/d",
                                           "race=seeds", "seed=2"]


@pytest.mark.parametrize(("arguments", "says"), [
    (["head=gmp,gap", "+seed=3"], "a race chooses the seeds itself"),
    (["head=gmp"], "a race needs two or more configurations"),
    (["optim.lr=0.01,0.010"], "lists the configuration optim.lr=0.01 twice"),
    (["optim.lr=interval(0.001,0.01)"], "a grid of listed values"),
])
def test_grids_a_race_cannot_run_are_refused(arguments: list[str], says: str) -> None:
    with pytest.raises(RaceError) as caught:
        configurations(arguments)
    assert says in str(caught.value)


def test_settings_are_refused_by_their_key() -> None:
    given = {"min_seeds": 3, "max_seeds": 10, "alpha": 0.05, "equivalence": 0.05,
             "max_runs": None}
    assert make_settings(given).max_seeds == 10
    for key, value, says in (("min_seeds", 1, "hydra.sweeper.min_seeds=1 is too few"),
                             ("max_seeds", 2, "hydra.sweeper.max_seeds=2 is below"),
                             ("equivalence", -1, "hydra.sweeper.equivalence=-1 must be")):
        with pytest.raises(RaceError) as caught:
            make_settings({**given, key: value})
        assert str(caught.value).startswith(says), str(caught.value)
    with pytest.raises(RaceError, match="hydra.sweeper.max_runs=5 cannot pay for the first"):
        check_budget(["a", "b"], make_settings({**given, "max_runs": 5}))


def test_job_folders_are_recognised_by_their_overrides() -> None:
    configs = configurations(["head=gmp,gap", "data.root=/d"])
    match = Matcher(configs, ["data.root"])
    assert match(("head=gap", "data.root=/d")) == "head=gap"
    assert match(("data.root=/d", "head=gmp")) == "head=gmp"  # any order
    assert match(("head=gmp", "data.root=/moved")) == "head=gmp"  # a quiet key changed
    assert match(("head=flatten", "data.root=/d")) is None


def test_a_race_on_the_test_set_is_flagged() -> None:
    record = {"metric": "test/acc", "settings": {"max_seeds": 4}, "over": True,
              "stop_reason": "one left", "result": "a beats b by 1.00 points after 3 seeds",
              "runs_launched": 6, "runs_counted": 6, "runs_fixed_design": 8,
              "configurations": [
                  {"name": "a", "status": "winner", "seeds_counted": 3, "mean": 99.0,
                   "low": 98.0, "high": 100.0, "runs": []},
                  {"name": "b", "status": "dropped", "status_text": "dropped after seed 3",
                   "evidence": "dropped at 3 seeds: ...", "dropped_after": 3,
                   "seeds_counted": 3, "mean": 98.0, "low": None, "high": None, "runs": []}]}
    text = "\n".join(race_markdown(record))
    assert "**Selected on the test set (hydra.sweeper.metric=test/acc)" in text
    assert "| configuration | status | seeds | test/acc (%, 95%) |" in text
    assert "| a | winner | 3 | 99.00 +/- 1.00 |" in text
