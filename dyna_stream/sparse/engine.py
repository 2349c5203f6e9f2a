"""The sparse engine: each sample runs its own sub-network — only kept tiles, only kept channels.

The backbone's own ``forward`` runs unchanged under a :class:`SparseContext`. What flows between
its blocks holds the kept channels only: a channels_last canvas (1, C_kept, h, w), zero outside the
active tiles, or the tile results themselves (:class:`TileResult`, scattered only when a consumer
needs a canvas). Each block slices its BatchNorm-folded weights to the kept input/output channels
and then either gathers the active tiles' receptive fields (halos included) and convolves that
batch of windows with padding 0, or convolves the whole channel-sliced canvas and re-zeroes the
pruned tiles, whichever is faster at the current active share (``SparseContext._method``). The
readout adds its tiles onto the base forecast (the fallback plus the model's coarse path, which
runs dense: it is cheap). Batch 1 per call; larger batches loop.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F

from ..backbones.layers import ConvUnit, Readout, SqueezeExcite
from ..model.context import MaskContext
from ..model.dynapruner import DynaPruner
from ..model.masks import ContentBudget
from .folding import fold_batchnorm
from .pools import BufferPool, IndexedBufferPool
from .static import StaticPlan, all_tiles, plan_for, static_indices
from .tiles import add_tiles_, gather_windows, interior, take_tiles, window_size, write_canvas, write_tiles

__all__ = ["BufferPool", "SparseContext", "SparseEngine", "SparseResult"]

WINDOW_MIN_TILE = 4      # output pixels per tile side from which window convolutions can pay
WINDOW_MAX_ACTIVE = 0.4  # gather windows while at most this share of the tiles is active
STRATEGIES = ("auto", "windows", "canvas")
SHAPES = ("dynamic", "static")


@dataclass(frozen=True)
class Geometry:
    """One convolution at one resolution: input size, output pixels per tile side, k, s, d, p."""

    size: tuple[int, int]
    out_tile: int
    kernel: int
    stride: int
    dilation: int
    padding: int

    @property
    def window(self) -> int:
        """Input pixels per side that one output tile reads (its tile plus halos)."""
        return window_size(self.out_tile, self.kernel, self.stride, self.dilation)


@dataclass(frozen=True)
class Concat:
    """Canvases to be read as one, concatenated along channels, (1, ΣC, h, w)."""

    parts: tuple[torch.Tensor, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        first = self.parts[0].shape
        return (first[0], sum(p.shape[1] for p in self.parts), *first[2:])


class TileResult:
    """A layer's output still as tile results (N, C, t, t) of the active tiles; scattered onto a
    canvas (1, C, Ht·t, Wt·t) only when a consumer needs one — or onto zero-bordered pixels for a
    consumer that gathers windows. A pointwise consumer on the same tiles reads the values directly,
    and two results on the same tiles add without a canvas."""

    def __init__(self, values: torch.Tensor, ctx: SparseContext) -> None:
        self.values, self.ctx, self._buffers = values, ctx, {}

    @property
    def shape(self) -> tuple[int, ...]:
        _, channels, tile, _ = self.values.shape
        return (1, channels, self.ctx.grid[0] * tile, self.ctx.grid[1] * tile)

    def canvas(self) -> torch.Tensor:
        return self.buffer(0)[None]

    def buffer(self, halo: int) -> torch.Tensor:
        """The results on a zero (C, Ht·t + 2·halo, Wt·t + 2·halo) pixel buffer, scattered once per halo."""
        if halo not in self._buffers:
            ctx = self.ctx
            ctx.accounting.scattered_bytes += self.values.numel() * self.values.element_size()
            buffer = ctx.borrow(self.values, self.shape[-2:], self.values.shape[1], halo, whole=False)
            write_tiles(interior(buffer, halo), self.values, ctx.rows, ctx.cols, ctx.grid)
            self._buffers[halo] = buffer
        return self._buffers[halo]

    def __add__(self, other: TileResult | torch.Tensor) -> TileResult | torch.Tensor:
        if isinstance(other, TileResult):
            return TileResult(self.values + other.values, self.ctx)       # zero on dead tiles both
        return self.canvas() + other

    __radd__ = __add__


def as_canvas(x: torch.Tensor | TileResult) -> torch.Tensor:
    return x.canvas() if isinstance(x, TileResult) else x


Canvas = torch.Tensor | Concat | TileResult


@dataclass
class Accounting:
    """What one sample executed: multiply-accumulates and bytes moved by gather/scatter."""

    macs: int = 0
    gathered_bytes: int = 0
    scattered_bytes: int = 0


@dataclass
class SparseContext:
    """Masks of one sample in executable form.

    rows, cols : (N,) active tiles on the (Ht, Wt) grid.  kept : group → kept channel indices.
    base : (1, T_out·C, H, W), the forecast being written: the base (fallback + coarse path), onto
        which the readout adds.
    live : (N,) {0, 1} or None: static shapes (:mod:`.static`) run a fixed number of tiles, of which
        the masks may prune some (dead tiles: every result on them is multiplied by 0).
    indexed : static shapes: buffers are lent by an :class:`~.pools.IndexedBufferPool` (the
        footprint is the tile indices, not the active mask: no ``nonzero``).
    """

    grid: tuple[int, int]
    rows: torch.Tensor
    cols: torch.Tensor
    kept: dict[str, torch.Tensor]
    weights: dict[int, tuple[torch.Tensor, torch.Tensor]]
    tile_mask: torch.Tensor | None
    strategy: str = "auto"
    base: torch.Tensor | None = None
    live: torch.Tensor | None = None
    indexed: bool = False
    pool: BufferPool = field(default_factory=BufferPool)
    accounting: Accounting = field(default_factory=Accounting)
    _indices: dict = field(default_factory=dict, repr=False)
    _padded: dict = field(default_factory=dict, repr=False)
    _borrowed: list = field(default_factory=list, repr=False)
    _raw_inputs: list = field(default_factory=list, repr=False)

    @cached_property
    def active(self) -> torch.Tensor:
        """(Ht, Wt) bool: the active tiles."""
        if self.tile_mask is None:
            return torch.ones(self.grid, dtype=torch.bool, device=self.rows.device)
        return self.tile_mask[0, 0] > 0

    @property
    def all_active(self) -> bool:
        return self.rows.numel() == self.grid[0] * self.grid[1] and self.live is None

    @property
    def footprint(self):
        """What the pool clears by: the tile indices (static shapes) or the active mask."""
        return (self.rows, self.cols, self.grid) if self.indexed else self.active

    def result(self, values: torch.Tensor) -> TileResult:
        """Tile results (N, C, t, t) of this step, zeroed on dead tiles (static shapes)."""
        return TileResult(values if self.live is None else values * self.live.view(-1, 1, 1, 1), self)

    def _active_share(self) -> torch.Tensor | float:
        """Share of the grid's tiles kept (a tensor with dead tiles: no host sync)."""
        total = self.grid[0] * self.grid[1]
        return self.rows.numel() / total if self.live is None else self.live.sum().clamp_min(1.0) / total

    def mask_input(self, inputs: Canvas) -> Canvas:
        """The network input stays unmasked: gathers zero pruned neighbours themselves, and a layer
        that convolves the whole canvas masks this input first (see ``_on_canvas``)."""
        self._raw_inputs.append(inputs)
        return inputs

    def borrow(self, like: torch.Tensor, size: tuple[int, int], channels: int, halo: int, *, whole: bool
               ) -> torch.Tensor:
        """A zero-bordered (C, h + 2·halo, w + 2·halo) buffer from the pool, zero outside the active
        tiles unless the borrower overwrites it ``whole``; for this step (see ``release``)."""
        buffer = self.pool.take(like, size, channels, halo, footprint=self.footprint, whole=whole)
        self._borrowed.append((buffer, halo))
        return buffer

    def release(self) -> None:
        """The step is over (nothing it returns may view a borrowed buffer): buffers back to the pool."""
        for buffer, halo in self._borrowed:
            self.pool.give_back(buffer, halo, self.footprint)
        self._borrowed.clear()

    def _is_raw(self, x: Canvas) -> bool:
        return any(x is raw for raw in self._raw_inputs)

    def frames(self, inputs: Canvas, channels: int) -> list[torch.Tensor]:
        """The stacked input as per-frame channel views (1, C, H, W) of its parts (still unmasked)."""
        parts = inputs.parts if isinstance(inputs, Concat) else (as_canvas(inputs),)
        frames = [frame for part in parts for frame in part.split(channels, dim=1)]
        if self._is_raw(inputs):
            self._raw_inputs.extend(frames)
        return frames

    def zeros(self, group: str | None, units: int, like: Canvas) -> torch.Tensor:
        """A zero state canvas (1, kept units of ``group``, h, w), channels_last."""
        kept = self.kept.get(group) if group is not None else None
        channels = units if kept is None else kept.numel()
        return torch.zeros(1, channels, *like.shape[-2:], device=self.rows.device).contiguous(
            memory_format=torch.channels_last)

    def pointwise(self, fn: Callable, *inputs: Canvas | None, group: str | None = None):
        """An elementwise step on the kept channels: on the active tiles' values when a tile result
        is among the inputs (canvases contribute their active tiles), else on the canvases, whose
        pruned tiles are re-zeroed after."""
        if not self.all_active and any(isinstance(x, TileResult) for x in inputs):
            values = [x.values if isinstance(x, TileResult) else
                      None if x is None else take_tiles(as_canvas(x), self.rows, self.cols, self.grid)
                      for x in inputs]
            out = fn(*values)
            return tuple(map(self.result, out)) if isinstance(out, tuple) else self.result(out)
        out = fn(*(None if x is None else as_canvas(x) for x in inputs))
        if self.all_active:
            return out
        return tuple(map(self.zero_pruned, out)) if isinstance(out, tuple) else self.zero_pruned(out)

    def squeeze_excite(self, unit: SqueezeExcite, x: Canvas) -> torch.Tensor:
        """Channel weights (1, C_kept): the mean over the active tiles, then the FC layers sliced to
        the kept channels."""
        if isinstance(x, TileResult) and self.live is None:
            pooled = x.values.mean((0, 2, 3))[None]
        else:
            total = x.values.sum((0, 2, 3))[None] if isinstance(x, TileResult) else as_canvas(x).sum((2, 3))
            pooled = total / (self._active_share() * x.shape[-2] * x.shape[-1])
        kept = self.kept.get(unit.source.group) if unit.source.group is not None else None
        w1, w2, b2 = unit.fc1.weight, unit.fc2.weight, unit.fc2.bias
        if kept is not None:
            w1, w2, b2 = w1.index_select(1, kept), w2.index_select(0, kept), b2.index_select(0, kept)
        self.accounting.macs += w1.numel() + w2.numel()
        return torch.sigmoid(F.linear(F.silu(F.linear(pooled, w1, unit.fc1.bias)), w2, b2))

    def concat(self, parts: list[torch.Tensor]) -> Concat:
        """Channel concatenation, deferred: gathers read each part, so full canvases are never copied."""
        return Concat(tuple(parts))

    def zero_pruned(self, canvas: torch.Tensor) -> torch.Tensor:
        """Zero the pruned tiles of a (1, C, h, w) canvas; returns channels_last memory."""
        if self.tile_mask is None:
            return canvas
        pixels = canvas.permute(0, 2, 3, 1)
        batch, height, width, channels = pixels.shape
        rows, cols = self.grid
        tiles = pixels.reshape(batch, rows, height // rows, cols, width // cols, channels)
        masked = tiles * self.tile_mask.view(1, rows, 1, cols, 1, 1)
        return masked.view(batch, height, width, channels).permute(0, 3, 1, 2)

    def _input_index(self, unit: ConvUnit | Readout) -> torch.Tensor | None:
        """Kept input channels of ``unit`` in its concatenated input, or None when nothing is pruned;
        built once per step for each source combination."""
        key = ("in", unit.sources)
        if key not in self._indices:
            kept = [self.kept.get(source.group) if source.group is not None else None for source in unit.sources]
            if all(k is None for k in kept):
                index = None
            elif len(kept) == 1:
                index = kept[0]
            else:
                parts, offset = [], 0
                for source, k in zip(unit.sources, kept):
                    parts.append((k if k is not None else torch.arange(source.channels, device=self.rows.device))
                                 + offset)
                    offset += source.channels
                index = torch.cat(parts)
            self._indices[key] = index
        return self._indices[key]

    def _output_index(self, unit: ConvUnit | Readout) -> torch.Tensor | None:
        """Kept filters of ``unit``: its kept units × their ``filters_per_unit`` adjacent filters."""
        kept = self.kept.get(unit.group) if unit.group is not None else None
        fan = unit.filters_per_unit
        if kept is None or fan == 1:
            return kept
        key = ("out", unit.group, fan)
        if key not in self._indices:
            self._indices[key] = (kept[:, None] * fan + torch.arange(fan, device=kept.device)).flatten()
        return self._indices[key]

    def _sliced(self, unit: ConvUnit | Readout, *, outputs: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The folded weight (C_out', C_in', k, k), channels_last, and bias (C_out',) of the kept channels."""
        weight, bias = self.weights[id(unit)]            # weight stored as (C_out, k, k, C_in)
        out_index, in_index = self._output_index(unit) if outputs else None, self._input_index(unit)
        if out_index is not None:
            weight, bias = weight.index_select(0, out_index), bias.index_select(0, out_index)
        if in_index is not None and not unit.depthwise:
            weight = weight.index_select(3, in_index)
        return weight.permute(0, 3, 1, 2), bias

    def conv_unit(self, unit: ConvUnit | Readout, x: Canvas) -> torch.Tensor:
        weight, bias = self._sliced(unit)
        conv = unit.conv
        geometry = Geometry(tuple(x.shape[-2:]), x.shape[-2] // conv.stride[0] // self.grid[0], weight.shape[-1],
                            conv.stride[0], conv.dilation[0], conv.padding[0])
        method = "canvas" if self.all_active else self._method(unit, geometry)
        if method == "canvas":
            return self._on_canvas(unit, x, weight, bias, geometry)
        y = self._windows_conv(unit, x, weight, bias, geometry)
        return self.result(F.pixel_shuffle(y, unit.shuffle) if unit.shuffle > 1 else y)

    def readout(self, unit: Readout, x: Canvas) -> torch.Tensor:
        """The forecast itself: the readout's tiles added onto the base (``base``, the engine's
        output, written in place), so pruned tiles take the base without a zero canvas or a
        full-size addition."""
        weight, bias = self._sliced(unit, outputs=False)
        geometry = Geometry(tuple(x.shape[-2:]), x.shape[-2] // self.grid[0], 1, 1, 1, 0)
        if self.all_active or self._method(unit, geometry) == "canvas":
            return self.base.add_(self._on_canvas(unit, x, weight, bias, geometry))
        y = self._windows_conv(unit, x, weight, bias, geometry)
        self.accounting.scattered_bytes += y.numel() * y.element_size()
        return add_tiles_(self.base, self.result(y).values, self.rows, self.cols, self.grid)

    def _method(self, unit: ConvUnit | Readout, geometry: Geometry) -> str:
        """How to run one layer: gather tile "windows" and convolve them, or convolve the "canvas".

        Windows compute only the active share f of the canvas work (plus halos) but pay gathers and
        convolutions on small images; the channel-sliced canvas convolution (re-zeroing pruned
        tiles after it) does all the spatial work at full efficiency. Measured on a 2-core CPU
        (benchmarks/sparse_speedup.py) windows win once f ≤ 0.4, at every resolution whose tiles
        have 4 pixels or more. Depthwise convolutions (TAU's large kernels: wide halos, little work)
        always run on the canvas.
        """
        if self.strategy != "auto":
            return self.strategy
        if unit.depthwise:
            return "canvas"
        active = self.rows.numel() / (self.grid[0] * self.grid[1])
        return "windows" if geometry.out_tile >= WINDOW_MIN_TILE and active <= WINDOW_MAX_ACTIVE else "canvas"

    def _windows_conv(self, unit, x, weight, bias, geometry: Geometry) -> torch.Tensor:
        """Padding-0 convolution over the gathered windows → (N, C_out, t, t)."""
        windows = self._windows_of(x, geometry)
        y = F.conv2d(windows, weight, bias, geometry.stride, 0, geometry.dilation, _groups(unit, weight))
        self.accounting.macs += y.shape[0] * y.shape[-2] * y.shape[-1] * weight.numel()
        self.accounting.gathered_bytes += windows.numel() * windows.element_size()
        return _activate(unit, y)

    def _windows_of(self, x: Canvas, geometry: Geometry) -> torch.Tensor:
        """The input's windows (N, C, win, win): a pointwise layer on the same tiles reads tile
        results as they are; everything else gathers from zero-bordered pixels of the whole input."""
        parts = x.parts if isinstance(x, Concat) else (x,)
        if geometry.kernel == 1 and geometry.stride == 1 and all(
                isinstance(part, TileResult) and part.values.shape[-1] == geometry.out_tile for part in parts):
            return torch.cat([part.values for part in parts], dim=1) if len(parts) > 1 else parts[0].values
        return gather_windows(self._buffer(x, geometry.padding), self.rows, self.cols,
                              tile=geometry.size[0] // self.grid[0], window=geometry.window)

    def _buffer(self, x: Canvas, halo: int) -> torch.Tensor:
        """The input as one zero-bordered (ΣC, h + 2·halo, w + 2·halo) buffer, zero on pruned tiles,
        built once per step: tile results are scattered into it, canvases copied (the raw network
        input masked on the way — every other canvas is already zero on pruned tiles)."""
        if isinstance(x, TileResult):
            return x.buffer(halo)
        key = (id(x), halo)
        if key not in self._padded:
            parts = x.parts if isinstance(x, Concat) else (x,)
            results = [part for part in parts if isinstance(part, TileResult)]
            like = results[0].values if results else parts[0]
            buffer = self.borrow(like, x.shape[-2:], x.shape[1], halo, whole=not results)
            inside, offset = interior(buffer, halo), 0
            for part in parts:
                target = inside[offset:offset + part.shape[1]]
                if isinstance(part, TileResult):
                    self.accounting.scattered_bytes += part.values.numel() * part.values.element_size()
                    write_tiles(target, part.values, self.rows, self.cols, self.grid)
                else:
                    raw = self.tile_mask is not None and (self._is_raw(x) or self._is_raw(part))
                    write_canvas(target, part, self.tile_mask[0, 0] if raw else None)
                offset += part.shape[1]
            self._padded[key] = (x, buffer)                 # holds ``x``: its id stays unique this step
        return self._padded[key][1]

    def _on_canvas(self, unit, x, weight, bias, geometry: Geometry) -> torch.Tensor:
        """Channel-sliced convolution over the whole canvas; pruned tiles re-zeroed afterwards."""
        raw = self._is_raw(x)
        if isinstance(x, Concat):
            x = torch.cat([as_canvas(part) for part in x.parts], dim=1)
        x = as_canvas(x)
        if raw and not self.all_active:
            x = self.zero_pruned(x)
        y = _activate(unit, F.conv2d(x, weight, bias, geometry.stride, geometry.padding, geometry.dilation,
                                     _groups(unit, weight)))
        self.accounting.macs += y.shape[-2] * y.shape[-1] * weight.numel()
        if unit.shuffle > 1:
            y = F.pixel_shuffle(y, unit.shuffle)
        return y if self.all_active else self.zero_pruned(y)


def _activate(unit: ConvUnit | Readout, y: torch.Tensor) -> torch.Tensor:
    """The unit's activation, in place on a fresh convolution output."""
    return F.silu(y, inplace=True) if isinstance(unit.activation, torch.nn.SiLU) else unit.activation(y)


def _groups(unit: ConvUnit | Readout, weight: torch.Tensor) -> int:
    """Convolution groups: one per kept channel for a depthwise unit."""
    return weight.shape[0] if unit.depthwise else 1


def _pixels_last(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(C_out, C_in, k, k) → (C_out, k, k, C_in) contiguous: channel slices of it permute back to
    channels_last weights without another copy."""
    return weight.permute(0, 2, 3, 1).contiguous(), bias


@dataclass
class SparseResult:
    """forecast (B, T_out, C, H, W) normalised; S (B, 1, H, W); per-sample accounting (coarse path
    included); base (B, T_out, C, H, W) normalised, what pruned tiles took (fallback + coarse path)."""

    forecast: torch.Tensor
    importance_map: torch.Tensor
    masks: MaskContext
    accounting: list[Accounting]
    base: torch.Tensor


class SparseEngine:
    """Executes a trained :class:`DynaPruner` sparsely, with the masks its policy chooses.

    BatchNorm is folded into the convs once per norm level the model loads (one set without
    calibrated levels); the model's weights must not change afterwards (build a new engine after
    loading other weights). ``strategy``: "auto" picks per layer between
    gathering active windows and convolving the channel-sliced canvas (see
    ``SparseContext._method``); "windows" / "canvas" force one (tests, benchmarks).
    ``shapes``: "dynamic" runs exactly the kept tiles and channels (``nonzero``: host syncs);
    "static" runs the fixed counts of each operating point (:mod:`.static`: top-k indices, no host
    sync, the same kernels every step — what a CUDA graph replays). ``pool``: the buffer pool
    (default: one that fits ``shapes``; :mod:`.graphs` passes a fresh-buffer pool).
    """

    def __init__(self, model: DynaPruner, *, strategy: str = "auto", shapes: str = "dynamic",
                 pool: BufferPool | None = None) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
        if shapes not in SHAPES:
            raise ValueError(f"shapes must be one of {SHAPES}, not {shapes!r}")
        self.model, self.strategy, self.shapes = model.eval(), strategy, shapes
        self._pool = pool if pool is not None else IndexedBufferPool() if shapes == "static" else BufferPool()
        self._lock = threading.Lock()
        self._folded: dict[int | None, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}
        self._plans: dict[tuple, StaticPlan] = {}

    def weights(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Conv weights with BatchNorm folded in, per block, for the norm level the model holds now:
        weight (C_out, k, k, C_in), bias (C_out,)."""
        level = self.model.loaded_norm_level
        if level not in self._folded:
            self._folded[level] = {id(block): _pixels_last(*fold_batchnorm(block.conv, block.norm))
                                   for block in self.model.backbone.blocks() if isinstance(block, (ConvUnit, Readout))}
        return self._folded[level]

    def plan(self, size: tuple[int, int], *, data_sparsity: float, model_sparsity: float, policy: str,
             coverage: bool, content_budget: bool) -> StaticPlan:
        """The static plan of one operating point on an H × W input, made once (see :func:`.static.plan_for`)."""
        key = (tuple(size), data_sparsity, model_sparsity, policy, coverage, content_budget)
        if key not in self._plans:
            self._plans[key] = plan_for(self.model, tuple(size), data_sparsity=data_sparsity,
                                        model_sparsity=model_sparsity, policy=policy, coverage=coverage,
                                        content_budget=content_budget)
        return self._plans[key]

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor, fallback: torch.Tensor, *, data_sparsity: float = 0.0,
                 model_sparsity: float = 0.0, policy: str = "dyna", mask_failure: float = 0.0,
                 coverage: torch.Tensor | None = None, content_budget: ContentBudget | None = None) -> SparseResult:
        """frames (B, T_in, C, H, W), fallback (B, T_out, C, H, W), normalised; H, W multiples of the tile;
        coverage (B, 1, H, W) {0, 1} or None: tiles without a measured cell never run; content_budget:
        as in :meth:`DynaPruner.select_masks`.
        One call at a time (a lock): mask selection loads the norm level its sw needs into the model,
        and the steps share the engine's buffer pool."""
        model, size, static = self.model, frames.shape[-2:], self.shapes == "static"
        if static and mask_failure > 0:
            raise ValueError("mask_failure draws a varying number of tiles: it needs shapes='dynamic'")
        plan = self.plan(size, data_sparsity=data_sparsity, model_sparsity=model_sparsity, policy=policy,
                         coverage=coverage is not None, content_budget=content_budget is not None) if static else None
        with self._lock:
            importance_map, _, masks = model.select_masks(frames, fallback, data_sparsity=data_sparsity,
                                                          model_sparsity=model_sparsity, policy=policy,
                                                          mask_failure=mask_failure, coverage=coverage,
                                                          content_budget=content_budget, sync_free=static)
            base, inputs = model.start(frames, fallback)         # the coarse path runs everywhere, dense
            forecast, accounting, coarse_macs = base.clone(), [], model.coarse_macs(*size)
            for b in range(frames.shape[0]):
                if not static and masks.tiles is not None and not masks.tiles[b].any():
                    accounting.append(Accounting(coarse_macs))  # nothing kept (e.g. no coverage): the base
                    continue
                ctx = (self._static_context(masks, b, plan, frames.device) if static
                       else self._context(masks, b, size, frames.device))
                ctx.accounting.macs += coarse_macs
                ctx.base = forecast[b:b + 1].flatten(1, 2)      # the readout adds its tiles onto it, in place
                try:
                    model.backbone(ctx.concat([part[b:b + 1] for part in inputs]), ctx)
                finally:
                    ctx.release()
                accounting.append(ctx.accounting)
        return SparseResult(forecast, importance_map, masks, accounting, base)

    def _context(self, masks: MaskContext, b: int, size: torch.Size, device: torch.device) -> SparseContext:
        tile = self.model.tile_size
        grid = (size[0] // tile, size[1] // tile)
        if masks.tiles is None:
            (rows, cols), tile_mask = all_tiles(grid, device), None
        else:
            rows, cols = torch.nonzero(masks.tiles[b, 0] > 0, as_tuple=True)
            tile_mask = masks.tiles[b:b + 1].detach()
        kept = {group: torch.nonzero(gate[b] > 0, as_tuple=True)[0] for group, gate in masks.gates.items()}
        return SparseContext(grid, rows, cols, kept, self.weights(), tile_mask, self.strategy, pool=self._pool)

    def _static_context(self, masks: MaskContext, b: int, plan: StaticPlan, device: torch.device) -> SparseContext:
        index = static_indices(masks, b, plan, device)
        return SparseContext(plan.grid, index.rows, index.cols, index.kept, self.weights(), index.tile_mask,
                             self.strategy, live=index.live, indexed=True, pool=self._pool)
