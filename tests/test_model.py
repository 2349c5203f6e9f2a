"""Dyna-Pruner on every registered backbone: shapes, masking semantics, gradients, MAC accounting."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dyna_stream.backbones import BACKBONES, create_backbone
from dyna_stream.model.context import MaskContext
from dyna_stream.model.dynapruner import DynaPruner

from conftest import TINY_BACKBONES, tiny_dyna

SIZE = (64, 48)


def test_every_backbone_has_a_test_size():
    assert set(TINY_BACKBONES) == set(BACKBONES)


def inputs(batch: int = 2):
    return torch.randn(batch, 3, 1, *SIZE), torch.randn(batch, 2, 1, *SIZE)


@pytest.fixture(params=sorted(BACKBONES))
def model(request):
    return tiny_dyna(request.param).eval()


def test_shapes_and_importance_range(model):
    frames, fallback = inputs()
    prediction = model(frames, fallback, data_sparsity=0.5, model_sparsity=0.5)
    assert prediction.forecast.shape == fallback.shape
    assert prediction.importance_map.shape == (2, 1, *SIZE)
    assert 0 <= prediction.importance_map.min() and prediction.importance_map.max() <= 1
    assert prediction.unit_importance.shape == (2, sum(model.backbone.groups.values()))


def _randomise(model):
    with torch.no_grad():
        for parameter in model.backbone.parameters():
            parameter.normal_(0, 0.3)


def test_pruned_tiles_take_the_fallback_exactly(model):
    _randomise(model)
    frames, fallback = inputs()
    prediction = model(frames, fallback, data_sparsity=0.7, model_sparsity=0.3)
    pruned = prediction.masks.spatial(SIZE)[:, 0] == 0
    assert pruned.any() and (~pruned).any()
    difference = (prediction.forecast - fallback)[:, :, 0]
    assert difference.permute(1, 0, 2, 3)[:, pruned].abs().max() == 0
    assert difference.permute(1, 0, 2, 3)[:, ~pruned].abs().max() > 0


def test_pruned_channels_are_zero_in_every_block(model):
    _randomise(model)
    frames, fallback = inputs(1)
    seen = {}
    hooks = [block.register_forward_hook(lambda m, i, o, m_=block: seen.__setitem__(m_, o))
             for block in model.backbone.blocks()]
    prediction = model(frames, fallback, data_sparsity=0.0, model_sparsity=0.5)
    for hook in hooks:
        hook.remove()
    for block, output in seen.items():
        group = getattr(block, "group", None)
        if group is None:
            continue
        gate = prediction.masks.gates[group][0]
        gate = gate.repeat_interleave(output.shape[1] // gate.numel())      # adjacent channels of one unit
        kept = gate > 0.5                       # straight-through gates are 1 only up to rounding
        assert output[0, ~kept].abs().max() == 0 and output[0, kept].abs().max() > 0


def test_gradients_reach_the_mask_generator(model):
    _randomise(model)
    model.train()
    frames, fallback = inputs()
    prediction = model(frames, fallback, data_sparsity=0.5, model_sparsity=0.5)
    ((prediction.forecast - fallback.flip(-1)) ** 2).mean().backward()
    generator = model.generator
    assert generator.score.weight.grad.abs().sum() > 0      # S through the data-mask STE
    assert generator.units.weight.grad.abs().sum() > 0      # I through the model-mask STE
    assert generator.features[0].weight.grad.abs().sum() > 0


def test_dense_mac_count_matches_torch_flop_counter(model):
    frames, fallback = inputs(1)
    backbone = model.backbone
    stacked = torch.cat([frames.flatten(1, 2), fallback.flatten(1, 2)], 1)
    ctx = MaskContext()
    with FlopCounterMode(display=False) as counter:
        backbone(stacked, ctx)
    assert float(backbone.macs(ctx, 1, stacked.device)[0]) == pytest.approx(counter.get_total_flops() / 2)
    with FlopCounterMode(display=False) as counter:
        model.base(frames, fallback)
    assert 0 < model.coarse_macs(*SIZE) == pytest.approx(counter.get_total_flops() / 2)


def test_masked_mac_count_shrinks_with_both_sparsities(model):
    frames, fallback = inputs(1)
    dense = float(model.macs(model(frames, fallback, policy="dense"))[0])
    tiles_only = float(model.macs(model(frames, fallback, data_sparsity=0.5))[0])
    both = float(model.macs(model(frames, fallback, data_sparsity=0.5, model_sparsity=0.5))[0])
    coarse = model.coarse_macs(*SIZE)                            # runs everywhere, at every point
    dense, tiles_only, both = dense - coarse, tiles_only - coarse, both - coarse
    assert tiles_only == pytest.approx(dense * 0.5, rel=1e-3)   # 24 tiles, 12 kept (SE heads do not shrink)
    assert both < tiles_only * 0.5


def test_unknown_backbone_and_policy_are_refused():
    with pytest.raises(ValueError, match="choose one of"):
        create_backbone("unet", in_channels=1, out_channels=1)
    with pytest.raises(ValueError, match="choose one of"):
        tiny_dyna("simvp")(*inputs(), policy="magic")


def test_threshold_gate_mode_trains_thresholds():
    model = DynaPruner(backbone="simvp", t_in=3, t_out=2, channels=1, gate_mode="threshold",
                       backbone_kwargs={"width": 4, "latent": 8, "hidden": 8, "blocks": 1, "tile_latent": 2})
    _randomise(model)
    prediction = model(*inputs(), data_sparsity=0.5, model_sparsity=0.5)
    prediction.forecast.square().mean().backward()
    assert model.thresholds.grad.abs().sum() > 0


def test_uniform_unit_pooling_ignores_the_importance_map():
    """The independent-masks ablation: unit importance I does not depend on where S is high."""
    from dyna_stream.model.generator import MaskGenerator

    generator = MaskGenerator(channels=1, units=5, hidden=4, pooling="uniform")
    summary = torch.randn(1, 3, 32, 32)
    _, reference = generator(summary)
    with torch.no_grad():
        generator.score.bias.add_(3.0)        # S changes everywhere; the features do not
    assert torch.allclose(generator(summary)[1], reference)
    shared = MaskGenerator(channels=1, units=5, hidden=4)
    shared.load_state_dict(generator.state_dict())
    with torch.no_grad():
        shared.score.weight.normal_()
    assert not torch.allclose(shared(summary)[1], reference)
    with pytest.raises(ValueError, match="pooling must be one of"):
        MaskGenerator(channels=1, units=5, pooling="max")
