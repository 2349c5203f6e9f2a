"""Gather tile windows (with halos) from a canvas and scatter tile results back.

A canvas is (1, C, h, w) in channels_last memory: a whole layer's feature map at batch 1 holding
only the kept channels, zero outside the active tiles. The tile grid (Ht, Wt) is the same at every
resolution; a tile is h / Ht pixels high at a canvas of height h.
"""
from __future__ import annotations

import torch


def window_size(out_tile: int, kernel: int, stride: int, dilation: int) -> int:
    """Input pixels one output tile of ``out_tile`` pixels reads: (t−1)·s + d·(k−1) + 1."""
    return (out_tile - 1) * stride + dilation * (kernel - 1) + 1


def zero_pixels(like: torch.Tensor, size: tuple[int, int], channels: int, halo: int) -> torch.Tensor:
    """Zero pixels (h + 2·halo, w + 2·halo, C), ``like``'s dtype and device: a canvas in the making,
    with a zero border of ``halo`` (a convolution's zero padding) around it."""
    return like.new_zeros(size[0] + 2 * halo, size[1] + 2 * halo, channels)


def interior(pixels: torch.Tensor, halo: int) -> torch.Tensor:
    """The (h, w, C) view inside the border of zero-bordered pixels."""
    return pixels[halo:pixels.shape[0] - halo, halo:pixels.shape[1] - halo]


def write_canvas(target: torch.Tensor, canvas: torch.Tensor, tile_mask: torch.Tensor | None = None) -> None:
    """Copy a (1, C, h, w) canvas into (h, w, C) pixels ``target`` (any strides); with ``tile_mask``
    (Ht, Wt) {0, 1}, pruned tiles are written as zero."""
    source = canvas[0].permute(1, 2, 0)
    if tile_mask is None:
        target.copy_(source)
        return
    (rows, cols), (height, width, channels) = tile_mask.shape, target.shape
    tiles = (rows, height // rows, cols, width // cols, channels)
    torch.mul(source.reshape(tiles), tile_mask.view(rows, 1, cols, 1, 1), out=target.view(tiles))


def write_tiles(target: torch.Tensor, values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                grid: tuple[int, int]) -> None:
    """Write tile results (N, C, t, t) of tiles (rows, cols) into (Ht·t, Wt·t, C) pixels ``target``."""
    _, channels, tile, _ = values.shape
    target.view(grid[0], tile, grid[1], tile, channels).permute(0, 2, 1, 3, 4)[rows, cols] = values.permute(0, 2, 3, 1)


def padded_pixels(canvas: torch.Tensor, halo: int, tile_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(1, C, h, w) canvas → (h + 2·halo, w + 2·halo, C) contiguous zero-bordered pixels (pruned
    tiles zeroed on the way with ``tile_mask``)."""
    pixels = zero_pixels(canvas, canvas.shape[-2:], canvas.shape[1], halo)
    write_canvas(interior(pixels, halo), canvas, tile_mask)
    return pixels


def gather_windows(pixels: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, *, tile: int, window: int
                   ) -> torch.Tensor:
    """The windows of tiles (rows, cols) (N,) → (N, C, window, window) in channels_last memory.

    pixels : (h + 2·p, w + 2·p, C) contiguous, padded by the convolution's padding p (``padded_pixels``);
    tile : input pixels per tile side. Window (r, c) starts at pixel (r·tile, c·tile) of ``pixels``:
    an overlapping strided view of all windows, of which the active ones are copied, block by block.
    """
    row_stride, pixel_stride = pixels.stride(0), pixels.stride(1)
    grid = ((pixels.shape[0] - window) // tile + 1, (pixels.shape[1] - window) // tile + 1)
    windows = pixels.as_strided((*grid, window, window, pixels.shape[2]),
                                (tile * row_stride, tile * pixel_stride, row_stride, pixel_stride, 1))
    return windows[rows, cols].permute(0, 3, 1, 2)


def scatter_pixels(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, grid: tuple[int, int],
                   halo: int = 0) -> torch.Tensor:
    """Place tile results (N, C, t, t) of tiles (rows, cols) on zero pixels (Ht·t + 2·halo, Wt·t + 2·halo, C)."""
    _, channels, tile, _ = values.shape
    pixels = zero_pixels(values, (grid[0] * tile, grid[1] * tile), channels, halo)
    write_tiles(interior(pixels, halo), values, rows, cols, grid)
    return pixels


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
