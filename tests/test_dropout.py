"""Dropout with 16-bit masks (mnist_sweep/job/dropout.py): the same element-wise dropout as
torch's, drawn from the generator checkpoints save."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from scipy.stats import binomtest

from mnist_sweep.config import ConfigError, default_config
from mnist_sweep.job.dropout import Dropout, masks_used, quantised_rate
from mnist_sweep.job.network import build_network
from mnist_sweep.job.signature import differences


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_the_drop_rate_and_scale_are_those_configured(p: float) -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 16, 26, 26) + 0.5  # no zeros of its own
    y = Dropout(p, "int16").train()(x)
    dropped = int((y == 0).sum())
    # the rate really drawn is the configured one, rounded to 1/65536
    assert abs(quantised_rate(p) - p) <= 2 ** -17
    assert binomtest(dropped, x.numel(), quantised_rate(p)).pvalue > 1e-3, dropped / x.numel()
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / (1 - quantised_rate(p)))


def test_the_gradient_is_the_mask_times_the_scale() -> None:
    torch.manual_seed(1)
    x = torch.randn(8, 16, 12, 12, requires_grad=True)
    y = Dropout(0.1, "int16").train()(x)
    g = torch.randn_like(y)
    y.backward(g)
    expected = torch.where(y != 0, g / (1 - quantised_rate(0.1)), torch.zeros(()))
    torch.testing.assert_close(x.grad, expected)


def test_masks_follow_the_generator_a_checkpoint_restores() -> None:
    drop = Dropout(0.1, "int16").train()
    x = torch.ones(4, 16, 10, 10)
    torch.manual_seed(3)
    state = torch.get_rng_state()  # what RandomState saves in a checkpoint
    first = drop(x)
    second = drop(x)
    torch.set_rng_state(state)
    assert torch.equal(drop(x), first) and not torch.equal(first, second)


def test_any_dense_layout_keeps_its_layout() -> None:
    x = torch.randn(16, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    y = Dropout(0.2, "int16").train()(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y[y != 0], x[y != 0] / (1 - quantised_rate(0.2)))
    # a strided view (no dense layout) still drops, with torch's own masks
    z = Dropout(0.2, "int16").train()(x[:, :, ::2])
    assert 0 < int((z == 0).sum()) < z.numel()


def test_eval_mode_and_rate_zero_pass_the_input_through() -> None:
    x = torch.randn(4, 3, 5, 5)
    assert Dropout(0.3, "int16").eval()(x) is x
    assert Dropout(0.0, "int16").train()(x) is x


def test_torch_masks_are_torch_s_dropout_and_auto_is_int16_on_the_cpu() -> None:
    x = torch.randn(4, 16, 10, 10)
    torch.manual_seed(5)
    ours = Dropout(0.1, "torch").train()(x)
    torch.manual_seed(5)
    assert torch.equal(ours, torch.nn.Dropout(0.1).train()(x))
    torch.manual_seed(5)
    auto = Dropout(0.1, "auto").train()(x)
    torch.manual_seed(5)
    assert torch.equal(auto, Dropout(0.1, "int16").train()(x))
    assert masks_used("auto", "cpu") == "int16" and masks_used("auto", "cuda") == "torch"
    assert masks_used("torch", "cpu") == "torch" and masks_used("int16", "cuda") == "int16"


def test_the_network_uses_the_configured_masks_and_keeps_its_parameters() -> None:
    net = build_network("flatten", False, 16, 0.1, 10, dropout_masks="torch")
    drops = [m for m in net if isinstance(m, Dropout)]
    assert len(drops) == 6 and {m.masks for m in drops} == {"torch"}
    assert sum(p.numel() for p in net.parameters()) == 12316
    assert set(net.state_dict()) == set(build_network("flatten").state_dict())


def test_a_bad_value_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"model.dropout_masks=int8 is not valid: expected "
                                          r"auto \| int16 \| torch"):
        replace(default_config().model, dropout_masks="int8")


def test_folders_from_before_the_setting_computed_torch_masks() -> None:
    """A job folder written before `model.dropout_masks` existed holds a run of torch's
    masks: it is the same job as `model.dropout_masks=torch` and another one than auto."""
    from mnist_sweep.job.signature import job_signature

    auto = default_config()
    old_record = {k: v for k, v in job_signature(auto).items() if k != "model.dropout_masks"}
    assert differences(old_record, auto) == ["model.dropout_masks: torch -> auto"]
    torch_masks = replace(auto, model=replace(auto.model, dropout_masks="torch"))
    assert differences(old_record, torch_masks) == []
