"""A user's own series as a data set: one array file (.npy/.npz/.nc/.h5) or a folder of FMI radar
files, split in time into train / val / test, so ``train`` and ``eval`` take it like a built-in one."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import DataError
from . import radar_fmi
from .gridded_files import read_array, to_tchw
from .series import Series, from_array

SPLITS = ("train", "val", "test")           # in time order


@dataclass(frozen=True)
class FileSource:
    """Where a user's series is and how to read it: ``variable`` inside the file, its axes
    ``layout`` ("auto", "THW", "TCHW", "THWC"), its physical ``units`` and the ``fill_value``
    cells without a measurement take; ``splits`` = the train and val shares of the frames, in time
    order (test: the rest)."""

    path: str
    variable: str | None = None
    layout: str = "auto"
    units: str = ""
    fill_value: float = 0.0
    splits: tuple[float, float] = (0.7, 0.15)

    def load(self) -> Series:
        return _read(self)

    def split(self, split: str, *, min_frames: int) -> Series:
        """Frames of ``split`` (contiguous in time, no overlap with the others); each split must hold
        at least ``min_frames`` (one window)."""
        if split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, not {split!r}")
        series = self.load()
        train, val = self.splits
        if not (0 < train and 0 < val and train + val < 1):
            raise DataError(f"splits {self.splits}: train and val shares must be positive and sum below 1 "
                            "(test takes the rest)")
        count = len(series)
        edges = (0, round(count * train), round(count * (train + val)), count)
        start, stop = edges[SPLITS.index(split)], edges[SPLITS.index(split) + 1]
        if stop - start < min_frames:
            raise DataError(f"{Path(self.path).name}: the {split} split holds {stop - start} of {count} frames "
                            f"(shares {train:g} / {val:g} / {1 - train - val:g}); one window needs {min_frames} "
                            "— give a longer series or other splits")
        return series.slice(start, stop)


@lru_cache(maxsize=4)
def _read(source: FileSource) -> Series:
    return load_path(source.path, source.variable, units=source.units, fill_value=source.fill_value,
                     layout=source.layout)


def load_path(path: str | Path, variable: str | None = None, *, units: str = "", fill_value: float = 0.0,
              layout: str = "auto") -> Series:
    """Any user input: a folder of FMI radar files, or an array file in ``layout`` (see
    :func:`~dyna_stream.data.gridded_files.to_tchw`: (T, H, W), (T, C, H, W) or channel-last (T, H, W, C))."""
    path = Path(path)
    if path.is_dir():
        return radar_fmi.load_event(path)
    if not path.exists():
        raise DataError(f"input not found: {path}")
    array = to_tchw(read_array(path, variable), layout, name=path.name)
    return from_array(array, units=units, name=path.name, fill_value=fill_value)
