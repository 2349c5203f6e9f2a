"""The in-memory form every loader returns: a gridded time series in physical units."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import DataError


@dataclass(frozen=True)
class Series:
    """A regularly sampled gridded time series.

    Attributes
    ----------
    values : float32 array (T, C, H, W), physical ``units``; invalid cells hold ``fill_value``.
    valid : bool array (T, C, H, W), True where a measurement exists.
    times : datetime64[m] array (T,), frame times (UTC).
    units : str, e.g. "dBZ", "K", "trips / cell / 30 min".
    fill_value : float, the physical value that stands for "nothing here" (no echo, zero trips);
        used to fill invalid cells and outside-the-domain advection.
    name : str, short description for reports.
    pixel_km : float or None, the grid's pixel size in km (None: unknown, e.g. a bare array).
    step_minutes : float or None, minutes between frames (None: unknown).
    context_frames : int, how many leading frames are history from before this split (what a
        seasonal input or baseline reads one period back): inputs only, never a window's target.
    """

    values: np.ndarray
    valid: np.ndarray
    times: np.ndarray
    units: str
    fill_value: float
    name: str
    pixel_km: float | None = None
    step_minutes: float | None = None
    context_frames: int = 0

    def __post_init__(self) -> None:
        if self.values.ndim != 4:
            raise DataError(f"{self.name}: values must be (T, C, H, W), got shape {self.values.shape}")
        if self.valid.shape != self.values.shape:
            raise DataError(f"{self.name}: valid mask {self.valid.shape} != values {self.values.shape}")
        if self.times.shape != (self.values.shape[0],):
            raise DataError(f"{self.name}: {self.times.shape[0]} times for {self.values.shape[0]} frames")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.values.shape)  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.values.shape[0]

    def slice(self, start: int, stop: int) -> Series:
        """Frames ``start:stop`` as a new series (views, no copy); the history frames it keeps stay history."""
        start, stop, _ = slice(start, stop).indices(len(self))
        return replace(self, values=self.values[start:stop], valid=self.valid[start:stop],
                       times=self.times[start:stop], context_frames=max(0, min(self.context_frames, stop) - start))

    def time_reversed(self) -> Series:
        """The frames played backwards (copies): a decaying storm becomes a growing one and its motion
        turns around, which tells whether a model leans on the intensity trend of the events it was
        trained on (``benchmarks/growth_and_decay.py``). The time labels stay ascending (frame k keeps
        label k): a window needs only their regular step. Refused for a series with history frames,
        whose cycles (a day, a week) would run the wrong way."""
        if self.context_frames:
            raise DataError(f"{self.name}: a series with {self.context_frames} history frames (seasonal data) "
                            "cannot be played backwards")
        return replace(self, values=np.ascontiguousarray(self.values[::-1]),
                       valid=np.ascontiguousarray(self.valid[::-1]), name=f"{self.name}, time-reversed")


def from_array(values: np.ndarray, *, units: str, name: str, fill_value: float = 0.0,
               times: np.ndarray | None = None) -> Series:
    """Build a series from a (T, H, W) or (T, C, H, W) array; NaN and ±inf become invalid.

    Parameters
    ----------
    values : array (T, H, W) or (T, C, H, W), any real dtype, physical units.
    """
    array = np.asarray(values)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise DataError(f"{name}: expected a (T, H, W) or (T, C, H, W) array, got shape {array.shape}; "
                        "reshape it or pick the right variable")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise DataError(f"{name}: expected real numbers, got dtype {array.dtype}")
    array = array.astype(np.float32)
    valid = np.isfinite(array)
    if not valid.any():
        raise DataError(f"{name}: every value is NaN or infinite")
    array = np.where(valid, array, np.float32(fill_value))
    if times is None:
        times = np.full(array.shape[0], np.datetime64("NaT", "m"))     # unknown: said so, never invented
    return Series(array, valid, times, units, float(fill_value), name)
