"""Config composition, the architecture family's parameter counts, and value validation."""

from __future__ import annotations

import dataclasses
import itertools
import typing
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import MISSING

from mnist_sweep.config import ConfigError, RunConfig, default_config, validate
from mnist_sweep.job.network import build_network, count_parameters
from mnist_sweep.paths import config_dir
from tests.conftest import run_cli, run_in_process


def run_without_gpus(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None):
    """The command with CUDA_VISIBLE_DEVICES="" (in env_extra) hiding every GPU. That works
    only in a process whose CUDA has not started: where torch sees a GPU, this process's may
    have, so there it runs in a new process; without one, in this process."""
    runner = run_in_process if not torch.cuda.is_available() else run_cli
    return runner(args, cwd=cwd, env_extra=env_extra)


# Trainable parameters of every head x separable x filters combination.
EXPECTED_PARAMS = {
    ("gmp", False, 16): 12252, ("gmp", False, 32): 41996,
    ("gmp", True, 16): 10348, ("gmp", True, 32): 34092,
    ("gap", False, 16): 12252, ("gap", False, 32): 41996,
    ("gap", True, 16): 10348, ("gap", True, 32): 34092,
    ("flatten", False, 16): 12316, ("flatten", False, 32): 37516,
    ("flatten", True, 16): 10412, ("flatten", True, 32): 29612,
}


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize(("head", "separable", "filters"),
                         list(itertools.product(["gmp", "gap", "flatten"], [False, True],
                                                [16, 32])))
def test_every_combination_composes_and_builds(head: str, separable: bool, filters: int) -> None:
    cfg = validate(compose_cfg([f"head={head}", f"separable={str(separable).lower()}",
                                f"filters={filters}"]))
    assert (cfg.model.head, cfg.model.separable, cfg.model.filters) == (head, separable, filters)
    net = build_network(cfg.model.head, cfg.model.separable, cfg.model.filters)
    params = count_parameters(net)
    assert params == EXPECTED_PARAMS[(head, separable, filters)]
    if filters == 16:
        assert params < 20_000
    assert net.eval()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_seed004_preset_is_the_week2_network() -> None:
    cfg = validate(compose_cfg(["experiment=seed004"]))
    net = build_network(cfg.model.head, cfg.model.separable, cfg.model.filters,
                        cfg.model.dropout, cfg.model.transition_channels)
    trainable = count_parameters(net)
    bn_running_stats = sum(m.running_mean.numel() + m.running_var.numel()
                           for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert trainable == 12_316
    assert trainable + bn_running_stats == 12_516  # Keras' "Total params"
    assert (cfg.optim.name, cfg.optim.lr, cfg.scheduler.name, cfg.scheduler.decay) == (
        "adam", 0.003, "inverse_time", 0.319)
    assert (cfg.trainer.max_epochs, cfg.data.batch_size) == (20, 128)


@pytest.mark.parametrize("preset", ["seed000_gmp", "seed000_gap", "tuned", "best"])
def test_presets_stay_under_budget(preset: str) -> None:
    cfg = validate(compose_cfg([f"experiment={preset}"]))
    net = build_network(cfg.model.head, cfg.model.separable, cfg.model.filters,
                        cfg.model.dropout, cfg.model.transition_channels)
    assert count_parameters(net) < 20_000
    assert cfg.trainer.max_epochs <= 20


def test_the_small_preset_stays_under_ten_thousand_in_fifteen_epochs() -> None:
    cfg = validate(compose_cfg(["experiment=under10k"]))
    net = build_network(cfg.model.head, cfg.model.separable, cfg.model.filters,
                        cfg.model.dropout, cfg.model.transition_channels)
    assert count_parameters(net) == 9_830
    assert cfg.trainer.max_epochs == 15 and cfg.model.ema_decay == 0.999


def test_best_preset_is_tuned_with_smoothing_and_scaling() -> None:
    tuned, best = (validate(compose_cfg([f"experiment={p}"])) for p in ("tuned", "best"))
    assert (best.model.label_smoothing, best.data.augment.scale) == (0.1, 0.1)
    best.model.label_smoothing, best.data.augment.scale = (tuned.model.label_smoothing,
                                                           tuned.data.augment.scale)
    assert best == tuned


def test_scalars_are_overridable() -> None:
    cfg = validate(compose_cfg(["optim.lr=0.01", "data.batch_size=64", "trainer.max_epochs=3",
                                "model.dropout=0.2", "seed=7", "optim.weight_decay=0.001"]))
    assert (cfg.optim.lr, cfg.data.batch_size, cfg.trainer.max_epochs, cfg.model.dropout,
            cfg.seed, cfg.optim.weight_decay) == (0.01, 64, 3, 0.2, 7, 0.001)


@pytest.mark.parametrize(("override", "needle"), [
    ("model.filters=0", "model.filters=0 is not valid"),
    ("model.dropout=1.5", "model.dropout=1.5 is not valid"),
    ("optim.lr=-1", "optim.lr=-1.0 is not valid"),
    ("data.batch_size=0", "data.batch_size=0 is not valid"),
    ("model.filters=abc", "model.filters"),
    # values that used to be accepted and then ignored or misread
    ("trainer.devices=2", "one job trains on one device"),
    ("trainer.accelerator=cpu,trainer.precision=16-mixed", "trainer.precision=16-mixed is not"),
    ("~head", "the `head` config group was removed"),
    ("~optim", "the `optim` config group was removed"),
    ("scheduler=onecycle,scheduler.max_lr=0.001", "scheduler.max_lr=0.001 is not valid"),
])
def test_bad_values_raise_config_error(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        validate(compose_cfg(override.split(",")))


def test_onecycle_starts_at_optim_lr_and_peaks_at_max_lr() -> None:
    import torch

    from mnist_sweep.job.schedules import build_optimizer, build_scheduler

    run_cfg = validate(compose_cfg(["scheduler=onecycle", "scheduler.max_lr=0.01"]))
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], run_cfg.optim)
    scheduler = build_scheduler(optimizer, run_cfg.scheduler, run_cfg.optim.lr, 100, 1)
    assert scheduler is not None
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler["scheduler"].step()
    assert lrs[0] == pytest.approx(0.003) and max(lrs) == pytest.approx(0.01)


@pytest.mark.parametrize(("args", "needle"), [
    (["model.filters=0"], "model.filters=0 is not valid"),
    (["model.dropout=1.5"], "model.dropout=1.5 is not valid"),
    (["optim.lr=-1"], "optim.lr=-1.0 is not valid"),
    (["data.batch_size=0"], "data.batch_size=0 is not valid"),
    (["head=foo"], "head=foo is not an option of the `head` config group"),
    (["model.fliters=16"], "fliters"),
    (["optim.lr=0.01,-1", "-m"], "optim.lr=-1.0 is not valid"),
    (["trainer.accelerator=gpu"], "torch sees no CUDA GPU on"),
    (["trainer.precision=16-mixed"], "trainer.precision=16-mixed cannot train on"),
    (["head=gmp,gap", "trainer.devices=2", "-m"], "trainer.devices=2 is not valid"),
    (["~head"], "`head` config group was removed"),
])
def test_cli_rejects_bad_input_with_one_message(tmp_path, args, needle) -> None:
    # GPUs hidden: "no GPU" must hold on a machine with one too (a single run trains here)
    proc = run_without_gpus([*args, "hydra.sweep.dir=sweep", "hydra.run.dir=run"],
                            cwd=tmp_path, env_extra={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    # nothing half-written: no run or sweep folder was created
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_cli_help_and_cfg_job(tmp_path) -> None:
    helped = run_in_process(["--help"], cwd=tmp_path)
    assert helped.returncode == 0 and "head: flatten, gap, gmp" in helped.stdout
    printed = run_in_process(["--cfg", "job", "head=gap", "optim.lr=0.01"], cwd=tmp_path)
    assert printed.returncode == 0
    assert "head: gap" in printed.stdout and "lr: 0.01" in printed.stdout


def test_training_on_all_images_leaves_nothing_to_optimise_on_validation() -> None:
    assert validate(compose_cfg(["data.val_size=0"])).data.val_size == 0
    with pytest.raises(ConfigError, match="optimized_metric=val/acc_best is not valid"):
        validate(compose_cfg(["data.val_size=0", "hparams_search=optuna"]))


def test_folder_names_leave_out_the_overrides_the_record_calls_quiet() -> None:
    from mnist_sweep.record.settings import QUIET_OVERRIDES

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    assert list(cfg.hydra.job.config.override_dirname.exclude_keys) == list(QUIET_OVERRIDES)


def schema_fields(cls: type, prefix: str = "") -> typing.Iterator[tuple[str, dataclasses.Field]]:
    """Every field of the schema, nested dataclasses' fields included, by its dotted key."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield prefix + f.name, f
        for inner in typing.get_args(hints[f.name]) or (hints[f.name],):
            if dataclasses.is_dataclass(inner):
                yield from schema_fields(inner, f"{prefix}{f.name}.")


def test_every_default_is_written_once_in_conf() -> None:
    """The schema's dataclasses hold no default, so none can be written twice: conf/ alone
    gives them, and default_config() is conf/ composed with no overrides."""
    from hydra.core.global_hydra import GlobalHydra

    from mnist_sweep.config import _composed_defaults

    defaults = {key: f.default for key, f in schema_fields(RunConfig)
                if f.default != MISSING or f.default_factory is not dataclasses.MISSING}
    # the two keys the sweepers set, which no YAML of a plain run writes
    assert defaults == {"optimized_metric": None, "search_trial": None}
    composed = compose_cfg([])
    assert not set(defaults) & set(composed)
    _composed_defaults.cache_clear()  # composed here, outside any Hydra app
    assert not GlobalHydra.instance().is_initialized()
    assert default_config() == validate(composed)
    assert not GlobalHydra.instance().is_initialized()
    changed = default_config()
    changed.optim.lr = 1.0
    assert default_config().optim.lr == validate(composed).optim.lr  # each call a fresh copy


def test_defaults_compose_inside_a_running_hydra_app() -> None:
    """The report a sweep writes at its end asks for the defaults while Hydra's global
    instance is the sweep's: conf/ is composed beside it, and the app keeps its own."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import JobRuntime

    from mnist_sweep.config import _composed_defaults

    _composed_defaults.cache_clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3",
                               job_name="the_sweep"):
        app = GlobalHydra.instance()
        running = app.hydra
        defaults = default_config()
        assert GlobalHydra.instance() is app and app.hydra is running
        assert JobRuntime.instance().get("name") == "the_sweep"
        after = compose(config_name="config", overrides=["optim.lr=0.01"],
                        return_hydra_config=True)  # the app composes on as before
        assert after.optim.lr == 0.01 and after.hydra.job.name == "the_sweep"
    assert not GlobalHydra.instance().is_initialized()
    assert defaults == validate(compose_cfg([]))
