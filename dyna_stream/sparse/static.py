"""Static shapes per operating point: fixed-length tile and channel indices, no host syncs.

At one operating point (sd, sw) on one tile grid the sparse step's sizes are fixed numbers: top-k
keeps ⌈(1 − sd)·N⌉ tiles and ⌈(1 − sw)·C⌉ units of every gated group. A :class:`StaticPlan` holds
them, and :func:`static_indices` reads each sample's kept tiles and channels from its masks with
``topk`` (fixed-length indices) instead of ``nonzero`` (whose length the host must learn), so the
step issues no host sync and the same kernels every time — what a CUDA graph needs
(:mod:`.graphs`).

Where fewer tiles than the plan's count may be kept — coverage (a tile without a measured cell is
never kept) or a content budget (at most top-k at sd) — the plan keeps its count and some of its
tiles are *dead*: computed, but their results multiplied by 0 (``live``), so the step stays exact
to the masked model and costs what the cap costs. Threshold channel gates (a learnable τ keeps a
varying number of units) have no static shape and are refused.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.context import MaskContext
from ..model.dynapruner import DynaPruner
from ..model.masks import keep_count


@dataclass(frozen=True)
class StaticPlan:
    """The fixed sizes of one operating point on one grid.

    grid : (Ht, Wt).  tiles : tiles run per sample (None: every tile, and all of them live).
    channels : gated group → units kept per sample (a group missing keeps all its units).
    dead_tiles : some of the ``tiles`` may be pruned by the masks (coverage, content budget).
    """

    grid: tuple[int, int]
    tiles: int | None
    channels: dict[str, int]
    dead_tiles: bool = False


def _tiles_of(policy: str, grid: tuple[int, int], data_sparsity: float, varying: bool) -> int | None:
    if policy in ("dense", "static"):
        return None                           # these policies never prune tiles
    if data_sparsity == 0 and not varying:
        return None
    return keep_count(grid[0] * grid[1], data_sparsity)


def _channels_of(model: DynaPruner, policy: str, model_sparsity: float) -> dict[str, int]:
    if policy == "static":
        return {name: int(gate.sum()) for name, gate in model.static_gates().items()}   # once per plan
    if policy == "dense" or model_sparsity == 0:
        return {}
    return {name: keep_count(units, model_sparsity) for name, units in model.backbone.groups.items()}


def plan_for(model: DynaPruner, size: tuple[int, int], *, data_sparsity: float, model_sparsity: float,
             policy: str, coverage: bool, content_budget: bool) -> StaticPlan:
    """The plan of one operating point for an H × W input (``size``); ``coverage`` / ``content_budget``:
    whether the step gets a coverage map / a content budget (both may keep fewer tiles than top-k)."""
    if policy == "dyna" and model.gate_mode != "topk":
        raise ValueError(f"static shapes need top-k channel gates; this model's gate_mode "
                         f"{model.gate_mode!r} keeps a varying number of units (use the dynamic engine)")
    tile = model.tile_size
    grid = (size[0] // tile, size[1] // tile)
    varying = (coverage and policy in ("dyna", "random")) or (content_budget and policy == "dyna")
    tiles = _tiles_of(policy, grid, data_sparsity, varying)
    return StaticPlan(grid, tiles, _channels_of(model, policy, model_sparsity), dead_tiles=bool(varying))


def all_tiles(grid: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Every tile of the (Ht, Wt) grid as (rows, cols) (Ht·Wt,), in raster order."""
    rows, cols = torch.meshgrid(torch.arange(grid[0], device=device), torch.arange(grid[1], device=device),
                                indexing="ij")
    return rows.flatten(), cols.flatten()


@dataclass
class StaticIndices:
    """One sample's kept tiles and channels at fixed lengths.

    rows, cols : (N,) tiles run, in raster order.  live : (N,) {0, 1}, which of them the masks keep
    (None: all).  tile_mask : (1, 1, Ht, Wt) or None (every tile kept).  kept : group → (C_kept,)
    sorted unit indices.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    live: torch.Tensor | None
    tile_mask: torch.Tensor | None
    kept: dict[str, torch.Tensor]


def static_indices(masks: MaskContext, b: int, plan: StaticPlan, device: torch.device) -> StaticIndices:
    """Sample ``b``'s indices under ``plan``, read from ``masks`` with top-k (no host sync)."""
    if plan.tiles is None:
        if masks.tiles is not None:
            raise ValueError("the masks prune tiles but the static plan runs every tile: plan and masks disagree")
        rows, cols = all_tiles(plan.grid, device)
        live = tile_mask = None
    else:
        tile_mask = masks.tiles[b:b + 1].detach()
        flat = tile_mask.flatten()
        index = flat.topk(plan.tiles, sorted=False).indices.sort().values
        rows, cols = index // plan.grid[1], index % plan.grid[1]
        live = flat.index_select(0, index) if plan.dead_tiles else None
    kept = {group: gate[b].topk(plan.channels[group], sorted=False).indices.sort().values
            for group, gate in masks.gates.items()}
    return StaticIndices(rows, cols, live, tile_mask, kept)
