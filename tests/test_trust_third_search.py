"""Third trust pass, the search: a trial refused at its start is failed, never given the
value its folder holds from another run; a `hydra.sweep.subdir` the grid refuses is refused
by a search too; a damaged line inside the study journal is named by its line number."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import run_in_process

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

from mnist_sweep.job.trial import SearchError, open_storage  # noqa: E402

TINY = ["data.val_size=128", "trainer.max_epochs=2", "trainer.limit_train_batches=5",
        "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
        "trainer.enable_progress_bar=false", "trainer.num_threads=1"]
# fixed architecture, numbered folders with known names: trial N trains in trialN
SEARCH = ["-m", "hparams_search=optuna", "hydra.sweeper.pruner=none", "head=gmp",
          "separable=false", "filters=16", "hydra.sweep.subdir=trial${hydra.job.num}", *TINY]


def study_of(journal: Path) -> optuna.Study:
    return optuna.load_study(study_name="mnist_sweep", storage=open_storage(str(journal)))


def errors(result) -> int:
    """How many error messages a command printed (one per line starting `Error: `)."""
    return sum(line.startswith("Error: ") for line in result.stderr.splitlines())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_search(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-trial search (read-only for the tests: they copy it)."""
    cwd = tmp_path_factory.mktemp("finished_search")
    result = run_in_process([*SEARCH, f"data.root={tiny_root}", "hydra.sweeper.n_trials=2",
                             "hydra.sweep.dir=s"], cwd=cwd)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return cwd / "s"


# ---- 1. a refused trial is FAIL; a subdir the trials would share is refused up front ----

@pytest.mark.parametrize(("subdir", "said"), [
    ("run", "jobs 0 and 1 would share the folder"),
    ("../escape", "which is not inside the sweep folder"),
])
def test_a_search_refuses_a_subdir_its_trials_would_share_or_leave_the_sweep_by(
        tiny_root: Path, tmp_path: Path, subdir: str, said: str) -> None:
    """The grid's rule, checked on two job numbers before the first trial: the trials would
    otherwise train in one folder (all but the first refused) or outside the sweep."""
    result = run_in_process(["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *TINY,
                             f"data.root={tiny_root}", f"hydra.sweep.subdir={subdir}",
                             "hydra.sweep.dir=s"], cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert said in result.stderr and "hydra.sweep.subdir" in result.stderr
    assert errors(result) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "escape").exists()


def test_a_trial_refused_when_it_starts_is_failed_not_given_the_folders_value(
        finished_search: Path, tiny_root: Path, tmp_path: Path) -> None:
    """The journal moved away to start a new study in the same sweep folder: the new trial 0
    (other parameters) is refused in trial0, which holds the old trial 0's finished run. The
    study must record it failed, not complete with the old run's value."""
    sweep = tmp_path / "s"
    shutil.copytree(finished_search, sweep)
    old = study_of(sweep / "optuna.journal").trials[0]
    (sweep / "optuna.journal").rename(sweep / "optuna.journal.old")
    old_status = (sweep / "trial0" / "status.json").read_bytes()

    result = run_in_process([*SEARCH, f"data.root={tiny_root}", "hydra.sweeper.n_trials=1",
                             "hydra.sweeper.sampler.seed=7", "hydra.sweep.dir=s"], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]  # a refused job ends the sweep with 1
    assert "refused when it started: trial0" in result.stderr, output[-3000:]
    [trial] = study_of(sweep / "optuna.journal").trials
    assert trial.params != old.params  # another configuration than the folder's run
    assert trial.state == TrialState.FAIL and trial.value is None, (trial.state, trial.value)
    assert trial.user_attrs["error"].startswith("refused when it started: ")
    assert "search: 0 complete, 0 pruned, 1 failed" in output
    assert (sweep / "trial0" / "status.json").read_bytes() == old_status


# ---- 7. a damaged line inside optuna.journal --------------------------------------------

def damage_line(journal: Path, number: int) -> int:
    """Cut line `number` (1-based) of the journal in half, keeping its line end; returns
    the number of lines."""
    lines = journal.read_bytes().split(b"\n")[:-1]
    assert 1 < number < len(lines)  # inside the file: not its first or last line
    lines[number - 1] = lines[number - 1][: len(lines[number - 1]) // 2]
    journal.write_bytes(b"\n".join(lines) + b"\n")
    return len(lines)


def test_a_damaged_journal_line_is_named_by_its_line_and_the_file_kept(
        finished_search: Path, tmp_path: Path) -> None:
    journal = tmp_path / "optuna.journal"
    shutil.copy(finished_search / "optuna.journal", journal)
    total = damage_line(journal, 20)
    before = journal.read_bytes()
    with pytest.raises(SearchError) as refused:
        open_storage(str(journal))
    message = str(refused.value)
    assert f"the study journal {journal} is damaged: line 20 of its {total} records" in message
    assert "Move that file away to start a new study" in message and "repair line 20" in message
    assert "hydra.sweeper.storage" not in message and "column" not in message
    assert journal.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optuna.journal"]  # no lock left


def test_a_search_on_a_journal_damaged_inside_exits_2_and_changes_nothing(
        finished_search: Path, tiny_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "s"
    shutil.copytree(finished_search, sweep)
    damage_line(sweep / "optuna.journal", 20)
    before = snapshot(sweep)
    result = run_in_process([*SEARCH, f"data.root={tiny_root}", "hydra.sweeper.n_trials=3",
                             "hydra.sweep.dir=s"], cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert errors(result) == 1 and "Traceback" not in result.stderr
    assert f"{(sweep / 'optuna.journal').resolve()} is damaged: line 20 of" in result.stderr
    assert "hydra.sweeper.storage" not in result.stderr
    assert snapshot(sweep) == before  # the journal byte for byte, and every other file
