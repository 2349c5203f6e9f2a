"""Frame sources: file replay of real data and OpenCV capture (camera, video file, RTSP/HTTP).

Each yields :class:`Frame` objects; the edge publisher sends them over ZeroMQ and the node can also
read them directly. No torch here.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from ..data.registry import load_path
from ..data.series import Series
from ..errors import DataError

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """array (C, H, W) float32 or uint8, physical units; stamp_ns acquisition time; frame_id."""

    array: np.ndarray
    stamp_ns: int
    frame_id: str = "sensor"


def frame_stamps(series: Series, loop_index: int) -> np.ndarray:
    """Acquisition stamps (ns) of the series' frames, shifted by whole replays so they keep rising."""
    times = series.times
    if np.isnat(times).any():          # an array without times: one frame a step (or a minute) from 0
        step = np.timedelta64(int((series.step_minutes or 1) * 60), "s")
        times = np.datetime64(0, "s") + np.arange(len(times)) * step
    stamps = times.astype("datetime64[ns]").astype(np.int64)
    span = int(stamps[-1] - stamps[0]) + (int(stamps[1] - stamps[0]) if len(stamps) > 1 else 1)
    return stamps + loop_index * span


def series_frames(series: Series, *, loops: int = 1, frame_id: str = "sensor") -> Iterator[Frame]:
    """The frames of a loaded series with their real acquisition stamps; cells without a measurement
    (outside radar coverage) are NaN, as the wire protocol says."""
    for loop_index in range(loops):
        for values, valid, stamp in zip(series.values, series.valid, frame_stamps(series, loop_index)):
            yield Frame(np.where(valid, values, np.float32(np.nan)), int(stamp), frame_id)


def file_frames(uri: str, *, variable: str | None = None, loops: int = 1, frame_id: str = "sensor") -> Iterator[Frame]:
    """A folder of radar files (FMI, KNMI, MRMS, ODIM_H5, CF netCDF, MeteoSwiss GIF, DWD
    RADOLAN) or a (T, H, W) / (T, C, H, W) array file, replayed."""
    return series_frames(load_path(uri, variable), loops=loops, frame_id=frame_id)


def capture_frames(uri: str, *, loops: int = 1, frame_id: str = "camera", variable: str | None = None,
                   max_frames: int | None = None) -> Iterator[Frame]:
    """Frames from ``cv2.VideoCapture``: a camera index ("0"), a video file or an RTSP/HTTP URL.

    Colour frames become grey (1, H, W) uint8; stamps are the wall-clock time of each read. A
    stream that stops delivering ends the iteration (logged), it does not raise. ``loops`` and
    ``variable`` are accepted for a uniform source signature and ignored (a capture is live).
    """
    capture = cv2.VideoCapture(int(uri) if uri.isdigit() else uri)
    if not capture.isOpened():
        raise DataError(f"OpenCV cannot open {uri!r}; check the camera index, file path or URL")
    try:
        count = 0
        while max_frames is None or count < max_frames:
            ok, image = capture.read()
            if not ok:
                log.info("capture %s ended after %d frames", uri, count)
                return
            grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
            count += 1
            yield Frame(grey[None], time.time_ns(), frame_id)
    finally:
        capture.release()


FRAME_SOURCES: dict[str, Callable[..., Iterator[Frame]]] = {"file": file_frames, "opencv": capture_frames}


def open_source(kind: str, uri: str, **options) -> Iterator[Frame]:
    try:
        return FRAME_SOURCES[kind](uri, **options)
    except KeyError:
        raise DataError(f"unknown frame source {kind!r}; choose one of {sorted(FRAME_SOURCES)}") from None


def paced(frames: Iterator[Frame], rate_hz: float | None) -> Iterator[Frame]:
    """Release frames at ``rate_hz`` (None: as fast as the source delivers them)."""
    next_time = time.monotonic()
    for frame in frames:
        yield frame
        if rate_hz:
            next_time += 1.0 / rate_hz
            time.sleep(max(0.0, next_time - time.monotonic()))
