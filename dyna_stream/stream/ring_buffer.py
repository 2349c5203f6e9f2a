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
    OUT_OF_ORDER = "out_of_order"    # older than the newest frame (within the gap limit): dropped
    GAP_RESET = "gap_reset"          # accepted, but a gap or clock jump (either way) emptied the window first
    RESIZED = "resized"              # accepted after resizing to the model grid


@dataclass(frozen=True)
class BufferPolicy:
    """How the buffer treats irregular input.

    period_ns : expected frame spacing (0: unknown, no gap check).
    max_gap_periods : a jump larger than this many periods, forwards (a gap) or backwards (the
        sensor's clock was reset), empties the window: stale history is never stitched to new frames,
        and a clock reset does not make every later frame "late".
    resize : frames on another grid are resized with OpenCV (INTER_AREA); False rejects them.
    """

    period_ns: int = 0
    max_gap_periods: float = 2.5
    resize: bool = False


class RingBuffer:
    """The latest ``length`` frames of shape (C, H, W), float32, with their stamps.

    ``grid`` (H, W) fixes the model grid; None takes the grid of the first frame pushed. Storage
    is allocated once; a push is O(1) (one frame copy); :meth:`window` returns an ordered copy
    (oldest first), safe to hand to another thread.
    """

    def __init__(self, length: int, channels: int, grid: tuple[int, int] | None = None,
                 policy: BufferPolicy = BufferPolicy()) -> None:
        self.length, self.channels, self.policy = length, channels, policy
        self.frame_shape: tuple[int, ...] = (channels, *grid) if grid else ()
        self._frames = np.zeros((length, *self.frame_shape), np.float32) if grid else None
        self._stamps = np.zeros(length, np.int64)
        self._next = 0
        self._count = 0

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

    def push(self, frame: np.ndarray, stamp_ns: int) -> Push:
        """Add a frame ((C, H, W) or (H, W)); raises DataError for frames it cannot take."""
        newest, policy = self.newest_stamp, self.policy
        jump = newest is not None and policy.period_ns > 0 and \
            abs(stamp_ns - newest) > policy.max_gap_periods * policy.period_ns
        if newest is not None and stamp_ns == newest:
            return Push.DUPLICATE
        if newest is not None and stamp_ns < newest and not jump:
            return Push.OUT_OF_ORDER
        fitted, resized = self._fit(frame)
        if np.isinf(fitted).any():
            raise DataError("frame holds infinite values; send NaN for cells without a measurement")
        outcome = Push.RESIZED if resized else Push.ACCEPTED
        if jump:
            self.clear()
            outcome = Push.GAP_RESET
        self._frames[self._next] = fitted
        self._stamps[self._next] = stamp_ns
        self._next = (self._next + 1) % self.length
        self._count = min(self._count + 1, self.length)
        return outcome

    def window(self) -> tuple[np.ndarray, np.ndarray]:
        """(frames (T, C, H, W) float32, stamps (T,) int64), oldest first; T = len(self)."""
        order = (np.arange(self._count) + self._next - self._count) % self.length
        return self._frames[order].copy(), self._stamps[order].copy()
