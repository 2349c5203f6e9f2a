"""Input → target windows over a series, normalised, padded to the tile grid, with their fallback."""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .normalise import Normaliser
from .seasonal import Periods, longest, seasonal_frames, starting_forecast
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
      frames (T_in [+ P·T_out], C, Hp, Wp), fallback (T_out, C, Hp, Wp), target (T_out, C, Hp, Wp),
      valid (T_out, C, Hp, Wp) bool — where the truth and all T_in inputs are valid (DESIGN §7),
      coverage (1, Hp, Wp) bool — where every input frame has a measurement (in any channel).
    The fallback forecast is computed once per window, in physical units, then normalised.

    ``periods`` (name, frames) of periodic data: :meth:`physical` adds ``seasonal`` (P, T_out, C,
    H, W), the frames one period before each target; with ``seasonal_inputs`` the items' frames
    carry them after the T_in recent frames (the model reads them). Windows start where the
    series' history (``context_frames``) ends and where every seasonal frame exists.
    """

    def __init__(self, series: Series, *, t_in: int, t_out: int, normaliser: Normaliser, fallback: str,
                 multiple: int, periods: Periods = (), seasonal_inputs: bool = False) -> None:
        if seasonal_inputs and not periods:
            raise DataError(f"{series.name}: seasonal inputs need the data set's periods; it declares none")
        if any(frames < t_out for _, frames in periods):
            raise DataError(f"periods {dict(periods)} must each be at least the {t_out} forecast frames long")
        self.first = max(series.context_frames, longest(periods) - t_in)
        if len(series) - self.first < t_in + t_out:
            raise DataError(f"{series.name}: {len(series) - self.first} frames cannot make one {t_in}→{t_out} "
                            f"window; it needs at least {t_in + t_out}"
                            + (f" after {self.first} frames of seasonal history" if self.first else ""))
        normaliser.check_channels(series.shape[1])
        self.series, self.t_in, self.t_out, self.normaliser = series, t_in, t_out, normaliser
        self.periods, self.seasonal_inputs = tuple(periods), seasonal_inputs
        self.height, self.width = series.shape[2:]
        self.multiple = multiple
        self.fallbacks = np.stack([starting_forecast(fallback, series.values[:self.start(i) + t_in], t_in=t_in,
                                                     t_out=t_out, fill_value=series.fill_value, periods=self.periods)
                                   for i in range(len(self))])

    def __len__(self) -> int:
        return len(self.series) - self.first - self.t_in - self.t_out + 1

    def start(self, index: int) -> int:
        """The series frame where window ``index``'s inputs begin."""
        return self.first + index

    def _inputs(self, index: int) -> np.ndarray:
        return self.series.values[self.start(index):self.start(index) + self.t_in]

    def history(self, index: int, frames: int) -> np.ndarray:
        """The ``frames`` series frames up to window ``index``'s last input (T, C, H, W): what a live
        forecaster holds when it makes this window's forecast."""
        stop = self.start(index) + self.t_in
        if frames > stop:
            raise DataError(f"window {index} has {stop} frames of history, not {frames}")
        return self.series.values[stop - frames:stop]

    def physical(self, index: int) -> dict[str, np.ndarray]:
        """Unpadded physical-unit arrays of window ``index``: frames, fallback, target, valid, coverage
        (and seasonal, for periodic data)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = self.start(index)
        split = start + self.t_in
        series = self.series
        inputs_valid = series.valid[start:split].all(axis=0)
        valid = series.valid[split:split + self.t_out] & inputs_valid[None]
        window = {"frames": self._inputs(index), "fallback": self.fallbacks[index],
                  "target": series.values[split:split + self.t_out], "valid": valid,
                  "coverage": inputs_valid.any(axis=0, keepdims=True)}
        if self.periods:
            window["seasonal"] = seasonal_frames(series.values, split, self.t_out, self.periods)
        return window

    @property
    def fill_value(self) -> float:
        return self.series.fill_value

    @property
    def channels(self) -> int:
        return self.series.shape[1]

    @property
    def parts(self) -> list[WindowDataset]:
        """The single-series window sets this one is made of: itself (see :class:`ConcatWindows`)."""
        return [self]

    def size(self, index: int) -> tuple[int, int]:
        """(H, W) of window ``index`` before padding, pixels."""
        return self.height, self.width

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

        if self.seasonal_inputs:
            seasonal = window["seasonal"].reshape(-1, *window["frames"].shape[1:])     # (P·T_out, C, H, W)
            window["frames"] = np.concatenate([window["frames"], seasonal])
        item = {key: torch.from_numpy(self.normaliser.forward(cut(window[key], fill)))
                for key in ("frames", "fallback", "target")}
        item["valid"] = torch.from_numpy(cut(window["valid"], False))
        item["coverage"] = torch.from_numpy(cut(window["coverage"], False))
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


class ConcatWindows(Dataset):
    """The windows of several series (sources, regions, events) as one set: window i is window
    ``i − offset[p]`` of part p. Parts may have different grids; each window keeps its own.

    Quacks like :class:`WindowDataset` where a consumer goes window by window (``item``,
    ``physical``, ``size``, training batches of equal crops); every part shares one normaliser,
    window shape, tile multiple and fill value.
    """

    def __init__(self, parts: list[WindowDataset]) -> None:
        if not parts:
            raise DataError("a window set needs at least one series")
        first = parts[0]
        for part in parts[1:]:
            same = (part.t_in, part.t_out, part.multiple, part.fill_value, part.normaliser, part.channels,
                    part.periods, part.seasonal_inputs)
            if same != (first.t_in, first.t_out, first.multiple, first.fill_value, first.normaliser, first.channels,
                        first.periods, first.seasonal_inputs):
                raise DataError(f"{part.series.name}: windows differ from {first.series.name}'s in shape, tiles, "
                                "fill value or normalisation; they cannot be trained on together")
        self._parts = list(parts)
        self.t_in, self.t_out, self.multiple = first.t_in, first.t_out, first.multiple
        self.normaliser, self.fill_value, self.channels = first.normaliser, first.fill_value, first.channels
        self.periods, self.seasonal_inputs = first.periods, first.seasonal_inputs
        self.offsets = np.cumsum([0] + [len(part) for part in parts])

    @property
    def parts(self) -> list[WindowDataset]:
        return list(self._parts)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """Window ``index`` → (part, window index within the part)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        part = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return part, index - int(self.offsets[part])

    def physical(self, index: int) -> dict[str, np.ndarray]:
        part, local = self.locate(index)
        return self._parts[part].physical(local)

    def size(self, index: int) -> tuple[int, int]:
        part, local = self.locate(index)
        return self._parts[part].size(local)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.item(index)

    def item(self, index: int, box: tuple[int, int, int, int] | None = None) -> dict[str, torch.Tensor]:
        part, local = self.locate(index)
        return self._parts[part].item(local, box)


def window_set(series: list[Series], *, t_in: int, t_out: int, normaliser: Normaliser, fallback: str,
               multiple: int, periods: Periods = (), seasonal_inputs: bool = False) -> WindowDataset | ConcatWindows:
    """The windows of one series (a :class:`WindowDataset`) or of several (a :class:`ConcatWindows`)."""
    parts = [WindowDataset(s, t_in=t_in, t_out=t_out, normaliser=normaliser, fallback=fallback, multiple=multiple,
                           periods=periods, seasonal_inputs=seasonal_inputs)
             for s in series]
    return parts[0] if len(parts) == 1 else ConcatWindows(parts)


def stacked_batches(items: Iterable[dict[str, torch.Tensor]], batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """Stack items into batches of up to ``batch_size``; an item whose grid differs from the batch's
    (windows of another source) starts a new batch."""
    batch: list[dict[str, torch.Tensor]] = []
    for item in items:
        if batch and (len(batch) == batch_size or item["frames"].shape != batch[0]["frames"].shape):
            yield {key: torch.stack([b[key] for b in batch]) for key in batch[0]}
            batch = []
        batch.append(item)
    if batch:
        yield {key: torch.stack([b[key] for b in batch]) for key in batch[0]}
