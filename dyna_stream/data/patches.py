"""Training samples as (window, patch) pairs: every window cut on one fixed grid of square patches.

Large frames mix calm and stormy regions; as samples of their own, patches let dynamic sample
pruning (``train.sample_unit: patch``) skip the calm parts of a window instead of all or none of it,
and a patch's recorded loss is the loss of that same patch the next time it is scored.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError
from .windows import ConcatWindows, WindowDataset


def patch_origins(size: int, crop: int, stride: int) -> list[int]:
    """Offsets (pixels) of ``crop``-long patches along an axis of ``size`` pixels: 0, stride, 2·stride, …,
    and one flush with the end so every pixel is covered. ``crop`` ≥ ``size`` gives the single offset 0."""
    if crop >= size:
        return [0]
    origins = list(range(0, size - crop + 1, stride))
    return origins if origins[-1] == size - crop else [*origins, size - crop]


class PatchWindows(Dataset):
    """The windows of ``windows``, each cut into P patches of ``crop`` × ``crop`` pixels at ``stride``
    over the padded grid (offsets whole tiles of ``windows.multiple``, so masks see the tile grid of
    full frames). Sample i is window i // P, patch i % P; items are those of :class:`WindowDataset`
    cut to the patch: frames (T_in, C, crop, crop), fallback/target/valid (T_out, C, crop, crop).
    A side shorter than ``crop`` is taken whole."""

    def __init__(self, windows: WindowDataset, *, crop: int, stride: int) -> None:
        multiple = windows.multiple
        if crop % multiple or stride % multiple or stride <= 0:
            raise ConfigError(f"patches need a crop and a stride that are positive multiples of the model's "
                              f"{multiple}-pixel tile; got crop {crop}, stride {stride} "
                              "(train.crop, train.patch_stride)")
        if stride > crop:
            raise ConfigError(f"patch stride {stride} > crop {crop}: the pixels between patches would never be "
                              "trained on; set train.patch_stride ≤ train.crop")
        self.windows = windows
        height, width = windows.padded_shape
        self.crop = (min(crop, height), min(crop, width))
        self.origins = np.array([(top, left) for top in patch_origins(height, crop, stride)
                                 for left in patch_origins(width, crop, stride)])
        self._boxes = [(int(top), int(left), *self.crop) for top, left in self.origins]

    @property
    def patches_per_window(self) -> int:
        return len(self.origins)

    def __len__(self) -> int:
        return len(self.windows) * self.patches_per_window

    def boxes(self) -> np.ndarray:
        """(P, 4) int: each patch as (top, left, height, width), pixels of the padded grid."""
        return np.array(self._boxes)

    def locate(self, index: int) -> tuple[int, int]:
        """Sample ``index`` → (window index, patch index)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        return divmod(index, self.patches_per_window)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        window, patch = self.locate(index)
        return self.windows.item(window, self._boxes[patch])


class ConcatPatches(Dataset):
    """The patches of a multi-source window set (:class:`~.windows.ConcatWindows`): each part cut on
    its own grid by :class:`PatchWindows`, the parts' samples one after another (sample i is sample
    ``i − offset[p]`` of part p)."""

    def __init__(self, windows: ConcatWindows, *, crop: int, stride: int) -> None:
        self.parts = [PatchWindows(part, crop=crop, stride=stride) for part in windows.parts]
        self.offsets = np.cumsum([0] + [len(part) for part in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        part = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.parts[part][index - int(self.offsets[part])]


def patch_samples(windows: WindowDataset | ConcatWindows, *, crop: int, stride: int) -> PatchWindows | ConcatPatches:
    """The patches of one window set or of a multi-source one."""
    if isinstance(windows, ConcatWindows):
        return ConcatPatches(windows, crop=crop, stride=stride)
    return PatchWindows(windows, crop=crop, stride=stride)


def regions(samples) -> list[tuple[WindowDataset, np.ndarray]]:
    """Every training sample as (window set, its (P, 4) boxes) per part, in sample order: a part's
    samples are its windows × its boxes, window-major (windows themselves: one box, the whole grid)."""
    if isinstance(samples, ConcatPatches):
        return [(part.windows, part.boxes()) for part in samples.parts]
    if isinstance(samples, PatchWindows):
        return [(samples.windows, samples.boxes())]
    parts = samples.parts if isinstance(samples, ConcatWindows) else [samples]
    return [(part, np.array([[0, 0, *part.padded_shape]])) for part in parts]
