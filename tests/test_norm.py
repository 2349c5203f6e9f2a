"""BatchNorm statistics over the active elements (dyna_stream.model.norm) and their use in training."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dyna_stream.backbones.layers import ConvUnit, Source
from dyna_stream.model.dynapruner import DynaPruner
from dyna_stream.model.norm import active_batch_norm

from conftest import TINY_BACKBONES, tiny_dyna


def _pair(channels: int = 5, momentum: float | None = 0.1) -> tuple[nn.BatchNorm2d, nn.BatchNorm2d]:
    reference = nn.BatchNorm2d(channels, momentum=momentum)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 2.0)
        reference.bias.uniform_(-1.0, 1.0)
        reference.running_mean.uniform_(-1.0, 1.0)
        reference.running_var.uniform_(0.5, 2.0)
    twin = nn.BatchNorm2d(channels, momentum=momentum)
    twin.load_state_dict(reference.state_dict())
    return reference.train(), twin.train()


@pytest.mark.parametrize("momentum", [0.1, None])
def test_all_active_is_plain_batchnorm(momentum):
    reference, twin = _pair(momentum=momentum)
    x = torch.randn(4, 5, 6, 7) * 3 + 1
    for _ in range(2):      # twice: the cumulative average (momentum None) moves on the second batch
        expected = reference(x)
        got = active_batch_norm(x, twin, torch.ones(1, 1, 6, 7))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(twin, name), getattr(reference, name))


def test_statistics_are_those_of_the_active_elements():
    """Equal to plain BatchNorm over the active elements alone; inactive values change nothing."""
    reference, norm = _pair(channels=3)
    x = torch.randn(4, 3, 8, 8)
    active = torch.zeros(4, 1, 8, 8)
    active[:, :, :4] = 1                                  # top half of every sample
    out = active_batch_norm(x, norm, active)
    expected = reference(x[:, :, :4])                     # plain BatchNorm on the active rows only
    torch.testing.assert_close(out[:, :, :4], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(norm.running_mean, reference.running_mean)
    torch.testing.assert_close(norm.running_var, reference.running_var)

    again, other = _pair(channels=3)
    noisy = x.clone()
    noisy[:, :, 4:] = 1e3 * torch.randn_like(noisy[:, :, 4:])
    torch.testing.assert_close(active_batch_norm(noisy, again, active)[:, :, :4],
                               active_batch_norm(x, other, active)[:, :, :4])


def _expanded_reference(x, norm, active):
    """The definition, with the mask expanded to x's size: masked mean, masked centred variance."""
    active = active.expand_as(x)
    count = active.sum((0, 2, 3)).clamp_min(1)
    mean = (x * active).sum((0, 2, 3)) / count
    centred = x - mean[:, None, None]
    var = (centred.square() * active).sum((0, 2, 3)) / count
    return centred * torch.rsqrt(var + norm.eps)[:, None, None] * norm.weight[:, None, None] + norm.bias[:, None, None]


@pytest.mark.parametrize("factors", ["tiles", "channels", "both", "none"])
def test_factored_statistics_equal_the_expanded_definition_values_and_gradients(factors):
    generator = torch.Generator().manual_seed(3)
    x = (torch.randn(3, 4, 5, 6, generator=generator) * 2 + 0.5).requires_grad_()
    tiles = (torch.rand(3, 1, 5, 6, generator=generator) < 0.6).float() if factors in ("tiles", "both") else None
    channels = (torch.rand(3, 4, 1, 1, generator=generator) < 0.7).float() if factors in ("channels", "both") else None
    active = (torch.ones(1, 1, 1, 1) if tiles is None else tiles) * (1 if channels is None else channels)
    _, norm = _pair(channels=4)
    got = active_batch_norm(x, norm, tiles, channels)
    expected = _expanded_reference(x, norm, active)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    upstream = torch.randn(x.shape, generator=generator)
    grads = torch.autograd.grad((got * upstream).sum(), (x, norm.weight, norm.bias))
    expected_grads = torch.autograd.grad((expected * upstream).sum(), (x, norm.weight, norm.bias))
    for name, value, reference in zip(("x", "weight", "bias"), grads, expected_grads):
        torch.testing.assert_close(value, reference, atol=1e-4, rtol=1e-4, msg=name)


def test_channels_seen_at_most_once_keep_their_running_statistics():
    _, norm = _pair(channels=3)
    before = norm.running_mean.clone(), norm.running_var.clone()
    gate = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])[:, :, None, None]
    pixel = F.pad(torch.ones(2, 1, 1, 1), (0, 3, 0, 2))              # one active pixel per sample
    out = active_batch_norm(torch.randn(2, 3, 3, 4), norm, pixel, gate)
    assert torch.isfinite(out).all()
    assert norm.running_mean[0] != before[0][0]                       # two active elements: updated
    for channel in (1, 2):                                            # none, one: unchanged
        assert norm.running_mean[channel] == before[0][channel]
        assert norm.running_var[channel] == before[1][channel]


def test_eval_mode_ignores_the_active_mask():
    """Inference normalises with the running statistics, active mask or not (the engine folds them)."""
    unit = ConvUnit((Source(None, 2),), 3).eval()
    x = torch.randn(2, 2, 8, 8)
    torch.testing.assert_close(unit.dense(x, (None, torch.zeros(2, 3, 1, 1))), unit.dense(x))


@pytest.mark.parametrize("backbone", sorted(TINY_BACKBONES))
def test_training_normalises_each_unit_over_its_kept_tiles_and_channels(backbone):
    """In a train-mode forward every BatchNorm moves its running mean to the mean of the conv
    outputs a sparse executor computes: kept tiles × kept channels of each sample."""
    torch.manual_seed(0)
    model = tiny_dyna(backbone).train()
    units = [m for m in model.backbone.modules() if isinstance(m, ConvUnit)]
    for unit in units:
        unit.norm.momentum = 1.0                         # running mean = this batch's statistics
    outputs = {}
    hooks = [unit.conv.register_forward_hook(lambda m, i, o, u=unit: outputs.__setitem__(u, o.detach()))
             for unit in units]
    frames, fallback = torch.randn(2, 3, 1, 32, 48), torch.randn(2, 2, 1, 32, 48)
    prediction = model(frames, fallback, data_sparsity=0.5, model_sparsity=0.5)
    for hook in hooks:
        hook.remove()
    masks, checked = prediction.masks, 0
    for unit in units:
        y = outputs[unit]                # recurrent units: momentum 1 keeps the last call's statistics
        tiles = F.interpolate(masks.tiles.detach(), size=y.shape[-2:], mode="nearest")
        gate = masks.gates.get(unit.group)
        gate = torch.ones(2, y.shape[1]) if gate is None else gate.detach().repeat_interleave(
            unit.filters_per_unit, dim=1)
        active = tiles * gate[:, :, None, None]
        expected = (y * active).sum((0, 2, 3)) / active.expand_as(y).sum((0, 2, 3))
        seen = active.expand_as(y).sum((0, 2, 3)) > 1
        torch.testing.assert_close(unit.norm.running_mean[seen], expected[seen], atol=1e-5, rtol=1e-4)
        checked += 1
    assert checked == len(units)


@pytest.mark.parametrize(("norm_statistics", "training", "expected"),
                         [("active", True, True), ("active", False, False), ("all", True, False)])
def test_the_option_decides_where_statistics_come_from(norm_statistics, training, expected):
    model = DynaPruner(backbone="simvp", t_in=3, t_out=2, channels=1, generator_hidden=4,
                       backbone_kwargs=TINY_BACKBONES["simvp"], norm_statistics=norm_statistics).train(training)
    prediction = model(torch.randn(2, 3, 1, 32, 48), torch.randn(2, 2, 1, 32, 48), data_sparsity=0.5,
                       model_sparsity=0.5)
    assert prediction.masks.active_statistics is expected


def test_unknown_norm_statistics_is_refused():
    with pytest.raises(ValueError, match="norm_statistics must be one of"):
        DynaPruner(backbone="simvp", t_in=3, t_out=2, channels=1, norm_statistics="batch",
                   backbone_kwargs=TINY_BACKBONES["simvp"])
