"""Block execution: gather the kept regions once, run the dense layers on that batch, scatter once.

The sparse engine gathers and scatters at every layer: few operations of real work each, many of
them. The block strategy pays the halo instead: the tile grid is cut into superblocks of S × S
tiles; each superblock holding a kept tile is gathered once from the network input together with
a halo of the backbone's whole receptive radius (:func:`receptive_radius`), the batch of blocks
runs through the backbone as the masked dense model (every layer one large kernel; pruned tiles
and channels zeroed, as in training), and the blocks' centres are added onto the base forecast.
The centres are exact: every pixel the backbone reads for them lies inside the block, and the
masks of the neighbours (and zero outside the image) are gathered with it.

S is chosen per window to minimise the work N_S · (S + 2·halo)² (N_S superblocks with a kept tile),
with the whole grid at once (the masked model) as the bound. Backbones whose outputs read every
kept tile (channel attention pools over all of them: TAU) have no finite radius and are refused.
"""
from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F

from ..backbones.layers import SqueezeExcite
from ..model.context import MaskContext
from ..model.dynapruner import DynaPruner
from ..model.masks import ContentBudget
from .engine import Accounting, SparseResult
from .tiles import gather_windows, interior, write_tiles, zero_buffer

SUPERBLOCKS = (1, 2, 4, 8)      # superblock sides tried, in tiles


def has_finite_radius(model: DynaPruner) -> bool:
    """Whether the backbone's outputs read a bounded neighbourhood (no channel attention over every
    kept tile): the block strategy applies."""
    return not any(isinstance(block, SqueezeExcite) for block in model.backbone.blocks())


def receptive_radius(model: DynaPruner, size: tuple[int, int]) -> int | None:
    """Input pixels an output pixel of the backbone reads on each side, for H × W inputs: the sum,
    over every convolution call, of its reach d·(k − 1)/2 times its input's pixel size (an upper
    bound over the network's paths; a recurrent backbone counts each step). None: unbounded."""
    backbone = model.backbone
    if not has_finite_radius(model):
        return None
    ctx = MaskContext()
    with torch.no_grad():
        backbone(torch.zeros(1, model.fine_input_channels, *size, device=next(model.parameters()).device), ctx)
    radius = 0
    for block in backbone.blocks():
        conv = block.conv
        reach = conv.dilation[0] * (conv.kernel_size[0] - 1) // 2
        radius += sum(reach * (size[0] // height) for height, _ in ctx.runs(block))
    return radius


def superblock_costs(tiles: torch.Tensor, halo: int) -> dict[int, int]:
    """Work (tile areas) of each superblock side S for a (Ht, Wt) {0, 1} tile mask: N_S · (S + 2·halo)²;
    0 stands for the whole grid at once (Ht · Wt)."""
    costs = {0: tiles.numel()}
    for side in SUPERBLOCKS:
        kept = F.max_pool2d(tiles[None, None].float(), side, ceil_mode=True)
        costs[side] = int(kept.sum()) * (side + 2 * halo) ** 2
    return costs


class BlockEngine:
    """Executes a trained :class:`DynaPruner` by blocks (see the module doc); same call and result as
    :class:`~dyna_stream.sparse.engine.SparseEngine`. ``superblock``: S in tiles (0: the whole grid
    at once), or None to choose it per window by the least work. ``last_superblock``: the S of the
    last window. Accounting counts the dense work the blocks executed, halos included."""

    def __init__(self, model: DynaPruner, *, superblock: int | None = None) -> None:
        if superblock is not None and superblock not in (0, *SUPERBLOCKS):
            raise ValueError(f"superblock must be one of {(0, *SUPERBLOCKS)} or None, not {superblock!r}")
        self.model, self.superblock = model.eval(), superblock
        self._radii: dict[tuple[int, int], int | None] = {}
        self._lock = threading.Lock()
        self.last_superblock: int | None = None

    def halo_tiles(self, size: tuple[int, int]) -> int:
        """The receptive radius in whole tiles for H × W inputs (ValueError where unbounded)."""
        if size not in self._radii:
            self._radii[size] = receptive_radius(self.model, size)
        radius = self._radii[size]
        if radius is None:
            raise ValueError("the block strategy needs a finite receptive radius; this backbone pools over every "
                             "kept tile (channel attention): use the sparse engine")
        return math.ceil(radius / self.model.tile_size)

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor, fallback: torch.Tensor, *, data_sparsity: float = 0.0,
                 model_sparsity: float = 0.0, policy: str = "dyna", mask_failure: float = 0.0,
                 coverage: torch.Tensor | None = None, content_budget: ContentBudget | None = None) -> SparseResult:
        """frames (B, input_frames, C, H, W), fallback (B, T_out, C, H, W), normalised, H, W multiples of the tile."""
        model, size = self.model, tuple(frames.shape[-2:])
        halo = self.halo_tiles(size)
        with self._lock:
            importance_map, _, masks = model.select_masks(frames, fallback, data_sparsity=data_sparsity,
                                                          model_sparsity=model_sparsity, policy=policy,
                                                          mask_failure=mask_failure, coverage=coverage,
                                                          content_budget=content_budget)
            base, parts = model.start(frames, fallback)
            forecast, accounting = base.clone(), []
            inputs = torch.cat(parts, dim=1)
            grid = (size[0] // model.tile_size, size[1] // model.tile_size)
            for b in range(frames.shape[0]):
                tiles = (torch.ones(grid, device=frames.device) if masks.tiles is None
                         else masks.tiles[b, 0].detach())
                gates = {name: gate[b:b + 1].detach() for name, gate in masks.gates.items()}
                if self.superblock is None:
                    costs = superblock_costs(tiles, halo)
                    side = min(costs, key=lambda s: (costs[s], s))
                else:
                    side = self.superblock
                self.last_superblock = side
                macs = model.coarse_macs(*size)
                if tiles.any():                  # else nothing kept (e.g. no coverage): the base
                    correction, executed = self._run(inputs[b:b + 1], tiles, gates, side, halo)
                    forecast[b] += correction.reshape(forecast[b].shape)
                    macs += executed
                accounting.append(Accounting(macs))
        return SparseResult(forecast, importance_map, masks, accounting, base)

    def _run(self, inputs: torch.Tensor, tiles: torch.Tensor, gates: dict[str, torch.Tensor], side: int,
             halo: int) -> tuple[torch.Tensor, int]:
        """The backbone's correction (1, T_out·C, H, W) of one window and the MACs executed for it."""
        backbone, tile = self.model.backbone, self.model.tile_size
        if side == 0:
            ctx = MaskContext(tiles[None, None], gates)
            return backbone(inputs, ctx), _dense_macs(backbone, ctx, 1)
        grid = tiles.shape
        blocks = (-(-grid[0] // side), -(-grid[1] // side))
        padded = (blocks[0] * side, blocks[1] * side)              # tiles, the grid rounded up to superblocks
        rows, cols = torch.nonzero(F.max_pool2d(tiles[None, None], side, ceil_mode=True)[0, 0] > 0, as_tuple=True)
        pixels = zero_buffer(inputs, (padded[0] * tile, padded[1] * tile), inputs.shape[1], halo * tile)
        interior(pixels, halo * tile)[:, :inputs.shape[-2], :inputs.shape[-1]].copy_(inputs[0])
        mask = zero_buffer(tiles, padded, 1, halo)
        interior(mask, halo)[0, :grid[0], :grid[1]].copy_(tiles)
        window = side + 2 * halo
        windows = gather_windows(pixels, rows, cols, tile=side * tile, window=window * tile)
        block_tiles = gather_windows(mask, rows, cols, tile=side, window=window)
        count = rows.numel()
        ctx = MaskContext(block_tiles.contiguous(), {name: gate.expand(count, -1) for name, gate in gates.items()})
        y = backbone(windows.contiguous(), ctx)
        centre = y[..., halo * tile:(halo + side) * tile, halo * tile:(halo + side) * tile]
        out = zero_buffer(y, (padded[0] * tile, padded[1] * tile), y.shape[1], 0)
        write_tiles(out, centre, rows, cols, blocks)
        return out[None, :, :inputs.shape[-2], :inputs.shape[-1]], _dense_macs(backbone, ctx, count)


def _dense_macs(backbone, ctx: MaskContext, batch: int) -> int:
    """The MACs the dense layers executed on ``batch`` inputs of the sizes ``ctx`` recorded (no mask
    saves any: they run on every pixel and channel)."""
    executed = MaskContext(_runs=ctx._runs)          # the calls recorded, without their masks
    return int(backbone.macs(executed, batch, torch.device("cpu")).sum())
