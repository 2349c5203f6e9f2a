"""The per-sample masks one forward pass runs under: a tile mask and per-group channel gates.

A backbone's forward routes every block call and every elementwise step through its context, so
one forward serves both the masked dense graph (this class, used in training) and the tile- and
channel-sparse executor (``sparse.SparseContext``, same methods).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .masks import expand_tiles


@dataclass
class MaskContext:
    """Masks for one batch.

    Attributes
    ----------
    tiles : (B, 1, Ht, Wt) {0, 1} (straight-through) data mask on the tile grid, or None (all kept).
    gates : group name → (B, C_group) {0, 1} channel gates; a missing group keeps all its channels.
    active_statistics : in training, BatchNorm statistics over the kept tiles and channels only
        (:mod:`dyna_stream.model.norm`); otherwise over the whole batch.
    """

    tiles: torch.Tensor | None = None
    gates: dict[str, torch.Tensor] = field(default_factory=dict)
    active_statistics: bool = False
    _expanded: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict, repr=False)
    _runs: dict[int, list[tuple[int, int]]] = field(default_factory=dict, repr=False)

    def spatial(self, size: tuple[int, int]) -> torch.Tensor | None:
        """The tile mask at a layer's resolution (B, 1, h, w), cached per size."""
        if self.tiles is None:
            return None
        if size not in self._expanded:
            self._expanded[size] = expand_tiles(self.tiles, size)
        return self._expanded[size]

    def apply(self, features: torch.Tensor, group: str | None) -> torch.Tensor:
        """Zero the pruned tiles and the pruned units of ``group`` in (B, C, h, w) features; C may be a
        whole multiple of the group's units (adjacent channels of one unit share its gate)."""
        spatial = self.spatial(tuple(features.shape[-2:]))
        if spatial is not None:
            features = features * spatial
        gate = self.gates.get(group) if group is not None else None
        if gate is not None:
            gate = gate.repeat_interleave(features.shape[1] // gate.shape[1], dim=1)
            features = features * gate[:, :, None, None]
        return features

    def record(self, block: torch.nn.Module, size: tuple[int, int]) -> None:
        """Note one call of ``block`` on an input of ``size`` (h, w), for MAC accounting."""
        self._runs.setdefault(id(block), []).append(tuple(size))

    def runs(self, block: torch.nn.Module) -> list[tuple[int, int]]:
        """Input sizes of every call of ``block`` under this context, in call order."""
        return self._runs.get(id(block), [])

    def concat(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Channel concatenation of (B, C_i, h, w) features (the sparse engine defers it)."""
        return torch.cat(parts, dim=1)

    def mask_input(self, inputs: torch.Tensor) -> torch.Tensor:
        """Zero the pruned tiles of the network input (B, C, H, W)."""
        return self.apply(inputs, None)

    def frames(self, inputs: torch.Tensor, channels: int) -> list[torch.Tensor]:
        """The stacked input (B, T·C, H, W) as T frames (B, C, H, W)."""
        return list(inputs.split(channels, dim=1))

    def zeros(self, group: str | None, units: int, like: torch.Tensor) -> torch.Tensor:
        """An all-zero state (B, units, h, w) of ``group`` at the batch and resolution of ``like``."""
        return like.new_zeros(like.shape[0], units, *like.shape[-2:])

    def conv_unit(self, unit, x: torch.Tensor) -> torch.Tensor:
        """A backbone ConvUnit, masked dense: whole canvas, then zero pruned tiles and channels."""
        self.record(unit, x.shape[-2:])
        active = self.active(unit, unit.output_size(tuple(x.shape[-2:]))) if self.active_statistics else None
        return self.apply(unit.dense(x, active), unit.group)

    def active(self, unit, size: tuple[int, int]) -> tuple[torch.Tensor | None, torch.Tensor | None] | None:
        """Which conv outputs (B, C·filters, h, w) of ``unit`` a sparse executor computes, as the
        {0, 1} factors (tiles (B, 1, h, w), channels (B, C·filters, 1, 1)) of their product, either
        None where all are kept; None: all of them."""
        spatial = self.spatial(size)
        gate = self.gates.get(unit.group) if unit.group is not None else None
        if gate is not None:
            gate = gate.repeat_interleave(unit.filters_per_unit, dim=1)[:, :, None, None]
        return None if spatial is None and gate is None else (spatial, gate)

    def readout(self, unit, x: torch.Tensor) -> torch.Tensor:
        self.record(unit, x.shape[-2:])
        return self.apply(unit.dense(x), None)

    def squeeze_excite(self, unit, x: torch.Tensor) -> torch.Tensor:
        """Channel weights (B, C) from the mean of masked features (B, C, h, w) over the kept pixels."""
        self.record(unit, x.shape[-2:])
        kept_pixels = self.tile_fraction(x.shape[0], x.device) * x.shape[-2] * x.shape[-1]
        return unit.dense(x.sum((2, 3)) / kept_pixels.clamp_min(1.0)[:, None])   # no kept tile: 0, not 0/0

    def pointwise(self, fn: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]], *inputs: torch.Tensor | None,
                  group: str | None = None) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """An elementwise step ``fn`` over same-sized features (None passes through), masked after."""
        out = fn(*inputs)
        if isinstance(out, tuple):
            return tuple(self.apply(o, group) for o in out)
        return self.apply(out, group)

    def tile_fraction(self, batch: int, device: torch.device) -> torch.Tensor:
        """Fraction of tiles kept per sample, (B,)."""
        if self.tiles is None:
            return torch.ones(batch, device=device)
        return self.tiles.detach().flatten(1).mean(1)

    def kept_channels(self, group: str | None, total: int, batch: int, device: torch.device) -> torch.Tensor:
        """Channels of ``group`` kept per sample, (B,); ungated groups keep ``total``."""
        gate = self.gates.get(group) if group is not None else None
        if gate is None:
            return torch.full((batch,), float(total), device=device)
        return gate.detach().sum(1)
