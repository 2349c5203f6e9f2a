"""Zero-bordered pixel buffers (C, h + 2·halo, w + 2·halo) lent to one sparse step at a time.

A step's buffers must read zero on their border and outside the step's active tiles. Whatever a
step writes is zero outside its own active tiles (tile results, masked inputs, re-zeroed
canvases), so a pool only has to clear what an earlier borrower left behind. Each pool says how,
from the step's *footprint* (what :class:`~dyna_stream.sparse.engine.SparseContext` passes):

- :class:`BufferPool` (dynamic shapes): footprint = the (Ht, Wt) bool mask of active tiles; it
  clears the tiles written before and not active now (one ``nonzero`` per pair of masks).
- :class:`IndexedBufferPool` (static shapes, :mod:`.static`): footprint = the step's fixed-length
  tile indices (rows, cols); it clears the previous borrower's tiles by index — no host sync.
- :class:`FreshBufferPool` (CUDA graphs): a new zero buffer every time, allocated and zero-filled
  inside the captured graph, so a replay never depends on what an earlier step left.

None is thread-safe: one step at a time (the engine holds a lock).
"""
from __future__ import annotations

from collections import defaultdict

import torch

from .tiles import clear_tiles, interior, zero_buffer


def _key(buffer: torch.Tensor, halo: int) -> tuple:
    size = (buffer.shape[1] - 2 * halo, buffer.shape[2] - 2 * halo)
    return (buffer.shape[0], *size, halo, buffer.dtype, buffer.device)


class BufferPool:
    """Buffers reused from step to step instead of zero-filled anew (a full-resolution fill costs
    more than the sparse work it serves). A returned buffer remembers the tiles its step wrote and,
    lent again, clears the ones not active now: tiles active in both steps are overwritten anyway,
    and a stream whose masks change little pays little. A borrower that overwrites the whole
    interior (``whole``: canvases only, e.g. the network input) skips the clearing."""

    def __init__(self) -> None:
        self._free: dict[tuple, list[tuple[torch.Tensor, object]]] = defaultdict(list)
        self._stale: tuple = (None, None, None)   # (written, active, their stale tiles): buffers share both

    def take(self, like: torch.Tensor, size: tuple[int, int], channels: int, halo: int, *, footprint,
             whole: bool) -> torch.Tensor:
        """A buffer that reads zero on its border and outside the ``footprint``'s tiles — or, with
        ``whole``, on its border only."""
        free = self._free[(channels, *size, halo, like.dtype, like.device)]
        if not free:
            return zero_buffer(like, size, channels, halo)
        buffer, written = free.pop()
        if not whole:
            self._clear(interior(buffer, halo), written, footprint)
        return buffer

    def _clear(self, pixels: torch.Tensor, written: torch.Tensor, active: torch.Tensor) -> None:
        """Zero the tiles of (C, h, w) ``pixels`` written before (``written``) but not ``active`` now."""
        if self._stale[0] is not written or self._stale[1] is not active:
            self._stale = (written, active, torch.nonzero(written & ~active, as_tuple=True))
        rows, cols = self._stale[2]
        if rows.numel():
            clear_tiles(pixels, rows, cols, tuple(active.shape))

    def give_back(self, buffer: torch.Tensor, halo: int, footprint) -> None:
        """Return a buffer written on the ``footprint``'s tiles only (and inside its border)."""
        self._free[_key(buffer, halo)].append((buffer, footprint))


class IndexedBufferPool(BufferPool):
    """For static shapes: footprint = (rows, cols, grid), the step's N tile indices (N fixed per
    operating point). Lent again, a buffer clears the previous borrower's N tiles by index (those
    still active are overwritten after): a fixed amount of work, no host sync."""

    def _clear(self, pixels: torch.Tensor, written: tuple, active: tuple) -> None:
        rows, cols, grid = written
        if grid == active[2]:
            clear_tiles(pixels, rows, cols, grid)
        else:                               # same pixels, another tile grid: cannot happen for one
            pixels.zero_()                  # model, but never leave stale values behind


class FreshBufferPool(BufferPool):
    """For CUDA graphs: every buffer new and zero (the allocation and the fill are captured)."""

    def take(self, like: torch.Tensor, size: tuple[int, int], channels: int, halo: int, *, footprint,
             whole: bool) -> torch.Tensor:
        return zero_buffer(like, size, channels, halo)

    def give_back(self, buffer: torch.Tensor, halo: int, footprint) -> None:
        pass
