"""Mask policies: how one batch's tile mask and channel gates are chosen.

``dyna`` is Dyna-Pruner (masks from the generator's S and I); ``dense`` keeps everything;
``random`` draws tiles and units at random at the same budget; ``static`` applies one fixed set
of channel gates to every sample (L1-norm filter pruning, MP).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from .context import MaskContext
from .masks import ContentBudget, threshold_ste, tile_mask, topk_ste


@dataclass
class MaskRequest:
    """What a policy sees: S (B, 1, H, W), I (B, units), the budget, and the owner's state."""

    importance_map: torch.Tensor
    unit_importance: torch.Tensor
    data_sparsity: float
    model_sparsity: float
    tile_size: int
    groups: dict[str, int]
    thresholds: torch.Tensor
    static_gates: dict[str, torch.Tensor]
    gate_mode: str
    covered: torch.Tensor | None = None    # (B, 1, Ht, Wt) bool: tiles with a measured cell (None: all)
    content_budget: ContentBudget | None = None   # tiles by S threshold within bounds (None: top-k at sd)
    sync_free: bool = False    # no host sync: a coverage map is used as given, even where it covers everything


def _split(scores: torch.Tensor, groups: dict[str, int]) -> dict[str, torch.Tensor]:
    return dict(zip(groups, scores.split(list(groups.values()), dim=1)))


def _topk_gates(scores: torch.Tensor, request: MaskRequest) -> dict[str, torch.Tensor]:
    return {name: topk_ste(part, request.model_sparsity) for name, part in _split(scores, request.groups).items()}


def _tiles(scores: torch.Tensor, request: MaskRequest) -> torch.Tensor | None:
    """The data mask from per-pixel ``scores`` (B, 1, H, W): None keeps every tile (sd = 0, full
    coverage and no content budget); tiles outside coverage are never kept."""
    covered = request.covered
    if covered is not None and not request.sync_free and bool(covered.all()):
        covered = None
    if request.data_sparsity == 0 and covered is None and request.content_budget is None:
        return None
    return tile_mask(scores, request.tile_size, request.data_sparsity, covered, request.content_budget)


def _dyna(request: MaskRequest) -> MaskContext:
    tiles = _tiles(request.importance_map, request)
    if request.gate_mode == "threshold":
        parts = _split(request.unit_importance, request.groups)
        gates = {name: threshold_ste(part, request.thresholds[i]) for i, (name, part) in enumerate(parts.items())}
    elif request.model_sparsity > 0:
        gates = _topk_gates(request.unit_importance, request)
    else:
        gates = {}
    return MaskContext(tiles, gates)


def _dense(request: MaskRequest) -> MaskContext:
    return MaskContext()


def _random(request: MaskRequest) -> MaskContext:
    """Random tiles and units at the fixed budget sd, sw (a content budget has no meaning here)."""
    tiles = _tiles(torch.rand_like(request.importance_map), replace(request, content_budget=None))
    gates = _topk_gates(torch.rand_like(request.unit_importance), request) if request.model_sparsity > 0 else {}
    return MaskContext(tiles, gates)


def _static(request: MaskRequest) -> MaskContext:
    batch = request.unit_importance.shape[0]
    return MaskContext(None, {name: gate.expand(batch, -1) for name, gate in request.static_gates.items()})


POLICIES: dict[str, Callable[[MaskRequest], MaskContext]] = {
    "dyna": _dyna,
    "dense": _dense,
    "random": _random,
    "static": _static,
}
GATE_MODES = ("topk", "threshold")


def get_policy(name: str) -> Callable[[MaskRequest], MaskContext]:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown mask policy {name!r}; choose one of {sorted(POLICIES)}") from None
