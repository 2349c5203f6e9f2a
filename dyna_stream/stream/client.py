"""Subscribe to a node's forecasts in a few lines.

    from dyna_stream.stream.client import ForecastClient
    with ForecastClient("tcp://127.0.0.1:5556") as client:
        for update in client.updates(timeout_s=30):
            print(update.seq, update.forecast.shape, update.importance.max())
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import zmq

from .pipeline import StreamResult
from .protocol import ProtocolError, decode
from .security import CurveKeys
from .zmq_transport import FORECAST_TOPIC, IMPORTANCE_TOPIC, STATUS_TOPIC, open_socket


class ForecastClient:
    """Pairs ``forecast`` and ``importance`` messages by sequence number; keeps the last status."""

    def __init__(self, endpoint: str, *, keys: CurveKeys | None = None, hwm: int = 8,
                 context: zmq.Context | None = None) -> None:
        self.context = context or zmq.Context.instance()
        self.socket = open_socket(self.context, zmq.SUB, endpoint, bind=False, hwm=hwm, keys=keys)
        for topic in (FORECAST_TOPIC, IMPORTANCE_TOPIC, STATUS_TOPIC):
            self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self.status: dict[str, Any] = {}
        self.malformed = 0

    def updates(self, timeout_s: float = 10.0) -> Iterator[StreamResult]:
        """Yield complete updates until ``timeout_s`` passes without one (status messages, which a
        node also sends while it has nothing to forecast, update :attr:`status` but do not count)."""
        halves: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while self.socket.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            try:
                topic, message = decode(self.socket.recv_multipart())
            except ProtocolError:
                self.malformed += 1
                continue
            if topic == STATUS_TOPIC:
                self.status = message.meta
                continue
            if topic not in (FORECAST_TOPIC, IMPORTANCE_TOPIC):     # a prefix match ("forecastx")
                self.malformed += 1
                continue
            entry = halves.setdefault(message.seq, {})
            entry[topic] = message
            if len(entry) == 2:
                del halves[message.seq]
                forecast, importance = entry[FORECAST_TOPIC], entry[IMPORTANCE_TOPIC]
                yield StreamResult(message.seq, forecast.stamp_ns, forecast.frame_id, forecast.array.copy(),
                                   importance.array.copy(), forecast.units,
                                   float(forecast.meta.get("latency_ms", float("nan"))), forecast.meta)
                deadline = time.monotonic() + timeout_s
            for stale in [seq for seq in halves if seq < message.seq - 8]:
                del halves[stale]

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[StreamResult]:
        """The next ``count`` updates (fewer if ``timeout_s`` passes)."""
        deadline, received = time.monotonic() + timeout_s, []
        for update in self.updates(timeout_s=max(0.1, deadline - time.monotonic())):
            received.append(update)
            if len(received) == count or time.monotonic() > deadline:
                break
        return received

    def close(self) -> None:
        self.socket.close(0)

    def __enter__(self) -> ForecastClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
