"""Static L1-norm filter pruning (MP, Li et al. 2017) to a MAC budget, as fixed channel gates.

Each gate group keeps the same fraction of its channels; within a group, the channels whose
producing filters have the largest summed L1 norm survive (coupled groups sum over all their
producers; a unit with several filters — PixelShuffle r², LSTM gates — sums over all of them).
The fraction is found by bisection so the pruned network executes at most the target MACs per
sample.
"""
from __future__ import annotations

import math

import torch

from ..backbones.layers import ConvUnit
from .context import MaskContext
from .dynapruner import DynaPruner


def filter_norms(model: DynaPruner) -> dict[str, torch.Tensor]:
    """Group → (C,) summed L1 norm of the filters that write each channel."""
    norms = {name: torch.zeros(size) for name, size in model.backbone.groups.items()}
    for block in model.backbone.blocks():
        if isinstance(block, ConvUnit) and block.group is not None:
            per_filter = block.conv.weight.detach().abs().flatten(1).sum(1)
            norms[block.group] += per_filter.reshape(block.cout, block.filters_per_unit).sum(1)
    return norms


def gates_for_fraction(norms: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    gates = {}
    for name, norm in norms.items():
        keep = max(1, math.ceil(fraction * norm.numel() - 1e-9))
        gates[name] = torch.zeros_like(norm).index_fill_(0, norm.topk(keep).indices, 1.0)
    return gates


@torch.no_grad()
def static_macs(model: DynaPruner, gates: dict[str, torch.Tensor], height: int, width: int) -> float:
    """MACs of one H × W sample under fixed channel gates, no tile mask: the backbone's and the
    coarse path's (which every policy runs)."""
    was_training = model.training
    model.eval()
    frames = torch.zeros(1, model.input_frames, model.channels, height, width)
    fallback = torch.zeros(1, model.t_out, model.channels, height, width)
    ctx = MaskContext(None, {name: gate[None] for name, gate in gates.items()})
    model.backbone(torch.cat(model.start(frames, fallback)[1], 1), ctx)
    model.train(was_training)
    return float(model.backbone.macs(ctx, 1, frames.device)[0]) + model.coarse_macs(height, width)


def l1_gates_for_budget(model: DynaPruner, target_macs: float, height: int, width: int) -> dict[str, torch.Tensor]:
    """The largest uniform keep fraction whose static MACs ≤ ``target_macs`` (per H × W sample)."""
    norms = filter_norms(model)
    low, high = 0.0, 1.0
    for _ in range(30):
        middle = (low + high) / 2
        if static_macs(model, gates_for_fraction(norms, middle), height, width) <= target_macs:
            low = middle
        else:
            high = middle
    return gates_for_fraction(norms, low)
