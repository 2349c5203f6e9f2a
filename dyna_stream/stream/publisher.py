"""The edge publisher: replay frames of a file (or a radar folder) over ZeroMQ at a set rate.

Imports neither torch nor the model, so it runs on a small sensor box with numpy, pyzmq and msgpack.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import zmq

from ..data.registry import load_path
from ..data.series import Series
from .protocol import Message, encode
from .zmq_transport import FRAME_TOPIC

log = logging.getLogger(__name__)


def frame_stamps(series: Series, loop_index: int) -> np.ndarray:
    """Acquisition stamps (ns) of the series' frames, shifted by whole replays so they keep rising."""
    stamps = series.times.astype("datetime64[ns]").astype(np.int64)
    span = int(stamps[-1] - stamps[0]) + (int(stamps[1] - stamps[0]) if len(stamps) > 1 else 1)
    return stamps + loop_index * span


def replay(series: Series, endpoint: str, *, rate_hz: float = 2.0, loops: int = 1, bind: bool = True,
           frame_id: str = "sensor", warmup_s: float = 0.5, context: zmq.Context | None = None) -> int:
    """Send every frame (C, H, W) of ``series`` ``loops`` times at ``rate_hz``; returns frames sent.

    Invalid cells are sent as the series' fill value. ``warmup_s`` lets subscribers connect first
    (a PUB socket drops what it sends before they do).
    """
    context = context or zmq.Context.instance()
    socket = context.socket(zmq.PUB)
    socket.setsockopt(zmq.LINGER, 1000)
    (socket.bind if bind else socket.connect)(endpoint)
    sent, period = 0, 1.0 / rate_hz
    try:
        time.sleep(warmup_s)
        next_time = time.monotonic()
        for loop_index in range(loops):
            for frame, stamp in zip(series.values, frame_stamps(series, loop_index)):
                message = Message("frame", sent, int(stamp), frame_id, frame, series.units)
                socket.send_multipart(encode(FRAME_TOPIC, message), copy=False)
                sent += 1
                next_time += period
                time.sleep(max(0.0, next_time - time.monotonic()))
    finally:
        socket.close()
    log.info("sent %d frames to %s", sent, endpoint)
    return sent


def publish_file(path: str | Path, endpoint: str, *, variable: str | None = None, **options) -> int:
    """Replay a folder of FMI radar files or an array file (see :func:`dyna_stream.data.registry.load_path`)."""
    return replay(load_path(path, variable), endpoint, **options)
