"""A preallocated ring of the latest frames, with policies for what real streams do wrong."""
from __future__ import annotations

import enum
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import DataError


class Push(enum.Enum):
    """What happened to a pushed frame."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"          # same stamp as the newest frame: dropped
    OUT_OF_ORDER = "out_of_order"    # older than the newest frame: dropped
    GAP_RESET = "gap_reset"          # accepted, but a gap or a confirmed clock reset emptied the window first
    RESIZED = "resized"              # accepted after resizing to the model grid


@dataclass(frozen=True)
class BufferPolicy:
    """How the buffer treats irregular input.

    period_ns : expected frame spacing (0: unknown, no gap check).
    max_gap_periods : a jump forwards larger than this many periods (a gap) empties the window:
        stale history is never stitched to new frames. A frame that far in the past is dropped as
        out of order; only a second one that follows it in time (the sensor's clock was really
        reset) empties the window and starts anew, so one stray stamp costs no window.
    resize : frames on another grid are resized with OpenCV (INTER_AREA); False rejects them.
    limits : (low, high) physical values a frame may hold; a frame with a value outside is
        rejected (None: no limit on that side). NaN (no measurement) is always allowed.
    """

    period_ns: int = 0
    max_gap_periods: float = 2.5
    resize: bool = False
    limits: tuple[float | None, float | None] = (None, None)


class RingBuffer:
    """The latest frames of shape (C, H, W), float32, with their stamps: a window of ``length`` frames,
    every ``stride``-th one counted back from the newest (a sensor k times faster than the model's
    step: stride k, so (length − 1)·k + 1 frames are held).

    ``grid`` (H, W) fixes the model grid; None takes the grid of the first frame pushed. Storage
    is allocated once; a push is O(1) (one frame copy); :meth:`window` returns an ordered copy
    (oldest first), safe to hand to another thread.
    """

    def __init__(self, length: int, channels: int, grid: tuple[int, int] | None = None,
                 policy: BufferPolicy = BufferPolicy(), *, stride: int = 1) -> None:
        if stride < 1:
            raise ValueError(f"stride must be at least 1, got {stride}")
        self.window_length, self.stride = length, stride
        length = (length - 1) * stride + 1
        self.length, self.channels, self.policy = length, channels, policy
        self.frame_shape: tuple[int, ...] = (channels, *grid) if grid else ()
        self._frames = np.zeros((length, *self.frame_shape), np.float32) if grid else None
        self._stamps = np.zeros(length, np.int64)
        self._next = 0
        self._count = 0
        self._rewind: int | None = None      # a stamp far behind the newest: a clock reset, if one follows it

    def __len__(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        return self._count == self.length

    @property
    def newest_stamp(self) -> int | None:
        return int(self._stamps[(self._next - 1) % self.length]) if self._count else None

    def clear(self) -> None:
        self._count = 0

    def _fit(self, frame: np.ndarray) -> tuple[np.ndarray, bool]:
        array = np.asarray(frame)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3 or array.shape[0] != self.channels:
            raise DataError(f"frame shape {np.shape(frame)} does not fit the model's {self.channels} channel(s) "
                            "(C, H, W); publish frames with that many channels")
        if self._frames is None:
            self.frame_shape = tuple(array.shape)
            self._frames = np.zeros((self.length, *self.frame_shape), np.float32)
        if array.shape[1:] == self.frame_shape[1:]:
            return array, False
        if not self.policy.resize:
            raise DataError(f"frame shape {array.shape} does not match the model grid {self.frame_shape}; "
                            "enable resizing (buffer.resize, ROS parameter resize) or publish "
                            f"{self.frame_shape[1]}×{self.frame_shape[2]} frames")
        height, width = self.frame_shape[1:]
        resized = np.stack([cv2.resize(np.asarray(c, np.float32), (width, height), interpolation=cv2.INTER_AREA)
                            for c in array])
        return resized, True

    def _check_values(self, fitted: np.ndarray) -> None:
        if np.isinf(fitted).any():
            raise DataError("frame holds infinite values (or values beyond float32); send NaN for cells "
                            "without a measurement")
        low, high = self.policy.limits
        measured = fitted[~np.isnan(fitted)]
        too_low = low is not None and measured.size and measured.min() < low
        if too_low or (high is not None and measured.size and measured.max() > high):
            raise DataError(f"frame values {measured.min():g} … {measured.max():g} lie outside what this model "
                            f"takes ({low if low is not None else '-inf'} … {high if high is not None else 'inf'}); "
                            "check the units, scale and offset")

    def push(self, frame: np.ndarray, stamp_ns: int) -> Push:
        """Add a frame ((C, H, W) or (H, W)); raises DataError for frames it cannot take."""
        newest, policy = self.newest_stamp, self.policy
        gap = policy.max_gap_periods * policy.period_ns if policy.period_ns > 0 else None
        if newest is not None and stamp_ns == newest:
            return Push.DUPLICATE
        reset = False
        if newest is not None and stamp_ns < newest:
            far_behind = gap is not None and newest - stamp_ns > gap
            rewind = self._rewind
            if not (far_behind and rewind is not None and 0 < stamp_ns - rewind <= gap):
                self._rewind = stamp_ns if far_behind else rewind
                return Push.OUT_OF_ORDER
            reset = True                      # two frames in order, far behind: the clock went back
        fitted, resized = self._fit(frame)
        self._check_values(fitted)
        outcome = Push.RESIZED if resized else Push.ACCEPTED
        if reset or (newest is not None and gap is not None and stamp_ns - newest > gap):
            self.clear()
            outcome = Push.GAP_RESET
        self._rewind = None
        self._frames[self._next] = fitted
        self._stamps[self._next] = stamp_ns
        self._next = (self._next + 1) % self.length
        self._count = min(self._count + 1, self.length)
        return outcome

    def window(self) -> tuple[np.ndarray, np.ndarray]:
        """(frames (T, C, H, W) float32, stamps (T,) int64), oldest first: every ``stride``-th held frame
        ending at the newest; T = the window length once :attr:`full`."""
        held = np.arange(self._count)[(self._count - 1) % self.stride::self.stride]
        order = (held + self._next - self._count) % self.length
        return self._frames[order].copy(), self._stamps[order].copy()
