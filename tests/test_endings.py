"""How a job ends, written once (job/train.py's ENDINGS), the record of an interrupted job
(record/status.py's write_interrupted) and the undoing of a refused sweep's folder
(sweep/callbacks.py's abandon_sweep): in process, no subprocess."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from mnist_sweep.config import default_config
from mnist_sweep.job import train
from mnist_sweep.job.pruning import TrialPruned
from mnist_sweep.locks import LOCK_FILE, acquire
from mnist_sweep.record import status
from mnist_sweep.record.layout import CHECKPOINT, STATUS_FILE
from mnist_sweep.record.status import INTERRUPTED, RUNNING, write_interrupted, write_status
from mnist_sweep.sweep.callbacks import (
    abandon_sweep,
    describe_in_tensorboard,
    remember_new_folders,
)
from mnist_sweep.sweep.tensorboard import SUFFIX

# what ends each way in a test: the exception the job ended with (None: no exception)
EXCEPTIONS: dict[str, BaseException | None] = {
    train.CTRL_C: KeyboardInterrupt(), train.SIGTERM: None,
    train.LAUNCHER_EXIT: SystemExit(144), train.REQUEUED: None, train.OUT_OF_REQUEUES: None,
    train.PRUNED: TrialPruned(2, 0.5),
    train.WRITE_FAILED: OSError(errno.ENOSPC, "No space left on device", "status.json"),
    train.CRASHED: ValueError("boom"),
}


def job_statuses() -> set[str]:
    """Every status a job's record can end with: those record/status.py documents for the
    `status` field, less `running`."""
    line = next(text for text in (status.__doc__ or "").splitlines()
                if text.split()[:1] == ["status"])
    documented = set(line.split(None, 1)[1].split(" | "))
    assert {getattr(status, name.upper()) for name in documented} == documented
    return documented - {RUNNING}


def test_the_table_has_an_ending_for_every_status_a_job_can_end_with() -> None:
    recorded = {ending.status for ending in train.ENDINGS.values()} - {None}
    assert recorded == job_statuses()
    for how, ending in train.ENDINGS.items():
        # only an interrupted job has a checkpoint to continue from
        assert not ending.checkpoint or ending.status == INTERRUPTED, how
        # a sweep stops only where the process stops, in a single run too
        assert ending.sweep_goes_on or ending.single_exit != 0, how


def end(how: str, job_dir: Path, multirun: bool) -> BaseException | None:
    """End a running job `how` as run_job does (inside the except clause); what it raises."""
    write_status(job_dir, RUNNING, epoch=1)
    exc = EXCEPTIONS.get(how) or RuntimeError(how)
    try:
        try:
            raise exc
        except BaseException:
            train._end(how, job_dir, multirun, f"why: {how}", EXCEPTIONS.get(how))
    except BaseException as raised:  # what the ending raises is what is tested
        return raised
    return None


@pytest.mark.parametrize("with_checkpoint", [True, False])
@pytest.mark.parametrize("how", [how for how in train.ENDINGS if how != train.FINISHED])
def test_each_ending_records_and_stops_as_the_table_says(
        tmp_path: Path, how: str, with_checkpoint: bool) -> None:
    ending = train.ENDINGS[how]
    for multirun in (True, False):
        job_dir = tmp_path / str(multirun)
        if with_checkpoint:
            (job_dir / CHECKPOINT).parent.mkdir(parents=True)
            (job_dir / CHECKPOINT).write_bytes(b"ckpt")
        else:
            job_dir.mkdir()
        raised = end(how, job_dir, multirun)
        record = json.loads((job_dir / STATUS_FILE).read_text())
        assert record["status"] == (ending.status or RUNNING), (how, record)
        if ending.checkpoint:
            assert record["checkpoint"] == (str(job_dir / CHECKPOINT) if with_checkpoint
                                            else None), record
        else:
            assert "checkpoint" not in record, record
        if multirun:  # the sweep goes on where _end returns (and its exception goes no further)
            goes_on = raised is None and ending.single_exit is not None
            assert goes_on == ending.sweep_goes_on, (how, raised)
        elif ending.single_exit is None:  # run_job raises the job's own exception on
            assert raised is None, (how, raised)
        else:
            code = raised.code if isinstance(raised, SystemExit) else 0
            assert code == ending.single_exit, (how, raised)


def test_an_interrupted_record_names_its_checkpoint_only_when_there_is_one(
        tmp_path: Path) -> None:
    assert write_interrupted(tmp_path, "interrupted (SIGTERM)") is None
    record = json.loads((tmp_path / STATUS_FILE).read_text())
    assert (record["status"], record["error"], record["checkpoint"]) == (
        INTERRUPTED, "interrupted (SIGTERM)", None)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"the end of epoch 3")
    assert write_interrupted(tmp_path, "interrupted (SIGINT)") == ckpt
    record = json.loads((tmp_path / STATUS_FILE).read_text())
    assert (record["status"], record["error"], record["checkpoint"]) == (
        INTERRUPTED, "interrupted (SIGINT)", str(ckpt))


def start_sweep(sweep_dir: Path) -> None:
    """What on_multirun_start does to a sweep folder before a refusal: the folders it makes
    are noted, the lock taken, the HParams experiment written."""
    remember_new_folders(sweep_dir)
    acquire(sweep_dir, "sweep")
    describe_in_tensorboard(sweep_dir, [default_config()])
    assert (sweep_dir / LOCK_FILE).is_file() and experiments(sweep_dir)


def experiments(sweep_dir: Path) -> list[Path]:
    return list(sweep_dir.glob(f"events.out.tfevents.*{SUFFIX}"))


def test_a_refused_sweep_removes_the_folders_it_created_and_its_files(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "multirun" / "sweep"
    start_sweep(sweep_dir)
    abandon_sweep(sweep_dir)
    assert list(tmp_path.iterdir()) == []  # both levels it made, with its lock and experiment


def test_a_refused_sweep_leaves_a_folder_that_was_there_and_files_it_did_not_write(
        tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    finished = sweep_dir / "0_head=gmp"
    finished.mkdir(parents=True)
    write_status(finished, "finished", metrics={"test/acc": 0.99})
    (sweep_dir / "notes.txt").write_text("mine")
    start_sweep(sweep_dir)
    abandon_sweep(sweep_dir)
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["0_head=gmp", "notes.txt"]
    assert (sweep_dir / "notes.txt").read_text() == "mine"
    assert json.loads((finished / STATUS_FILE).read_text())["metrics"] == {"test/acc": 0.99}
    # a folder it created, where a user wrote meanwhile: the user's file and the folder stay
    new_dir = tmp_path / "new"
    start_sweep(new_dir)
    (new_dir / "notes.txt").write_text("mine")
    abandon_sweep(new_dir)
    assert [p.name for p in new_dir.iterdir()] == ["notes.txt"]


def test_a_rewritten_experiment_file_of_an_earlier_command_stays(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    describe_in_tensorboard(sweep_dir, [default_config()])  # an earlier command's
    start_sweep(sweep_dir)  # replaces it: the folder held one before, and holds one after
    abandon_sweep(sweep_dir)
    assert [p.name for p in sweep_dir.iterdir()] == [experiments(sweep_dir)[0].name]
