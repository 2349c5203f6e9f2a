"""The per-sample masks one forward pass runs under: a tile mask and per-group channel gates."""
from __future__ import annotations

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
    """

    tiles: torch.Tensor | None = None
    gates: dict[str, torch.Tensor] = field(default_factory=dict)
    _expanded: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict, repr=False)

    def spatial(self, size: tuple[int, int]) -> torch.Tensor | None:
        """The tile mask at a layer's resolution (B, 1, h, w), cached per size."""
        if self.tiles is None:
            return None
        if size not in self._expanded:
            self._expanded[size] = expand_tiles(self.tiles, size)
        return self._expanded[size]

    def apply(self, features: torch.Tensor, group: str | None) -> torch.Tensor:
        """Zero the pruned tiles and the pruned channels of ``group`` in (B, C, h, w) features."""
        spatial = self.spatial(tuple(features.shape[-2:]))
        if spatial is not None:
            features = features * spatial
        gate = self.gates.get(group) if group is not None else None
        if gate is not None:
            features = features * gate[:, :, None, None]
        return features

    def concat(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Channel concatenation of (B, C_i, h, w) features (the sparse engine defers it)."""
        return torch.cat(parts, dim=1)

    def mask_input(self, inputs: torch.Tensor) -> torch.Tensor:
        """Zero the pruned tiles of the network input (B, C, H, W)."""
        return self.apply(inputs, None)

    def conv_unit(self, unit, x: torch.Tensor) -> torch.Tensor:
        """A backbone ConvUnit, masked dense: whole canvas, then zero pruned tiles and channels."""
        return self.apply(unit.dense(x), unit.group)

    def readout(self, unit, x: torch.Tensor) -> torch.Tensor:
        return self.apply(unit.dense(x), None)

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
