"""Gather tile windows (with halos) from zero-bordered buffers and write tile results back.

A canvas is (1, C, h, w): a whole layer's feature map at batch 1 holding only the kept channels,
zero outside the active tiles. The tile grid (Ht, Wt) is the same at every resolution; a tile is
h / Ht pixels high at a canvas of height h.

A buffer is a (C, h + 2·halo, w + 2·halo) view of pixels (channels last) with a zero border of
``halo`` (a convolution's zero padding). Every function here takes any strides; windows come out
channels_last.
"""
from __future__ import annotations

import torch


def window_size(out_tile: int, kernel: int, stride: int, dilation: int) -> int:
    """Input pixels one output tile of ``out_tile`` pixels reads: (t−1)·s + d·(k−1) + 1."""
    return (out_tile - 1) * stride + dilation * (kernel - 1) + 1


def zero_buffer(like: torch.Tensor, size: tuple[int, int], channels: int, halo: int) -> torch.Tensor:
    """Zero (C, h + 2·halo, w + 2·halo) buffer of channels-last pixels, ``like``'s dtype and device."""
    return like.new_zeros(size[0] + 2 * halo, size[1] + 2 * halo, channels).permute(2, 0, 1)


def interior(buffer: torch.Tensor, halo: int) -> torch.Tensor:
    """The (C, h, w) view inside a buffer's border."""
    return buffer[:, halo:buffer.shape[1] - halo, halo:buffer.shape[2] - halo]


def _tiles(target: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(C, Ht·t, Wt·t) view, any strides → (Ht, Wt, C, t, t) view of its tiles."""
    channels, height, width = target.shape
    return target.view(channels, grid[0], height // grid[0], grid[1], width // grid[1]).permute(1, 3, 0, 2, 4)


def write_canvas(target: torch.Tensor, canvas: torch.Tensor, tile_mask: torch.Tensor | None = None) -> None:
    """Copy a (1, C, h, w) canvas into the (C, h, w) view ``target``; with ``tile_mask`` (Ht, Wt)
    {0, 1}, pruned tiles are written as zero (one pass either way)."""
    if tile_mask is None:
        target.copy_(canvas[0])
        return
    rows, cols = tile_mask.shape
    mask = tile_mask.view(rows, cols, 1, 1, 1)
    torch.mul(_tiles(canvas[0], (rows, cols)), mask, out=_tiles(target, (rows, cols)))


def write_tiles(target: torch.Tensor, values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                grid: tuple[int, int]) -> None:
    """Write tile results (N, C, t, t) of tiles (rows, cols) (N,) into the (C, Ht·t, Wt·t) view ``target``."""
    _tiles(target, grid)[rows, cols] = values


def clear_tiles(target: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, grid: tuple[int, int]) -> None:
    """Zero tiles (rows, cols) of the (C, Ht·t, Wt·t) view ``target``."""
    _tiles(target, grid)[rows, cols] = 0.0


def add_tiles_(base: torch.Tensor, values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
               grid: tuple[int, int]) -> torch.Tensor:
    """Add tile results (N, C, t, t) onto the active tiles of ``base`` (1, C, Ht·t, Wt·t) in place; returns ``base``."""
    _tiles(base[0], grid).index_put_((rows, cols), values, accumulate=True)
    return base


def take_tiles(canvas: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The active tiles themselves, no halo: (1, C, h, w) → (N, C, t, t)."""
    return _tiles(canvas[0], grid)[rows, cols]


def gather_windows(buffer: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, *, tile: int, window: int
                   ) -> torch.Tensor:
    """The windows of tiles (rows, cols) (N,) → (N, C, window, window), channels_last.

    buffer : (C, h + 2·p, w + 2·p), padded by the convolution's padding p; tile : input pixels per
    tile side. Window (r, c) starts at pixel (r·tile, c·tile) of the buffer: an overlapping strided
    view of all windows, of which the active ones are copied block by block.
    """
    channels, height, width = buffer.shape
    channel_stride, row_stride, pixel_stride = buffer.stride()
    grid = ((height - window) // tile + 1, (width - window) // tile + 1)
    windows = buffer.as_strided((*grid, channels, window, window),
                                (tile * row_stride, tile * pixel_stride, channel_stride, row_stride, pixel_stride),
                                buffer.storage_offset())
    return windows[rows, cols]
