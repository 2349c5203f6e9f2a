"""The dyna_stream wire protocol, version 1 (docs/protocol.md): ZeroMQ multipart messages
[topic, header, payload] with a msgpack header and a raw C-contiguous array payload.

Decoding validates everything before it touches the payload and never copies it
(``np.frombuffer`` on the received buffer). Anything invalid raises :class:`ProtocolError`;
transports count and drop such messages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

VERSION = 1
KINDS = ("frame", "forecast", "importance", "status")
DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "int16": np.int16, "float32": np.float32,
          "float64": np.float64}
MAX_RANK = 4
MAX_DIM = 16384
MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 2**20
MAX_STAMP_NS = 2**63 - 1        # stamps and sequence numbers are signed 64-bit, never negative


class ProtocolError(ValueError):
    """A message that does not follow the protocol; the text says which rule it broke."""


@dataclass
class Message:
    """One decoded message.

    kind : one of KINDS.  seq : sender's sequence number.  stamp_ns : acquisition time of the
    (newest input) frame, ns since the Unix epoch.  frame_id : coordinate frame name.
    array : (…) payload view, read-only, or None for status messages.  units : physical units.
    meta : free-form extra header fields (msgpack-safe scalars, lists and maps).
    """

    kind: str
    seq: int
    stamp_ns: int
    frame_id: str = ""
    array: np.ndarray | None = None
    units: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def encode(topic: str, message: Message) -> list[bytes | memoryview]:
    """Multipart frames for ``message``; the payload is a zero-copy view of the array's buffer."""
    if message.kind not in KINDS:
        raise ProtocolError(f"kind must be one of {KINDS}, not {message.kind!r}")
    header: dict[str, Any] = {"v": VERSION, "kind": message.kind, "seq": int(message.seq),
                              "stamp_ns": int(message.stamp_ns), "frame_id": message.frame_id,
                              "units": message.units, "meta": message.meta}
    payload: bytes | memoryview = b""
    if message.array is not None:
        array = np.ascontiguousarray(message.array)
        dtype = array.dtype.name
        if dtype not in DTYPES:
            raise ProtocolError(f"dtype {dtype} is not sent; use one of {sorted(DTYPES)}")
        header.update(shape=list(array.shape), dtype=dtype)
        payload = memoryview(array).cast("B")
    return [topic.encode(), msgpack.packb(header, use_bin_type=True), payload]


def _unpack_header(raw: bytes | memoryview) -> dict:
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_str_len=4096, max_bin_len=0,
                                 max_array_len=1024, max_map_len=256, max_ext_len=0)
    except Exception as exc:  # msgpack raises several types for malformed input
        raise ProtocolError(f"header is not valid msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(header, dict):
        raise ProtocolError("header must be a msgpack map")
    return header


def _field(header: dict, name: str, kind: type | tuple[type, ...]) -> Any:
    value = header.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ProtocolError(f"header field {name!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _counter(header: dict, name: str) -> int:
    """A non-negative signed 64-bit integer field (``seq``, ``stamp_ns``)."""
    value = _field(header, name, int)
    if not 0 <= value <= MAX_STAMP_NS:
        raise ProtocolError(f"header field {name!r} must be in [0, 2^63), got {value}")
    return value


def decode(frames: list[bytes | memoryview], *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
           ) -> tuple[str, Message]:
    """Validate and decode a multipart message; returns (topic, message) or raises ProtocolError."""
    if len(frames) != 3:
        raise ProtocolError(f"expected 3 frames [topic, header, payload], got {len(frames)}")
    topic_raw, header_raw, payload = (memoryview(f) for f in frames)
    try:
        topic = bytes(topic_raw).decode()
    except UnicodeDecodeError:
        raise ProtocolError("topic is not UTF-8") from None
    header = _unpack_header(header_raw)
    version = header.get("v")
    if type(version) is not int or version != VERSION:            # 1.0 and true are not 1
        raise ProtocolError(f"protocol version {version!r} is not supported (this is the integer {VERSION})")
    kind = _field(header, "kind", str)
    if kind not in KINDS:
        raise ProtocolError(f"kind must be one of {KINDS}, not {kind!r}")
    message = Message(kind, _counter(header, "seq"), _counter(header, "stamp_ns"),
                      str(header.get("frame_id", "")), None, str(header.get("units", "")),
                      header.get("meta") if isinstance(header.get("meta"), dict) else {})
    if "shape" not in header:
        if payload.nbytes:
            raise ProtocolError("payload without shape/dtype in the header")
        return topic, message
    shape, dtype = _field(header, "shape", list), _field(header, "dtype", str)
    if dtype not in DTYPES:
        raise ProtocolError(f"dtype {dtype!r} is not accepted; use one of {sorted(DTYPES)}")
    if not 1 <= len(shape) <= MAX_RANK or not all(isinstance(d, int) and not isinstance(d, bool)
                                                   and 1 <= d <= MAX_DIM for d in shape):
        raise ProtocolError(f"shape {shape} must have 1–{MAX_RANK} dimensions of 1–{MAX_DIM}")
    expected = math.prod(shape) * np.dtype(DTYPES[dtype]).itemsize
    if expected > max_payload_bytes:
        raise ProtocolError(f"payload of {expected} bytes exceeds the limit of {max_payload_bytes}")
    if payload.nbytes != expected:
        raise ProtocolError(f"payload has {payload.nbytes} bytes, shape {shape} of {dtype} needs {expected}")
    message.array = np.frombuffer(payload, dtype=DTYPES[dtype]).reshape(shape)
    return topic, message
