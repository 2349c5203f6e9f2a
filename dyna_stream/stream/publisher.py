"""The edge publisher: frames from a file, folder or camera → ZeroMQ at a set rate.

Imports neither torch nor the model, so it runs on a small sensor box with numpy, OpenCV, pyzmq
and msgpack.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import zmq

from ..data.series import Series
from .protocol import Message, encode
from .security import CurveKeys
from .sources import Frame, open_source, paced, series_frames
from .zmq_transport import FRAME_TOPIC, open_socket

log = logging.getLogger(__name__)


def publish(frames: Iterable[Frame], endpoint: str, *, bind: bool = True, units: str = "", warmup_s: float = 0.5,
            hwm: int = 8, keys: CurveKeys | None = None, context: zmq.Context | None = None) -> int:
    """Send every frame; returns how many were sent. ``warmup_s`` lets subscribers connect first
    (a PUB socket drops what it sends before they do); ``keys`` turn on CURVE."""
    context = context or zmq.Context.instance()
    socket = open_socket(context, zmq.PUB, endpoint, bind=bind, hwm=hwm, keys=keys, linger_ms=1000)
    sent = 0
    try:
        time.sleep(warmup_s)
        for frame in frames:
            socket.send_multipart(encode(FRAME_TOPIC, Message("frame", sent, frame.stamp_ns, frame.frame_id,
                                                              frame.array, units)), copy=False)
            sent += 1
    finally:
        socket.close()
    log.info("sent %d frames to %s", sent, endpoint)
    return sent


def replay(series: Series, endpoint: str, *, rate_hz: float = 2.0, loops: int = 1, frame_id: str = "sensor",
           **options) -> int:
    """Replay a loaded series at ``rate_hz`` with its real acquisition stamps."""
    return publish(paced(series_frames(series, loops=loops, frame_id=frame_id), rate_hz), endpoint,
                   units=series.units, **options)


def publish_source(kind: str, uri: str, endpoint: str, *, rate_hz: float | None, loops: int = 1,
                   frame_id: str = "sensor", variable: str | None = None, **options) -> int:
    """Frames of a registered source ("file" or "opencv") → ``endpoint``."""
    frames = open_source(kind, uri, loops=loops, frame_id=frame_id, variable=variable)
    return publish(paced(frames, rate_hz), endpoint, **options)
