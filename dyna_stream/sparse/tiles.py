"""Gather tile windows (with halos) from a canvas and scatter tile results back.

A canvas is (1, C, h, w) in channels_last memory: a whole layer's feature map at batch 1 holding
only the kept channels, zero outside the active tiles. The tile grid (Ht, Wt) is the same at every
resolution; a tile is h / Ht pixels high at a canvas of height h.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def window_size(out_tile: int, kernel: int, stride: int, dilation: int) -> int:
    """Input pixels one output tile of ``out_tile`` pixels reads: (t−1)·s + d·(k−1) + 1."""
    return (out_tile - 1) * stride + dilation * (kernel - 1) + 1


@dataclass(frozen=True)
class WindowIndex:
    """Where the active tiles' receptive fields lie in an input canvas.

    rows, cols: clamped pixel indices that broadcast together; valid: 1 inside the image and on
    active tiles (0 = the conv's zero padding or a pruned neighbour), with a trailing channel axis.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    valid: torch.Tensor


def _valid(rows: torch.Tensor, cols: torch.Tensor, size: tuple[int, int], tile_mask: torch.Tensor
           ) -> torch.Tensor:
    """1 where broadcast pixel indices (rows, cols) fall inside the image and on an active tile."""
    height, width = size
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    tile_h, tile_w = height // tile_mask.shape[0], width // tile_mask.shape[1]
    active = tile_mask[rows.clamp(0, height - 1) // tile_h, cols.clamp(0, width - 1) // tile_w] > 0
    return (inside & active)[..., None].to(tile_mask.dtype)


def window_index(tile_rows: torch.Tensor, tile_cols: torch.Tensor, tile_mask: torch.Tensor, *, size: tuple[int, int],
                 out_tile: int, kernel: int, stride: int, dilation: int, padding: int) -> WindowIndex:
    """Indices of the windows of active output tiles ``(tile_rows, tile_cols)`` (N,) in an (h, w) canvas.

    tile_mask : (Ht, Wt) {0, 1}, the active tiles (so halos reaching into pruned tiles read zero).
    """
    win, step = window_size(out_tile, kernel, stride, dilation), out_tile * stride
    offsets = torch.arange(win, device=tile_rows.device)
    rows = (tile_rows[:, None] * step - padding + offsets)[:, :, None]          # (N, win, 1)
    cols = (tile_cols[:, None] * step - padding + offsets)[:, None, :]          # (N, 1, win)
    valid = _valid(rows, cols, size, tile_mask)
    return WindowIndex(rows.clamp(0, size[0] - 1), cols.clamp(0, size[1] - 1), valid)


def gather(canvas: torch.Tensor, index: WindowIndex) -> torch.Tensor:
    """(1, C, h, w) canvas → (*index shape, C), zero where invalid."""
    return canvas[0].permute(1, 2, 0)[index.rows, index.cols] * index.valid


def gather_windows(canvas: torch.Tensor, index: WindowIndex) -> torch.Tensor:
    """(1, C, h, w) canvas → (N, C, win, win) windows in channels_last memory, zero where invalid."""
    return gather(canvas, index).permute(0, 3, 1, 2)


def scatter_tiles(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Place tile results (N, C, t, t) on a zero channels_last canvas (1, C, Ht·t, Wt·t)."""
    _, channels, tile, _ = values.shape
    canvas = values.new_zeros(1, grid[0] * tile, grid[1] * tile, channels)
    canvas[0].view(grid[0], tile, grid[1], tile, channels).permute(0, 2, 1, 3, 4)[rows, cols] = \
        values.permute(0, 2, 3, 1)
    return canvas.permute(0, 3, 1, 2)


def add_tiles_(base: torch.Tensor, values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
               grid: tuple[int, int]) -> torch.Tensor:
    """Add tile results (N, C, t, t) onto the active tiles of ``base`` (1, C, Ht·t, Wt·t), a
    channels_last tensor, in place; returns ``base``."""
    channels, tile = base.shape[1], values.shape[-1]
    tiles = base[0].permute(1, 2, 0).view(grid[0], tile, grid[1], tile, channels).permute(0, 2, 1, 3, 4)
    tiles.index_put_((rows, cols), values.permute(0, 2, 3, 1), accumulate=True)
    return base


def take_tiles(canvas: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The active tiles themselves, no halo: (1, C, h, w) → (N, C, t, t)."""
    _, channels, height, width = canvas.shape
    tile = height // grid[0]
    pixels = canvas[0].permute(1, 2, 0)
    return pixels.reshape(grid[0], tile, grid[1], tile, channels).permute(0, 2, 1, 3, 4)[rows, cols].permute(
        0, 3, 1, 2)
