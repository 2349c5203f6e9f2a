"""Input → target windows over a series, normalised, padded to the tile grid, with their fallback."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from ..extrapolation import get_extrapolator
from .normalise import Normaliser
from .series import Series


def pad_amount(size: int, multiple: int) -> int:
    return math.ceil(size / multiple) * multiple - size


def pad_to_multiple(array: np.ndarray, multiple: int, value: float | bool) -> np.ndarray:
    """Pad the last two axes (H, W) bottom/right up to multiples of ``multiple`` with ``value``."""
    height, width = array.shape[-2:]
    return pad_to(array, height + pad_amount(height, multiple), width + pad_amount(width, multiple), value)


def pad_to(array: np.ndarray, height: int, width: int, value: float | bool) -> np.ndarray:
    """Pad the last two axes bottom/right with ``value`` to exactly (height, width) (no larger input);
    an array already that size comes back as it is."""
    if array.shape[-2:] == (height, width):
        return array
    widths = [(0, 0)] * (array.ndim - 2) + [(0, height - array.shape[-2]), (0, width - array.shape[-1])]
    return np.pad(array, widths, constant_values=value)


def model_input(array: np.ndarray, normaliser: Normaliser, multiple: int, fill_value: float) -> torch.Tensor:
    """Physical (T, C, H, W) → normalised float32 tensor padded with the fill value to the tile grid."""
    return torch.from_numpy(normaliser.forward(pad_to_multiple(array, multiple, fill_value)))


class WindowDataset(Dataset):
    """Sliding windows (stride 1) of ``t_in`` input and ``t_out`` target frames.

    Each item is a dict of float32 tensors, normalised, padded bottom/right to a multiple of
    ``multiple`` (pad = the series' fill value, never scored):
      frames (T_in, C, Hp, Wp), fallback (T_out, C, Hp, Wp), target (T_out, C, Hp, Wp),
      valid (T_out, C, Hp, Wp) bool — where the truth and all T_in inputs are valid (DESIGN §7).
    The fallback forecast is computed once per window, in physical units, then normalised.
    """

    def __init__(self, series: Series, *, t_in: int, t_out: int, normaliser: Normaliser, fallback: str,
                 multiple: int) -> None:
        if len(series) < t_in + t_out:
            raise DataError(f"{series.name}: {len(series)} frames cannot make one {t_in}→{t_out} window; "
                            f"it needs at least {t_in + t_out}")
        normaliser.check_channels(series.shape[1])
        self.series, self.t_in, self.t_out, self.normaliser = series, t_in, t_out, normaliser
        self.height, self.width = series.shape[2:]
        self.multiple = multiple
        extrapolate = get_extrapolator(fallback)
        self.fallbacks = np.stack([extrapolate(self._inputs(i), t_out, series.fill_value) for i in range(len(self))])

    def __len__(self) -> int:
        return len(self.series) - self.t_in - self.t_out + 1

    def _inputs(self, index: int) -> np.ndarray:
        return self.series.values[index:index + self.t_in]

    def physical(self, index: int) -> dict[str, np.ndarray]:
        """Unpadded physical-unit arrays of window ``index``: frames, fallback, target, valid."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        start, split = index, index + self.t_in
        series = self.series
        valid = series.valid[split:split + self.t_out] & series.valid[start:split].all(axis=0)[None]
        return {"frames": self._inputs(index), "fallback": self.fallbacks[index],
                "target": series.values[split:split + self.t_out], "valid": valid}

    @property
    def padded_shape(self) -> tuple[int, int]:
        """(Hp, Wp): the grid of the items, pixels."""
        return tuple(size + pad_amount(size, self.multiple) for size in (self.height, self.width))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.item(index)

    def item(self, index: int, box: tuple[int, int, int, int] | None = None) -> dict[str, torch.Tensor]:
        """Window ``index`` as model tensors over the padded grid, or over its part ``box`` = (top,
        left, height, width) in pixels of that grid (cut before normalising: a patch costs its size)."""
        top, left, height, width = box or (0, 0, *self.padded_shape)
        window = self.physical(index)
        fill = self.series.fill_value

        def cut(array: np.ndarray, value: float | bool) -> np.ndarray:
            return pad_to(array[..., top:top + height, left:left + width], height, width, value)

        item = {key: torch.from_numpy(self.normaliser.forward(cut(window[key], fill)))
                for key in ("frames", "fallback", "target")}
        item["valid"] = torch.from_numpy(cut(window["valid"], False))
        return item


def random_crop_flip(item: dict[str, torch.Tensor], size: int, multiple: int,
                     generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Training augmentation: a ``size``² crop at a grid-aligned offset, random flips and transpose.

    All arrays of the item move together, so the fallback stays the extrapolation of the frames.
    """
    height, width = item["frames"].shape[-2:]
    crop_h, crop_w = min(size, height), min(size, width)
    top = int(torch.randint(0, (height - crop_h) // multiple + 1, (1,), generator=generator)) * multiple
    left = int(torch.randint(0, (width - crop_w) // multiple + 1, (1,), generator=generator)) * multiple
    flips = torch.rand(3, generator=generator) < 0.5
    out = {}
    for key, value in item.items():
        value = value[..., top:top + crop_h, left:left + crop_w]
        if flips[0]:
            value = value.flip(-1)
        if flips[1]:
            value = value.flip(-2)
        if flips[2] and crop_h == crop_w:
            value = value.transpose(-1, -2)
        out[key] = value.contiguous()
    return out
