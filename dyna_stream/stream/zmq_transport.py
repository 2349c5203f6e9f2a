"""ZeroMQ transport: a SUB source feeding a pipeline, a PUB sink publishing its results.

Sockets bind or connect to 127.0.0.1 unless told otherwise; high-water marks bound every queue.
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np
import zmq

from ..errors import ConfigError
from .pipeline import Pipeline, StreamResult
from .protocol import DEFAULT_MAX_PAYLOAD_BYTES, Message, ProtocolError, decode, encode
from .security import CurveKeys, secure

log = logging.getLogger(__name__)
FRAME_TOPIC, FORECAST_TOPIC, IMPORTANCE_TOPIC, STATUS_TOPIC = "frame", "forecast", "importance", "status"


def open_socket(context: zmq.Context, kind: int, endpoint: str, *, bind: bool, hwm: int,
                keys: CurveKeys | None = None, linger_ms: int = 0) -> zmq.Socket:
    """A PUB or SUB socket with a high-water mark, CURVE-secured when ``keys`` are given
    (a binding socket is the CURVE server)."""
    socket = context.socket(kind)
    socket.setsockopt(zmq.LINGER, linger_ms)
    socket.setsockopt(zmq.SNDHWM if kind == zmq.PUB else zmq.RCVHWM, hwm)
    if keys is not None:
        secure(socket, keys, server=bind, context=context)
    try:
        (socket.bind if bind else socket.connect)(endpoint)
    except zmq.ZMQError as exc:
        socket.close(0)
        held = bind and exc.errno == zmq.EADDRINUSE
        raise ConfigError(f"cannot {'bind' if bind else 'connect to'} {endpoint}: {exc.strerror}"
                          f"{' (another node or program holds it; pick another port)' if held else ''}") from None
    return socket


class ZmqFrameSource:
    """Receives [topic, header, payload] frame messages and submits them to a pipeline.

    Malformed messages are counted per reason in ``pipeline.counts`` and dropped; warnings are
    rate-limited to one per ``warn_every_s``.
    """

    def __init__(self, pipeline: Pipeline, endpoint: str, *, bind: bool = False, topic: str = FRAME_TOPIC,
                 hwm: int = 8, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, warn_every_s: float = 5.0,
                 keys: CurveKeys | None = None, context: zmq.Context | None = None) -> None:
        self.pipeline, self.topic, self.max_payload_bytes = pipeline, topic, max_payload_bytes
        self.context = context or zmq.Context.instance()
        self.socket = open_socket(self.context, zmq.SUB, endpoint, bind=bind, hwm=hwm, keys=keys)
        self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._warn_every_s, self._last_warning = warn_every_s, 0.0
        self._said: set[tuple[str, str]] = set()          # (dtype or units, value) already warned about
        self._last_seq: dict[str, int] = {}               # per sender (frame_id): the newest seq seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dyna_stream-zmq-source", daemon=True)

    def start(self) -> ZmqFrameSource:
        self._thread.start()
        return self

    def _drop(self, reason: str, detail: str) -> None:
        self.pipeline.count_malformed(reason)
        now = time.monotonic()
        if now - self._last_warning >= self._warn_every_s:
            self._last_warning = now
            log.warning("dropped a malformed message (%s): %s", reason, detail)

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            frames = self.socket.recv_multipart(copy=False)
            received_ns = time.time_ns()
            try:
                topic, message = decode([f.buffer for f in frames], max_payload_bytes=self.max_payload_bytes)
            except ProtocolError as exc:
                self._drop("protocol", str(exc))
                continue
            if topic != self.topic:                 # ZeroMQ subscribes by prefix: "framex" is not "frame"
                self._drop("topic", f"topic {topic!r} is not {self.topic!r}")
                continue
            if message.kind != "frame" or message.array is None:
                self._drop("not_a_frame", f"kind {message.kind!r} on topic {topic!r}")
                continue
            self._check_units(message)
            self._count_lost(message)
            try:
                self.pipeline.submit(message.array, message.stamp_ns, message.frame_id, received_ns)
            except Exception as exc:  # the receive loop must outlive any single message
                log.exception("frame handling failed")
                self._drop("internal", repr(exc))

    def _count_lost(self, message: Message) -> None:
        """Gaps in a sender's ``seq`` are frames lost on the way (its queue or the network); a seq
        at or below the last one is a restarted sender and starts counting anew."""
        last = self._last_seq.get(message.frame_id)
        if last is not None and message.seq > last + 1:
            self.pipeline.count_lost(message.seq - last - 1)
        self._last_seq[message.frame_id] = message.seq

    def _check_units(self, message: Message) -> None:
        """Say once per kind what is taken on trust: integer frames are used as they are, in the
        model's units (no scale or offset is applied), and a frame's ``units`` is not converted."""
        expected = self.pipeline.units
        if np.issubdtype(message.array.dtype, np.integer) and ("dtype", message.array.dtype.name) not in self._said:
            self._said.add(("dtype", message.array.dtype.name))
            log.warning("%s frames are taken as %s as they are (no scale or offset is applied); send coded values "
                        "converted (FMI PGM bytes: dBZ = 0.5 · raw − 32)", message.array.dtype.name, expected or "is")
        if message.units and expected and message.units != expected and ("units", message.units) not in self._said:
            self._said.add(("units", message.units))
            log.warning("frames say units %r but this model takes %r; values are used as they are, not converted",
                        message.units, expected)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self.socket.close(0)


class ZmqResultSink:
    """Publishes each result as a ``forecast`` and an ``importance`` message, plus ``status``
    messages (pipeline counters, latency) every ``status_every`` results and whenever the node
    calls :meth:`publish_status` (its log interval, so a node that gets no good frame still says
    so). ``step_minutes``: the forecast's lead step, put in each forecast's ``meta``. Thread-safe:
    results come from the pipeline's worker, timed status from the node's thread."""

    def __init__(self, endpoint: str, *, bind: bool = True, hwm: int = 8, status_every: int = 10,
                 keys: CurveKeys | None = None, context: zmq.Context | None = None,
                 step_minutes: float | None = None) -> None:
        self.context = context or zmq.Context.instance()
        self.socket = open_socket(self.context, zmq.PUB, endpoint, bind=bind, hwm=hwm, keys=keys)
        self.status_every, self.step_minutes = status_every, step_minutes
        self.status_source = None   # callable → dict, set by the node (pipeline.stats)
        self._lock = threading.Lock()
        self._last_seq = 0

    def publish(self, result: StreamResult) -> None:
        meta = {"latency_ms": result.latency_ms, "step_minutes": self.step_minutes, **result.info}
        with self._lock:
            self._last_seq = result.seq
            for topic, array in ((FORECAST_TOPIC, result.forecast), (IMPORTANCE_TOPIC, result.importance)):
                message = Message(topic, result.seq, result.stamp_ns, result.frame_id, array,
                                  result.units if topic == FORECAST_TOPIC else "1", meta)
                self.socket.send_multipart(encode(topic, message), copy=False)
        if result.seq % self.status_every == 0:
            self.publish_status(result.stamp_ns, result.frame_id)

    def publish_status(self, stamp_ns: int | None = None, frame_id: str = "") -> None:
        """One ``status`` message: seq = the newest forecast's (0 before the first), the node's
        counters in ``meta``."""
        if self.status_source is None:
            return
        meta = self.status_source()
        with self._lock:
            status = Message(STATUS_TOPIC, self._last_seq, time.time_ns() if stamp_ns is None else stamp_ns,
                             frame_id, meta=meta)
            self.socket.send_multipart(encode(STATUS_TOPIC, status))

    def close(self) -> None:
        self.socket.close(0)
