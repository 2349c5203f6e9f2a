"""The sparse engine: each sample runs its own sub-network — only kept tiles, only kept channels.

The backbone's own ``forward`` runs unchanged; what flows between its blocks is a compact
canvas (1, C_kept, h, w) holding the kept channels only, zero outside the active tiles. Each
block slices its BatchNorm-folded weights to the kept input/output channels, gathers the active
tiles' receptive fields from its input canvas, runs a padding-0 convolution on that batch of
windows and scatters the results onto a fresh canvas. With every tile active it runs the sliced
convolution on the whole canvas instead (no gather). Batch 1 per call; larger batches loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..backbones.layers import ConvUnit, Readout
from ..model.context import MaskContext
from ..model.dynapruner import DynaPruner
from .folding import fold_batchnorm
from .tiles import WindowIndex, gather_windows, scatter_tiles, window_index, window_size

WINDOW_MIN_TILE = 8      # output pixels per tile side from which window convolutions pay
MAX_GATHERED_WORK = 0.5  # gather while the gathered work stays at or below this share of the canvas
STRATEGIES = ("auto", "windows", "canvas")


@dataclass(frozen=True)
class Geometry:
    """One convolution at one resolution: input size, output pixels per tile side, k, s, d, p."""

    size: tuple[int, int]
    out_tile: int
    kernel: int
    stride: int
    dilation: int
    padding: int


@dataclass(frozen=True)
class Concat:
    """Canvases to be read as one, concatenated along channels, (1, ΣC, h, w)."""

    parts: tuple[torch.Tensor, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        first = self.parts[0].shape
        return (first[0], sum(p.shape[1] for p in self.parts), *first[2:])


Canvas = torch.Tensor | Concat


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
    """

    grid: tuple[int, int]
    rows: torch.Tensor
    cols: torch.Tensor
    kept: dict[str, torch.Tensor]
    weights: dict[int, tuple[torch.Tensor, torch.Tensor]]
    tile_mask: torch.Tensor | None
    strategy: str = "auto"
    accounting: Accounting = field(default_factory=Accounting)
    _indices: dict = field(default_factory=dict, repr=False)
    _raw_input: Canvas | None = field(default=None, repr=False)

    @property
    def all_active(self) -> bool:
        return self.rows.numel() == self.grid[0] * self.grid[1]

    def mask_input(self, inputs: Canvas) -> Canvas:
        """The network input stays unmasked: gathers zero pruned neighbours themselves, and a layer
        that convolves the whole canvas masks this input first (see ``_on_canvas``)."""
        self._raw_input = inputs
        return inputs

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

    def _channels(self, group: str | None, total: int, device: torch.device) -> torch.Tensor | None:
        return self.kept.get(group) if group is not None else None

    def _input_index(self, unit: ConvUnit | Readout, device: torch.device) -> torch.Tensor | None:
        parts, offset, sliced = [], 0, False
        for source in unit.sources:
            kept = self._channels(source.group, source.channels, device)
            sliced |= kept is not None
            parts.append((kept if kept is not None else torch.arange(source.channels, device=device)) + offset)
            offset += source.channels
        return torch.cat(parts) if sliced else None

    def _output_index(self, unit: ConvUnit | Readout, device: torch.device) -> torch.Tensor | None:
        kept = self._channels(unit.group, unit.cout, device)
        if kept is None:
            return None
        r2 = unit.shuffle**2
        return (kept[:, None] * r2 + torch.arange(r2, device=device)).flatten()

    def conv_unit(self, unit: ConvUnit | Readout, x: Canvas) -> torch.Tensor:
        weight, bias = self.weights[id(unit)]
        in_index, out_index = self._input_index(unit, self.rows.device), self._output_index(unit, self.rows.device)
        if out_index is not None:
            weight, bias = weight.index_select(0, out_index), bias.index_select(0, out_index)
        if in_index is not None:
            weight = weight.index_select(1, in_index)
        conv = unit.conv
        geometry = Geometry(tuple(x.shape[-2:]), x.shape[-2] // conv.stride[0] // self.grid[0], weight.shape[-1],
                            conv.stride[0], conv.dilation[0], conv.padding[0])
        method = "canvas" if self.all_active else self._method(geometry)
        if method == "canvas":
            return self._on_canvas(unit, x, weight, bias, geometry)
        y = self._windows_conv(unit, x, weight, bias, geometry)
        if unit.shuffle > 1:
            y = F.pixel_shuffle(y, unit.shuffle)
        self.accounting.scattered_bytes += y.numel() * y.element_size()
        return scatter_tiles(y, self.rows, self.cols, self.grid)

    def _method(self, geometry: Geometry) -> str:
        """How to run one layer: gather tile "windows" and convolve them, or convolve the "canvas".

        Windows compute f·(win / (t·s))² of the canvas work (f = active share; the second factor
        the halo overhead) but pay a gather, a scatter and convolutions on small images. Measured
        on a 2-core CPU (benchmarks/sparse_speedup.py), they win only for tiles of 8 pixels and
        up while that share stays at or below a quarter; otherwise the channel-sliced canvas
        convolution (re-zeroing pruned tiles after it) is faster.
        """
        if self.strategy != "auto":
            return self.strategy
        if geometry.out_tile < WINDOW_MIN_TILE:
            return "canvas"
        active = self.rows.numel() / (self.grid[0] * self.grid[1])
        halo = (window_size(geometry.out_tile, geometry.kernel, geometry.stride, geometry.dilation)
                / (geometry.out_tile * geometry.stride)) ** 2
        return "windows" if active * halo <= MAX_GATHERED_WORK else "canvas"

    def _window_index(self, geometry: Geometry) -> WindowIndex:
        """Window indices for this geometry, computed once per sample and shared by layers alike."""
        if geometry not in self._indices:
            grid_mask = self.tile_mask[0, 0] if self.tile_mask is not None else torch.ones(
                self.grid, device=self.rows.device)
            self._indices[geometry] = window_index(self.rows, self.cols, grid_mask, size=geometry.size,
                                         out_tile=geometry.out_tile, kernel=geometry.kernel, stride=geometry.stride,
                                         dilation=geometry.dilation, padding=geometry.padding)
        return self._indices[geometry]

    def _windows_conv(self, unit, x, weight, bias, geometry: Geometry) -> torch.Tensor:
        """Padding-0 convolution over the gathered windows → (N, C_out, t, t)."""
        index = self._window_index(geometry)
        parts = x.parts if isinstance(x, Concat) else (x,)
        windows = torch.cat([gather_windows(part, index) for part in parts], dim=1) if len(parts) > 1 else \
            gather_windows(parts[0], index)
        y = F.conv2d(windows, weight.contiguous(memory_format=torch.channels_last), bias, geometry.stride, 0,
                     geometry.dilation)
        self.accounting.macs += y.shape[0] * y.shape[-2] * y.shape[-1] * weight.numel()
        self.accounting.gathered_bytes += windows.numel() * windows.element_size()
        return unit.activation(y)

    def _on_canvas(self, unit, x, weight, bias, geometry: Geometry) -> torch.Tensor:
        """Channel-sliced convolution over the whole canvas; pruned tiles re-zeroed afterwards."""
        raw = x is self._raw_input
        if isinstance(x, Concat):
            x = torch.cat(x.parts, dim=1)
        if raw and not self.all_active:
            x = self.zero_pruned(x)
        y = unit.activation(F.conv2d(x, weight.contiguous(memory_format=torch.channels_last), bias,
                                     geometry.stride, geometry.padding, geometry.dilation))
        self.accounting.macs += y.shape[-2] * y.shape[-1] * weight.numel()
        if unit.shuffle > 1:
            y = F.pixel_shuffle(y, unit.shuffle)
        return y if self.all_active else self.zero_pruned(y)

    readout = conv_unit


@dataclass
class SparseResult:
    """forecast (B, T_out, C, H, W) normalised; S (B, 1, H, W); per-sample accounting."""

    forecast: torch.Tensor
    importance_map: torch.Tensor
    masks: MaskContext
    accounting: list[Accounting]


class SparseEngine:
    """Executes a trained :class:`DynaPruner` sparsely, with the masks its policy chooses.

    BatchNorm is folded once at construction; the model must not change afterwards (build a
    new engine after loading other weights). ``strategy``: "auto" picks per layer between
    gathering active windows and convolving the channel-sliced canvas (see
    ``SparseContext._method``); "windows" / "canvas" force one (tests, benchmarks).
    """

    def __init__(self, model: DynaPruner, *, strategy: str = "auto") -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
        self.model, self.strategy = model.eval(), strategy
        self.weights = {id(block): fold_batchnorm(block.conv, block.norm) for block in model.backbone.blocks()}

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor, fallback: torch.Tensor, *, data_sparsity: float = 0.0,
                 model_sparsity: float = 0.0, policy: str = "dyna") -> SparseResult:
        """frames (B, T_in, C, H, W), fallback (B, T_out, C, H, W), normalised; H, W multiples of the tile."""
        model = self.model
        importance_map, _, masks = model.select_masks(frames, fallback, data_sparsity=data_sparsity,
                                                      model_sparsity=model_sparsity, policy=policy)
        size = frames.shape[-2:]
        forecasts, accounting = [], []
        for b in range(frames.shape[0]):
            ctx = self._context(masks, b, size, frames.device)
            inputs = ctx.concat([frames[b:b + 1].flatten(1, 2), fallback[b:b + 1].flatten(1, 2)])
            correction = model.backbone(inputs, ctx)
            forecasts.append(correction.reshape(1, model.t_out, model.channels, *size))
            accounting.append(ctx.accounting)
        return SparseResult(fallback + torch.cat(forecasts), importance_map, masks, accounting)

    def _context(self, masks: MaskContext, b: int, size: torch.Size, device: torch.device) -> SparseContext:
        tile = self.model.tile_size
        grid = (size[0] // tile, size[1] // tile)
        if masks.tiles is None:
            rows, cols = (idx.flatten() for idx in torch.meshgrid(
                torch.arange(grid[0], device=device), torch.arange(grid[1], device=device), indexing="ij"))
            tile_mask = None
        else:
            rows, cols = torch.nonzero(masks.tiles[b, 0] > 0, as_tuple=True)
            tile_mask = masks.tiles[b:b + 1].detach()
        kept = {group: torch.nonzero(gate[b] > 0, as_tuple=True)[0] for group, gate in masks.gates.items()}
        return SparseContext(grid, rows, cols, kept, self.weights, tile_mask, self.strategy)
