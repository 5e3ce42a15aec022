"""One invocation of a race: find the runs the sweep folder already holds, then round after
round launch the runs the race asks for, read their ends back and replay the race over
every finished result, writing <sweep dir>/race.json after each round."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnist_sweep.config import RunConfig
from mnist_sweep.record.folders import folder_override, job_folders, job_number
from mnist_sweep.report.racing import RaceSettings, RaceState
from mnist_sweep.sweep.race import adapt
from mnist_sweep.sweep.race.configs import Configuration, RaceError
from mnist_sweep.sweep.race.record import race_record, write_race
from mnist_sweep.sweep.race.runs import DAMAGED, RaceRun, read_run, scan

log = logging.getLogger("mnist_sweep")


MAX_ATTEMPTS = 2  # launches of one run per command: a run that fails twice stops the race
FAILED_ENDS = ("failed", "diverged", "refused")  # ends without a result (asked for again)


def race_settings(given: dict[str, Any]) -> RaceSettings:
    """racing.py's settings from hydra.sweeper's values; RaceError names a bad one."""
    return adapt.make_settings(given)


class Race:
    """A race over `configs`; `launch` is the configured launcher's launch(batch,
    initial_job_idx), `config` the sweep's config, `set_num_jobs` gives the job lines their
    total."""

    def __init__(self, launch: Callable[..., Any], config: Any, configs: list[Configuration],
                 run_cfgs: list[RunConfig], settings: RaceSettings, metric: str,
                 set_num_jobs: Callable[[int], None]) -> None:
        from mnist_sweep.sweep.plan import job_folder

        self.launch_batch, self.set_num_jobs = launch, set_num_jobs
        self.configs, self.run_cfgs = configs, run_cfgs
        self.settings, self.metric = settings, metric
        self.by_name = {c.name: c for c in configs}
        self.config = cfg = config
        self.sweep_dir = Path(str(cfg.hydra.sweep.dir))
        # job folders are found back by their leading number (the default subdir's)
        probe = job_folder(copy.deepcopy(cfg), 7)
        if not probe.name.startswith("7_"):
            raise RaceError(f"hydra.sweep.subdir={cfg.hydra.sweep.subdir} gives job 7 the "
                            f"folder {probe.name}: a race finds its runs back by the job "
                            f"number in front of the folder name (the default, "
                            f"${{hydra.job.num}}_...).")
        self.quiet = [str(k) for k in cfg.hydra.job.config.override_dirname.exclude_keys]
        found = scan(self.sweep_dir, configs, self.quiet, metric)
        if found.foreign:
            shown = ", ".join(p.name for p in found.foreign[:5])
            more = f" and {len(found.foreign) - 5} more" if len(found.foreign) > 5 else ""
            raise RaceError(
                f"{self.sweep_dir} holds job folders of no configuration of this race "
                f"({shown}{more}): another sweep's, or this race's command changed. Run the "
                f"command that started it, or choose another hydra.sweep.dir.")
        damaged = [r for r in found.runs.values() if r.status == DAMAGED]
        if damaged:  # as a grid refuses it: it may hold a finished result
            raise RaceError(f"{damaged[0].error}: it may hold a finished result, so it is not "
                            f"run again. Look at it, then delete {damaged[0].folder} to run "
                            f"that run from scratch, or choose another hydra.sweep.dir.")
        adapt.check_budget([c.name for c in configs], settings)
        self.runs: dict[tuple[str, int], RaceRun] = found.runs
        self.next_num = found.next_num
        self.attempts: dict[tuple[str, int], int] = {}  # launches in this command
        self.rounds = 0
        self.round_jobs: list[int] = []  # the job numbers of the round being launched
        self.stop_note: str | None = None

    # ---- state ------------------------------------------------------------------------

    def results(self) -> dict[str, dict[int, float | None]]:
        """Every finished run's value in points, by configuration and seed; None for a run
        that ended without one (failed, diverged, refused: racing asks for it again). A run
        that was interrupted or never started is not in it."""
        out: dict[str, dict[int, float | None]] = {c.name: {} for c in self.configs}
        for (name, seed), run in self.runs.items():
            if run.result:
                out[name][seed] = adapt.points(run.value)
            elif run.status in FAILED_ENDS or (run.status == "finished" and not run.result):
                out[name][seed] = None
        return out

    def most_runs(self) -> int:
        """The fixed design's runs (every configuration to max_seeds), or max_runs."""
        fixed = len(self.configs) * self.settings.max_seeds
        return min(fixed, self.settings.max_runs or fixed)

    def replay(self) -> RaceState:
        return adapt.race(self.results(), self.settings)

    def write(self, state: RaceState) -> Path:
        record = race_record(state, self.configs, self.runs, self.metric, self.stop_note,
                             self.most_runs(), self.round_jobs)
        return write_race(self.sweep_dir, record)

    # ---- running ----------------------------------------------------------------------

    def run(self) -> list[Any]:
        from mnist_sweep.sweep.callbacks import describe_in_tensorboard, fetch_missing_data

        sources = {(c.data.name, c.data.root): c for c in self.run_cfgs}
        for run_cfg in sources.values():  # once for the race, not by every job
            fetch_missing_data(run_cfg, for_sweep=True)
        describe_in_tensorboard(self.sweep_dir, self.run_cfgs)
        self.set_num_jobs(self.most_runs())
        finished = sum(r.result for r in self.runs.values())
        log.info("race of %d configurations on %s: %s; %d finished run(s) found in %s",
                 len(self.configs), self.metric, adapt.describe_settings(self.settings),
                 finished, self.sweep_dir)
        state = self.replay()
        self.write(state)
        if finished:
            self.log_state(state)
        try:
            while not state.over:
                pairs = state.next_runs()
                stuck = [p for p in pairs if self.attempts.get(p, 0) >= MAX_ATTEMPTS]
                if stuck:
                    self.stop_note = self.stuck_note(stuck)
                    log.error("race %s", self.stop_note)
                    break
                if not pairs:
                    break
                self.rounds += 1
                self.round_jobs = sorted(self.numbers(pairs))
                self.write(state)  # the live view counts the round's runs not started yet
                self.launch(pairs)
                self.round_jobs = []
                state = self.replay()
                self.write(state)
                self.log_state(state)
        except KeyboardInterrupt:
            self.refresh()
            self.round_jobs = []
            self.write(self.replay())
            log.error("race interrupted. Run the same command with %s to continue it: its "
                      "finished runs count, its unfinished ones continue in their folders.",
                      folder_override("hydra.sweep.dir", self.sweep_dir))
            raise SystemExit(130) from None
        state = self.replay()
        self.write(state)
        log.info("race on %s: %s", self.metric, state.result())
        return [{"over": state.over, "reason": self.stop_note or state.reason,
                 "result": state.result(),
                 "status": {n: c.status for n, c in state.configs.items()}}]

    def stuck_note(self, stuck: list[tuple[str, int]]) -> str:
        runs = [self.runs[p] for p in stuck]
        return ("stopped: " + "; ".join(
            f"{r.config} seed {r.seed} (job {r.num}) ended {r.status or 'without a record'}"
            + (f": {r.error}" if r.error else "") for r in runs)
            + f", {MAX_ATTEMPTS} times in this command. Fix the cause and run the same "
            f"command again: the race goes on from its finished runs")

    def launch(self, pairs: list[tuple[str, int]]) -> None:
        """One round: every (configuration, seed) asked for, under its number (a run with a
        folder keeps its own; a new one takes the next free number), one launch per run of
        consecutive numbers (a new round is always one)."""
        todo = []
        for pair in pairs:
            self.attempts[pair] = self.attempts.get(pair, 0) + 1
        for (name, seed), num in zip(pairs, self.numbers(pairs), strict=True):
            if (name, seed) not in self.runs:
                self.runs[(name, seed)] = RaceRun(name, seed, num, Path())
                self.next_num = num + 1
            todo.append(self.runs[(name, seed)])
        todo.sort(key=lambda r: r.num)
        groups: list[list[RaceRun]] = []
        for run in todo:
            if groups and groups[-1][-1].num + 1 == run.num:
                groups[-1].append(run)
            else:
                groups.append([run])
        log.info("race round %d: %s", self.rounds,
                 ", ".join(f"{r.config} seed {r.seed}" for r in todo))
        for group in groups:
            batch = [self.by_name[r.config].run_overrides(r.seed) for r in group]
            try:
                returns = self.launch_batch(batch, initial_job_idx=group[0].num)
            except Exception as exc:  # the launcher itself failed (a worker died, a queue)
                log.error("race round %d: the launcher failed: %s: %s", self.rounds,
                          type(exc).__name__, exc)
                returns = []
            for run, ret in zip(group, returns, strict=False):
                if ret.hydra_cfg is not None:
                    run.folder = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
        self.refresh(todo)

    def numbers(self, pairs: list[tuple[str, int]]) -> list[int]:
        """The job number of each run: its folder's, or the next free ones in order."""
        numbers, free = [], self.next_num
        for pair in pairs:
            run = self.runs.get(pair)
            numbers.append(free if run is None else run.num)
            free += run is None
        return numbers

    def dry_run(self) -> None:
        """`--dry-run`: print the standing the finished runs give, then the next round's
        runs, each with its folder's verdict, and end the command as a grid's dry run does
        (exit code 2 when a problem would stop it). Nothing is written."""
        from mnist_sweep.sweep.callbacks import plan_grid, stop_or_go

        state = self.replay()
        finished = sum(r.result for r in self.runs.values())
        print(f"race of {len(self.configs)} configurations on {self.metric} "
              f"({adapt.describe_settings(self.settings)}) in {self.sweep_dir}: "
              f"{finished} finished run(s) of at most {self.most_runs()}")
        for line in adapt.config_lines(state, self.metric):
            print(f"  {line}")
        pairs = [] if state.over else state.next_runs()
        if not pairs:
            print(f"The race is over: {state.result()}. Nothing to run.")
            raise SystemExit(0)
        print(f"\nnext round, {len(pairs)} run(s) (later rounds depend on its results):")
        stop_or_go(plan_grid(self.config, [self.by_name[name].run_overrides(seed)
                                           for name, seed in pairs],
                             self.sweep_dir, self.numbers(pairs)), self.sweep_dir)

    def refresh(self, runs: list[RaceRun] | None = None) -> None:
        """Read runs back from their folders; a run launched without a known folder (the
        launcher failed, or Ctrl-C came first) is looked for by its number."""
        for run in runs if runs is not None else list(self.runs.values()):
            if run.folder == Path() or not run.folder.is_dir():
                hits = [p for p in job_folders(self.sweep_dir) if job_number(p.name) == run.num]
                if not hits:
                    run.status, run.value, run.test = None, None, None
                    continue
                run.folder = hits[0]
            read_run(run, self.metric)

    def log_state(self, state: Any) -> None:
        for line in adapt.config_lines(state, self.metric):
            log.info("race: %s", line)
