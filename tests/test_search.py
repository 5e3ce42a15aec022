"""`hparams_search=optuna`, run for real on tiny data (through the command's entry point in
this process, and in a subprocess where the search is killed): a pruner stops trials
that are behind, the study lives in the sweep folder and the same command continues it,
joblib workers take trials one by one, a killed search resumes, and a bad search space is
refused before anything trains."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from tests.conftest import MPL_CONFIG_DIR, TINY, TINY_DATA, run_in_process

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

from mnist_sweep.job.trial import SearchError, make_pruner, open_storage  # noqa: E402
from mnist_sweep.sweep.search.check import check_space  # noqa: E402
from mnist_sweep.sweep.search.space import parse_space  # noqa: E402
from mnist_sweep.sweep.search.study import pruner_spec  # noqa: E402

# Everything but the searched keys is fixed, so each trial is quick and the seeded random
# sampler's draws are known: over optim.lr=tag(log,interval(1e-7,1e-1)), seed 6 draws 0.02,
# 1e-5, 0.008, 2e-7, 4e-7 (the first learns the tiny digits in one epoch, 1e-5 and below
# never do).
SEARCH = ["-m", "hparams_search=optuna", "head=gmp", "separable=false", "filters=16",
          "model.dropout=0.1", "optim.weight_decay=0.0", "data.batch_size=32",
          "hydra/sweeper/sampler=random", *TINY]


def study_of(sweep: Path, storage: str | None = None) -> optuna.Study:
    location = storage or str(sweep / "optuna.journal")
    return optuna.load_study(study_name="mnist_sweep", storage=open_storage(location))


def tensorboard_of(job_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(job_dir / "tb" / TINY_DATA), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def session_end(acc: EventAccumulator) -> int | None:
    """The run's end status in TensorBoard's HParams data (api_pb2.Status), if it ended."""
    content = acc.PluginTagToContent("hparams").get("_hparams_/session_end_info")
    if content is None:
        return None
    return plugin_data_pb2.HParamsPluginData.FromString(content).session_end_info.status


def status_of(trial: optuna.trial.FrozenTrial) -> dict:
    return json.loads((Path(trial.user_attrs["job_dir"]) / "status.json").read_text())



def search(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The search command through its entry point in this process (no signal is sent to it)."""
    result = run_in_process(args, cwd=cwd)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_median_pruner_prunes_and_the_same_command_continues_the_study(
        tiny_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "search"
    args = [*SEARCH, "hydra.sweeper.sampler.seed=6", f"data.root={tiny_root}",
            f"hydra.sweep.dir={sweep}", "optim.lr=tag(log,interval(1e-7,1e-1))",
            "trainer.max_epochs=3",
            "hydra.sweeper.pruner=median", "hydra.sweeper.pruning.n_startup_trials=1",
            "hydra.sweeper.pruning.n_warmup_steps=1"]
    first = search([*args, "hydra.sweeper.n_trials=5"], tmp_path)

    trials = study_of(sweep).trials
    states = [t.state for t in trials]
    assert len(trials) == 5, states
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert trials[0].state == TrialState.COMPLETE  # the start-up trial always runs to the end
    assert len(pruned) >= 3 and complete, states
    hopeless = [t.number for t in trials if t.params["optim.lr"] < 1e-4]
    assert len(hopeless) == 3 and set(hopeless) <= {t.number for t in pruned}, [
        (t.number, t.state, t.params) for t in trials]
    for t in pruned:  # stopped at the first epoch that may prune, below trial 0 there
        assert t.intermediate_values[1] < trials[0].intermediate_values[1]
        status = status_of(t)
        assert status["status"] == "pruned" and status["error"] is None, status
        assert status["epoch"] == max(t.intermediate_values) == 1, (status, t.intermediate_values)
        # TensorBoard: no success or failure, and a scalar that says where it stopped
        acc = tensorboard_of(Path(t.user_attrs["job_dir"]))
        assert session_end(acc) is None
        assert [e.value for e in acc.Scalars("search/pruned_at_epoch")] == [1.0]
    assert "-> pruned after epoch 1 of 3" in first.stdout
    for t in complete:
        assert status_of(t)["status"] == "finished"
        acc = tensorboard_of(Path(t.user_attrs["job_dir"]))
        assert session_end(acc) == api_pb2.STATUS_SUCCESS
        assert "search/pruned_at_epoch" not in acc.Tags()["scalars"]
        assert t.value == status_of(t)["metrics"]["val/acc_best"]
        assert sorted(t.intermediate_values) == [1, 2, 3]
    # the report lists the pruned jobs as pruned; the search plot and the best trial are written
    with open(sweep / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["status"] for r in rows) == sorted(
        "pruned" if t.state == TrialState.PRUNED else "finished" for t in trials)
    # each row's command re-runs the configuration, not the sweeper's trial bookkeeping
    assert all(r["command"].startswith("python -m mnist_sweep ") for r in rows)
    assert not any("search_trial" in r["command"] for r in rows)
    assert (sweep / "search.png").stat().st_size > 0
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(t.value for t in complete)
    assert best["best_trial"] == max(complete, key=lambda t: t.value).number

    # The same command with a larger n_trials continues the study in the same folder: the
    # five trials stay as they are, one more is asked, numbered on.
    second = search([*args, "hydra.sweeper.n_trials=6"], tmp_path)
    assert "5 trial(s) held, 1 to run" in second.stdout + second.stderr
    again = study_of(sweep).trials
    assert len(again) == 6 and again[5].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert [(t.number, t.state, t.params, t.datetime_start) for t in again[:5]] == [
        (t.number, t.state, t.params, t.datetime_start) for t in trials]
    assert again[5].params["optim.lr"] not in {t.params["optim.lr"] for t in trials}
    assert len(list(sweep.glob("5_*"))) == 1 and len(list(sweep.glob("*_*/.hydra"))) == 6


def test_two_joblib_workers_take_trials_one_by_one(tiny_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    db = tmp_path / "study.db"
    storage = f"sqlite:///{db}"  # an explicit storage: a database outside the sweep folder
    # seed 10 draws 1, 8, 1 epochs: the short trial's worker must take the third trial
    # while the long one still trains, instead of waiting for it as a batch would
    sweep = tmp_path / "search"
    result = search([*SEARCH, "hydra.sweeper.sampler.seed=10", f"data.root={tiny_root}",
                     f"hydra.sweep.dir={sweep}",
                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                     "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=3",
                     f"hydra.sweeper.storage={storage}", "hydra.sweeper.pruner=none",
                     "optim.lr=0.02", "trainer.max_epochs=choice(1,8)"], tmp_path)
    assert not (sweep / "optuna.journal").exists()
    trials = study_of(sweep, storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3, result.stdout[-2000:]
    epochs = {t.number: t.params["trainer.max_epochs"] for t in trials}
    short, long = sorted((0, 1), key=lambda n: epochs[n])
    assert (epochs[short], epochs[long]) == (1, 8), epochs
    # the first two ran side by side, in two worker processes
    assert trials[1].datetime_start < trials[0].datetime_complete
    assert trials[0].datetime_start < trials[1].datetime_complete
    # the third started when the short one ended, while the long one was still training
    assert trials[short].datetime_complete <= trials[2].datetime_start
    assert trials[2].datetime_start < trials[long].datetime_complete
    assert len({t.user_attrs["owner"] for t in trials}) == 1  # one search process asked


def test_killed_search_resumes_and_asks_the_lost_trial_again(
        tiny_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "search"
    args = [*SEARCH, "hydra.sweeper.sampler.seed=6", f"data.root={tiny_root}",
            f"hydra.sweep.dir={sweep}", "optim.lr=tag(log,interval(3e-3,3e-2))",
            "hydra.sweeper.pruner=none",
            "trainer.max_epochs=6", "hydra.sweeper.n_trials=3"]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / ".cache"), "HYDRA_FULL_ERROR": "",
           "MPLCONFIGDIR": MPL_CONFIG_DIR}
    proc = subprocess.Popen([sys.executable, "-m", "mnist_sweep", *args], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:  # kill the whole search once trial 1 has trained an epoch (it has a checkpoint)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            statuses = [json.loads(p.read_text()) for p in sweep.glob("1_*/status.json")]
            # the epoch is recorded before Lightning writes its checkpoint: wait for both
            if statuses and statuses[0].get("status") == "running" and \
                    statuses[0].get("epoch", 0) >= 1 and \
                    list(sweep.glob("1_*/checkpoints/last.ckpt")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the search ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    lost = study_of(sweep).trials[1]
    assert lost.state == TrialState.RUNNING

    result = search(args, tmp_path)
    out = result.stdout + result.stderr
    assert "trial 1 was lost with its search process" in out, out[-3000:]
    trials = study_of(sweep).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                         TrialState.COMPLETE, TrialState.COMPLETE]
    retry = trials[2]
    assert retry.params == lost.params and retry.user_attrs["retry_of"] == 1
    # the retry continued the lost trial's job in its folder, from its last checkpoint, and
    # carries the epochs reported before the kill
    assert retry.user_attrs["job_dir"] == lost.user_attrs["job_dir"]
    status = status_of(retry)
    assert status["status"] == "finished" and status["resumed_from"], status
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4, 5, 6]
    assert retry.value == status["metrics"]["val/acc_best"]
    assert len(list(sweep.glob("*_*/.hydra"))) == 3  # trial 3 is new; 1's folder reused


def test_search_space_outside_the_schema_is_refused_before_any_trial(
        tiny_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "search"
    result = run_in_process(["-m", "hparams_search=optuna", "model.dropout=interval(0.5,1.5)",
                             f"data.root={tiny_root}", f"hydra.sweep.dir={sweep}", *TINY],
                            cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "model.dropout=interval(0.5,1.5)" in errors[0] and "model.dropout=1.5" in errors[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not sweep.exists()  # no trial ran, no study was started: nothing was written


@pytest.fixture(scope="module")
def compose():
    """The job config as the sweeper composes it: Hydra's compose API on conf/."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from mnist_sweep.paths import config_dir
    from mnist_sweep.resolvers import register_resolvers

    register_resolvers()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        yield lambda overrides: hydra_compose("config", overrides=overrides)


@pytest.mark.parametrize(("params", "named"), [
    ({"optim.lr": "tag(log, interval(0.1, 0.001))"}, "reversed"),
    ({"model.dropuot": "interval(0.0, 0.3)"}, "model.dropuot"),
    ({"head": "choice(gmp, gapp)"}, "gapp"),
    ({"data.batch_size": "range(0, 64, 32)"}, "data.batch_size=0"),
    ({"optim.lr": "interval(0.0, 0.1)"}, "optim.lr=0.0"),
])
def test_search_space_check_names_the_key(compose, params: dict, named: str) -> None:
    with pytest.raises(SearchError) as info:
        check_space(parse_space(params, []), compose)
    assert named in str(info.value) and "\n" not in str(info.value)


def test_search_space_within_the_schema_passes(compose) -> None:
    space = parse_space({"optim.lr": "tag(log, interval(1e-4, 1e-1))",
                         "model.dropout": "interval(0.0, 0.5)", "head": "choice(gmp, gap)",
                         "data.batch_size": "range(32, 257, 32)"}, ["filters=8"])
    check_space(space, compose)


def test_search_space_syntax_maps_to_optuna_distributions() -> None:
    space = parse_space({"optim.lr": "tag(log, interval(0.0003, 0.03))",
                         "filters": "range(8, 33, 8)", "head": "choice(gmp, gap)",
                         "model.dropout": "interval(0.0, 0.3)", "seed": 3},
                        ["head=gmp", "data.batch_size=64,128"])
    d = space.distributions
    assert d["optim.lr"] == optuna.distributions.FloatDistribution(0.0003, 0.03, log=True)
    assert d["filters"] == optuna.distributions.IntDistribution(8, 32, step=8)
    assert d["model.dropout"] == optuna.distributions.FloatDistribution(0.0, 0.3)
    assert d["data.batch_size"] == optuna.distributions.CategoricalDistribution([64, 128])
    assert "head" not in d and space.fixed["head"] == "head=gmp"  # a plain value fixes a key
    assert space.fixed["seed"] == "seed=3"
    with pytest.raises(SearchError, match="reversed"):
        parse_space({"model.dropout": "interval(0.3, 0.1)"}, [])
    with pytest.raises(SearchError, match="lower end > 0"):
        parse_space({"optim.lr": "tag(log, interval(0, 0.1))"}, [])


def test_pruner_settings_are_checked_and_rebuilt_alike() -> None:
    spec = pruner_spec("median", {"n_warmup_steps": 1}, max_epochs=6)
    pruner = make_pruner(spec)  # what the search and every job build from the stored spec
    assert isinstance(pruner, optuna.pruners.MedianPruner)
    assert (pruner._n_startup_trials, pruner._n_warmup_steps) == (5, 1)
    assert isinstance(make_pruner(pruner_spec("hyperband", {}, 6)),
                      optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner(pruner_spec("none", {}, 6)), optuna.pruners.NopPruner)
    for name, settings, named in [("asha", {}, "hydra.sweeper.pruner=asha"),
                                  ("median", {"warmup": 1}, "pruning.warmup"),
                                  ("successive_halving", {"reduction_factor": 1},
                                   "pruning.reduction_factor=1")]:
        with pytest.raises(SearchError, match=named.replace(".", r"\.")):
            pruner_spec(name, settings, 6)
