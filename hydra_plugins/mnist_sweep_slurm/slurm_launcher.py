"""Hydra instantiates plugins only from the `hydra_plugins` namespace: this is the launcher
`hydra/launcher=slurm` names, Hydra's submitit Slurm launcher with the additions described in
mnist_sweep/sweep/slurm.py (where their parts live)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as plugin
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf, open_dict

from mnist_sweep.job.signals import NUM_JOBS_ENV
from mnist_sweep.sweep.slurm import (
    SlurmRefused,
    check_cluster,
    record_jobs,
    record_stopped_job,
)

log = logging.getLogger("mnist_sweep")

# How often Slurm's accounting (one sacct call for every job) is asked which jobs without a
# result have ended: submitit asks ever less often, at most every 10 minutes, so a job killed
# outright (SIGKILL, the out-of-memory killer, a lost node) went unreported that long.
STATE_CHECK_S = 10.0
# How long a job Slurm says has ended may take to show its result file (a shared file system
# can be slow to show it): submitit's own grace, here counted from when each job was seen to
# end, so the jobs Slurm stopped share the wait instead of taking it one after another.
RESULT_GRACE_S = 15.0


class SlurmLauncher(plugin.SlurmLauncher):
    """Hydra's submitit Slurm launcher (conf/hydra/launcher/slurm.yaml), checked against the
    cluster before it submits, waiting for each job on its own, keeping the jobs' Slurm ids
    (mnist_sweep/sweep/slurm.py says why)."""

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """In the job: submitit's handler of Slurm's warning signal (USR2 before a time limit
        or a preemption) checkpoints, requeues and ends the process by raising wherever the
        signal lands (job/signals.py says what that does inside a write): a job warned so
        mid-batch did not end before Slurm killed it, its status still `running`. It runs
        at the end of the current batch instead, as SIGTERM and Ctrl-C do."""
        import signal

        import submitit

        from mnist_sweep.job.signals import call_between_batches

        usr_sig = submitit.JobEnvironment._usr_sig()
        handler = signal.getsignal(usr_sig)
        if callable(handler):
            signal.signal(usr_sig, lambda signum, frame: call_between_batches(
                lambda: handler(signum, frame)))
        return super().__call__(*args, **kwargs)

    def setup(self, **kwargs: Any) -> None:
        """Hydra sets the launcher up once, in the command's main thread, before the first
        job is launched: the place to refuse what this cluster can never run."""
        super().setup(**kwargs)
        try:
            check_cluster(self.params)
        except SlurmRefused as exc:
            from mnist_sweep.sweep.callbacks import abandon_sweep

            print(f"Error: {exc.message}", file=sys.stderr)
            # on_multirun_start ran: the lock, the HParams experiment and new folders go
            abandon_sweep(Path(str(self.config.hydra.sweep.dir)))
            raise

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        """The plugin's own launch (same executor, parameters and job arguments), waiting
        for each job on its own instead of raising at the first uncompleted one."""
        import submitit

        assert self.config is not None
        init_keys = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
            **{f"{self._EXECUTOR}_max_num_timeout": self.params["max_num_timeout"]})
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{
            key if key in baseparams else f"{self._EXECUTOR}_{key}": value
            for key, value in self.params.items() if key not in init_keys})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                               Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params, strict=True))
        record_jobs(sweep_dir, {params[2]: job.job_id
                                for params, job in zip(job_params, jobs, strict=True)})
        return self._results(jobs, [(params[0], params[2]) for params in job_params])

    def _results(self, jobs: list[Any], jobs_overrides: list[tuple[list[str], int]]
                 ) -> list[JobReturn]:
        """Every job's JobReturn, in order, waiting for all jobs at once: a job is taken as
        soon as its result file is there, or as stopped once Slurm has said it ended and
        RESULT_GRACE_S passed without one. Each is logged (and a stopped one recorded) as
        it comes, whatever the order."""
        from submitit.core.utils import UncompletedJobError

        results: dict[int, JobReturn] = {}
        ended_at: dict[int, float] = {}
        checked = time.monotonic()
        while len(results) < len(jobs):
            force = time.monotonic() - checked >= STATE_CHECK_S
            if force:
                checked = time.monotonic()
            for i, job in enumerate(jobs):
                if i in results:
                    continue
                if job.paths.result_pickle.exists():
                    results[i] = self._result(job, *jobs_overrides[i])
                elif i in ended_at or job.done(force_check=force):
                    ended_at.setdefault(i, time.monotonic())
                    if time.monotonic() - ended_at[i] >= RESULT_GRACE_S:
                        exc = UncompletedJobError(f"Job {job.job_id} has not produced any "
                                                  f"output (state: {job.state})")
                        results[i] = self._stopped(job, *jobs_overrides[i], exc)
                force = False  # one sacct call covers every job
            if len(results) < len(jobs):
                time.sleep(1.0)
        return [results[i] for i in range(len(jobs))]

    def _result(self, job: Any, overrides: list[str], num: int) -> JobReturn:
        """The JobReturn of a job whose result file is there."""
        from submitit.core.utils import UncompletedJobError

        try:
            ret = job.results()[0]
        except UncompletedJobError as exc:  # FailedJobError: the job raised past run_job
            return self._stopped(job, overrides, num, exc)
        if ret.status == JobStatus.FAILED and isinstance(ret._return_value, UncompletedJobError):
            # the time-limit warning with no requeue left came before the training started
            # (or after it ended): Hydra's run_job returned submitit's error as the result
            return self._stopped(job, overrides, num, ret._return_value,
                                 time_limit=str(ret._return_value))
        return ret

    def _stopped(self, job: Any, overrides: list[str], num: int, exc: Exception,
                 time_limit: str | None = None) -> JobReturn:
        from mnist_sweep.sweep.plan import job_folder

        assert self.hydra_context is not None and self.config is not None
        job_cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        job_dir = job_folder(job_cfg, num)
        state = str(job.state)
        outcome = record_stopped_job(job_dir, state, str(job.job_id), time_limit)
        shown = [o for o in filter_overrides(overrides) if not o.startswith("++search_trial=")]
        why = (f"reached its time limit with no requeue left ({time_limit})" if time_limit
               else f"ended {state} without a result ({type(exc).__name__})")
        log.error("[job %d of %s] %s -> %s: Slurm job %s %s; its log: %s", num + 1,
                  os.environ.get(NUM_JOBS_ENV, "?"), " ".join(shown) or "(defaults)",
                  outcome, job.job_id, why, job.paths.stderr)
        ret = JobReturn(overrides=overrides, cfg=job_cfg, task_name=str(job_cfg.hydra.job.name),
                        working_dir=str(job_dir), status=JobStatus.COMPLETED)
        ret.hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(job_dir)}}})
        with open_dict(ret.hydra_cfg):
            ret.hydra_cfg.hydra.job = {"num": num}
        ret.return_value = None
        return ret
