"""The CUDA path, proven where a CPU can prove it: the generator kept for the training GPU, a
deterministic global pooling, the device checked where the job runs, the thread governor as
a callback (torch.compile captures graphs), no host reads per training step, a free GPU taken
by lock, and the device each run really used in its record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from mnist_sweep.job import threads
from mnist_sweep.job.checkpoints import RandomState, cuda_state_to_restore
from mnist_sweep.job.devices import GPU_LOCK, choose_gpu
from mnist_sweep.job.network import GlobalPool, build_network
from mnist_sweep.locks import hold_if_free
from tests.conftest import REPO, TINY, report_in_process
from tests.test_config import run_without_gpus

# GPUs hidden from a command: in this process where torch sees none (nothing to hide), in a
# new one where it sees one (tests/test_config.py: run_without_gpus)
NO_GPU = {"CUDA_VISIBLE_DEVICES": ""}


def status_of(folder: Path) -> dict:
    return json.loads((folder / "status.json").read_text())


# 1. the generator of the GPU the job trains on

def test_a_checkpoint_of_two_gpus_generators_resumes_where_there_is_none() -> None:
    """A 2-GPU sweep's checkpoint held both GPUs' states, restored by index: on a machine
    (or a Slurm job) that sees fewer GPUs that raised IndexError on every retry."""
    state = {"torch": torch.get_rng_state(), "cuda": [torch.zeros(16, dtype=torch.uint8),
                                                      torch.ones(16, dtype=torch.uint8)]}
    RandomState().load_state_dict(state)  # no GPU here: the CPU generator alone
    assert torch.equal(torch.get_rng_state(), state["torch"])
    # which GPU trained cannot be told from such a checkpoint: none is restored
    assert cuda_state_to_restore(state) is None
    assert torch.equal(cuda_state_to_restore({"cuda": [state["cuda"][1]]}), state["cuda"][1])
    # the new format keeps exactly one: the training GPU's
    assert torch.equal(cuda_state_to_restore({"cuda_device": state["cuda"][0]}),
                       state["cuda"][0])
    assert set(RandomState().state_dict()) == {"torch"}  # no CUDA state without a GPU in use


# 2. a global max pool with a deterministic backward

@pytest.mark.parametrize(("kind", "reference"), [("max", nn.AdaptiveMaxPool2d(1)),
                                                 ("mean", nn.AdaptiveAvgPool2d(1))])
def test_the_global_pools_compute_what_the_adaptive_pools_computed(kind, reference) -> None:
    torch.manual_seed(0)
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(32, 10, 2, 2).contiguous(memory_format=layout)
        grad = torch.randn(32, 10, 1, 1)
        ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
        out_ours, out_theirs = GlobalPool(kind)(ours), reference(theirs)
        (out_ours * grad).sum().backward()
        (out_theirs * grad).sum().backward()
        assert torch.equal(out_ours, out_theirs)
        assert torch.equal(ours.grad, theirs.grad)


def test_checkpoints_of_the_adaptive_pool_network_still_load() -> None:
    net = build_network("gmp")
    old = build_network("gmp")
    old[-2] = nn.AdaptiveMaxPool2d(1)  # the head's pool as it was
    net.load_state_dict(old.state_dict(), strict=True)
    with torch.no_grad():
        x = torch.randn(4, 1, 28, 28)
        assert torch.equal(net.eval()(x), old.eval()(x))


# 3. the device is checked where the job runs

def test_a_gpu_sweep_submits_and_each_job_fails_where_it_finds_no_gpu(tiny_root,
                                                                      tmp_path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    # the submitting process here where there is no GPU; the jobs are submitit's processes
    proc = run_without_gpus(["-m", "head=gmp,gap", "trainer.accelerator=gpu",
                             "hydra/launcher=submitit_local", f"data.root={tiny_root}", *TINY,
                             "hydra.sweep.dir=sweep"], cwd=tmp_path, env_extra=NO_GPU)
    assert proc.returncode == 1, proc.stderr[-3000:]
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if (p / "status.json").is_file())
    assert len(jobs) == 2  # submitted: the submitting process did not refuse the sweep
    for job in jobs:
        status = status_of(job)
        assert status["status"] == "failed"
        assert status["error"].startswith("trainer.accelerator=gpu: torch sees no CUDA GPU on ")
        assert "where this job runs" in status["error"]
        assert "Traceback" not in (job / "cli.log").read_text()
    assert "2 job(s) did not finish" in proc.stderr


# 4. the thread governor is a callback, not a hook on every module

def test_the_thread_governor_registers_no_module_hook_and_compile_captures_graphs() -> None:
    from torch.nn.modules import module as module_globals

    start = torch.get_num_threads()
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    try:
        governor = threads.ThreadGovernor(max_threads=2, cpus={0, 1})
        threads.set_cpu_threads(None)
        assert not module_globals._global_forward_pre_hooks
        assert not module_globals._global_forward_hooks
        net = build_network("gmp")
        compiled = torch.compile(net, backend=counting_backend)
        torch._dynamo.reset()

        class Checked(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                governor.last = (0.0, *governor.last[1:])  # due at every batch
                governor.on_train_batch_start(trainer, pl_module, batch, batch_idx)
                compiled(batch[0])

        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.randn(8, 1, 28, 28),
                                           torch.randint(0, 10, (8,))), batch_size=4)

        class Fit(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = build_network("gmp")

            def training_step(self, batch, batch_idx):
                return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.01)

        pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False,
                   callbacks=[Checked()]).fit(Fit(), loader)
        assert graphs, "torch.compile captured no graph"
        assert not module_globals._global_forward_pre_hooks
    finally:
        threads.set_cpu_threads(start)
        torch._dynamo.reset()


# 5. no host reads per training step

@pytest.mark.parametrize("configs", ["default,ema", "bf16,augment"])
def test_a_training_step_reads_nothing_back_to_the_host(tiny_root, tmp_path, configs) -> None:
    out = tmp_path / "reads.json"
    proc = subprocess.run([sys.executable, "benchmarks/host_reads.py", "--data-root",
                           str(tiny_root), "--steps", "4", "--configs", configs,
                           "--override", "data.val_size=128", "--override", "data.batch_size=32",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, **NO_GPU})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results) == set(configs.split(","))
    for name, result in results.items():
        assert result["reads_per_step"] == 0, (name, result["reads"])


# 6. a free GPU, by lock

def taken(count: int, start: int, lock_dir: Path) -> int:
    """The GPU a job would take now (its lock released again)."""
    index, fd = choose_gpu(count, start, lock_dir)
    assert fd is not None
    os.close(fd)
    return index


def test_a_job_takes_a_gpu_no_other_job_holds(tmp_path) -> None:
    assert taken(4, 1, tmp_path) == 1  # the first choice, when free
    held = [hold_if_free(tmp_path / GPU_LOCK.format(index=i)) for i in (1, 2)]
    try:
        assert taken(4, 1, tmp_path) == 3  # 1 and 2 are held: the next free one
        # held by another process: the same
        other = subprocess.Popen([sys.executable, "-c", (
            "import sys, time; from pathlib import Path; from mnist_sweep.locks import "
            "hold_if_free; fd = hold_if_free(Path(sys.argv[1])); print('held', flush=True); "
            "time.sleep(60)"), str(tmp_path / GPU_LOCK.format(index=3))],
            stdout=subprocess.PIPE, text=True, cwd=REPO)
        try:
            assert other.stdout.readline().strip() == "held"
            assert taken(4, 1, tmp_path) == 0
            # every GPU held: share the first choice rather than wait
            last = hold_if_free(tmp_path / GPU_LOCK.format(index=0))
            assert choose_gpu(4, 1, tmp_path) == (1, None)
            os.close(last)
        finally:
            other.kill()
            other.wait()
    finally:
        for fd in held:
            os.close(fd)
    assert choose_gpu(2, 5, None) == (1, None)  # no sweep folder to lock in


# 8. the device each run used, and what the signature leaves out

def test_the_record_names_the_device_used_and_accelerator_is_not_the_job(tiny_root,
                                                                        tmp_path) -> None:
    args = [f"data.root={tiny_root}", *TINY, "hydra.run.dir=run"]
    first = run_without_gpus([*args, "trainer.accelerator=cpu"], cwd=tmp_path,
                             env_extra=NO_GPU)
    assert first.returncode == 0, first.stderr[-3000:]
    status = status_of(tmp_path / "run")
    assert status["device"] == "cpu"
    assert torch.backends.cpu.get_cpu_capability() in status["device_name"]
    assert status["cpu_threads"] == [1]
    assert not any(k.startswith(("trainer.accelerator", "trainer.devices"))
                   for k in status["signature"])
    assert status["signature"]["trainer.precision"] == "auto"
    assert status["precision"] in ("bf16-mixed", "32-true")  # what auto chose on this CPU
    # `auto` masks are the 16-bit ones on the CPU, and the record says so
    assert status["signature"]["model.dropout_masks"] == "auto"
    assert status["dropout_masks"] == "int16"
    # the same job asked for with accelerator=auto is the same finished job, not another
    again = run_without_gpus([*args, "trainer.accelerator=auto"], cwd=tmp_path,
                             env_extra=NO_GPU)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to do" in again.stdout


def test_a_run_resumed_on_another_kind_of_device_says_so(tiny_root, tmp_path) -> None:
    args = [f"data.root={tiny_root}", *TINY, "hydra.run.dir=run", "trainer.accelerator=cpu"]
    first = run_without_gpus(args, cwd=tmp_path, env_extra=NO_GPU)
    assert first.returncode == 0, first.stderr[-3000:]
    # the same folder as if a run on a GPU had been interrupted after its last epoch
    run = tmp_path / "run"
    status = status_of(run)
    status.update(status="interrupted", device="cuda", device_name="NVIDIA H200")
    (run / "status.json").write_text(json.dumps(status))
    resumed = run_without_gpus(args, cwd=tmp_path, env_extra=NO_GPU)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = (run / "cli.log").read_text()
    assert log.count("this run started on cuda and continues on cpu") == 1
    assert status_of(run)["device"] == "cpu"


def test_the_report_says_when_runs_trained_on_different_devices(tiny_root, tmp_path) -> None:
    proc = run_without_gpus(["-m", "head=gmp,gap", f"data.root={tiny_root}", *TINY,
                             "trainer.accelerator=cpu", "hydra.sweep.dir=sweep"], cwd=tmp_path,
                            env_extra=NO_GPU)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Trained on different devices" not in proc.stdout  # one device: nothing to say
    job = next(p for p in (tmp_path / "sweep").iterdir() if p.name.startswith("1_"))
    status = status_of(job)
    cpu_name = status["device_name"]
    status.update(device="cuda", device_name="NVIDIA H200")
    (job / "status.json").write_text(json.dumps(status))
    report = report_in_process(["sweep"], cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    summary = (tmp_path / "sweep" / "summary.md").read_text()
    (note,) = [ln for ln in summary.splitlines() if ln.startswith("Trained on different devices")]
    assert f"job 0 on `{cpu_name}`" in note and "job 1 on `NVIDIA H200`" in note
    rows = (tmp_path / "sweep" / "summary.csv").read_text()
    assert "NVIDIA H200" in rows and cpu_name in rows
