"""Wire protocol v1: round trips, zero-copy decode, and every validation rule."""
import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dyna_stream.stream.pipeline import Pipeline
from dyna_stream.stream.protocol import MAX_DIM, Message, ProtocolError, decode, encode
from dyna_stream.stream.ring_buffer import BufferPolicy, RingBuffer


def frames_of(array, **fields):
    return encode("frame", Message("frame", 7, 1_700_000_000_000_000_000, "radar", array, "dBZ", fields))


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", "float64"])
def test_round_trip_is_exact_and_zero_copy(dtype):
    array = (np.arange(2 * 3 * 4) % 200).astype(dtype).reshape(2, 3, 4)
    wire = [bytes(f) if not isinstance(f, bytes) else f for f in frames_of(array, note="x")]
    topic, message = decode(wire)
    assert topic == "frame" and message.kind == "frame" and message.seq == 7 and message.frame_id == "radar"
    assert message.units == "dBZ" and message.meta == {"note": "x"}
    np.testing.assert_array_equal(message.array, array)
    assert message.array.dtype == np.dtype(dtype) and not message.array.flags.writeable   # a view, not a copy


def test_status_messages_carry_no_payload():
    topic, message = decode(encode("status", Message("status", 1, 2, meta={"published": 3})))
    assert message.array is None and message.meta == {"published": 3}


def header(**fields):
    base = {"v": 1, "kind": "frame", "seq": 0, "stamp_ns": 0, "shape": [2, 2], "dtype": "float32"}
    base.update(fields)
    return msgpack.packb({k: v for k, v in base.items() if v is not None})


PAYLOAD = np.zeros((2, 2), np.float32).tobytes()


@pytest.mark.parametrize("frames, reason", [
    ([b"frame", header()], "expected 3 frames"),
    ([b"\xff\xfe", header(), PAYLOAD], "UTF-8"),
    ([b"frame", b"\xc1garbage", PAYLOAD], "not valid msgpack"),
    ([b"frame", msgpack.packb([1, 2]), PAYLOAD], "must be a msgpack map"),
    ([b"frame", header(v=2), PAYLOAD], "version 2 is not supported"),
    ([b"frame", header(v=1.0), PAYLOAD], "version 1.0 is not supported"),
    ([b"frame", header(v=True), PAYLOAD], "version True is not supported"),
    ([b"frame", header(stamp_ns=2**63), PAYLOAD], r"'stamp_ns' must be in \[0, 2\^63\)"),
    ([b"frame", header(stamp_ns=-1), PAYLOAD], r"'stamp_ns' must be in \[0, 2\^63\)"),
    ([b"frame", header(seq=-5), PAYLOAD], r"'seq' must be in"),
    ([b"frame", header(kind="video"), PAYLOAD], "kind must be one of"),
    ([b"frame", header(seq="1"), PAYLOAD], "'seq' must be int"),
    ([b"frame", header(stamp_ns=True), PAYLOAD], "'stamp_ns' must be int"),
    ([b"frame", header(dtype="object"), PAYLOAD], "dtype 'object' is not accepted"),
    ([b"frame", header(dtype="complex64"), PAYLOAD], "not accepted"),
    ([b"frame", header(shape=[1, 1, 1, 1, 1]), PAYLOAD], "dimensions"),
    ([b"frame", header(shape=[0, 4]), PAYLOAD], "dimensions"),
    ([b"frame", header(shape=[MAX_DIM + 1, 1]), PAYLOAD], "dimensions"),
    ([b"frame", header(shape=[2, 3]), PAYLOAD], "payload has 16 bytes"),
    ([b"frame", header(shape=None, dtype=None), PAYLOAD], "payload without shape"),
    ([b"frame", msgpack.packb({"v": 1, "pad": "x" * 70_000}), b""], "exceeds"),
])
def test_malformed_messages_are_refused_with_the_rule_they_break(frames, reason):
    with pytest.raises(ProtocolError, match=reason):
        decode(frames)


def test_payload_size_limit_is_enforced_before_reading():
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decode([b"frame", header(shape=[4096, 4096]), b""], max_payload_bytes=2**20)


def test_no_pickle_anywhere_on_the_wire():
    with pytest.raises(ProtocolError, match="not sent"):
        encode("frame", Message("frame", 0, 0, array=np.array([object()], dtype=object)))


scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=20)
header_values = st.recursive(scalars | st.binary(max_size=8), lambda inner: st.lists(inner, max_size=4)
                             | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=8)
near_valid_headers = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 1, 2, "1"]), "kind": st.sampled_from(["frame", "status", "x", 3]),
     "seq": st.integers(-5, 2**66) | st.text(max_size=3), "stamp_ns": st.integers(-5, 2**66),
     "shape": st.lists(st.integers(-3, 40), max_size=6) | header_values,
     "dtype": st.sampled_from(["float32", "uint8", "object", "<f4", ""]) | header_values},
    optional={"meta": header_values, "frame_id": header_values})


@settings(max_examples=5_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.binary(max_size=64), min_size=0, max_size=4))
def test_fuzzed_raw_frames_only_ever_raise_protocol_errors(frames):
    try:
        decode(frames)
    except ProtocolError:
        pass


@settings(max_examples=5_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(near_valid_headers, st.binary(max_size=256))
def test_fuzzed_headers_only_ever_raise_protocol_errors(header, payload):
    try:
        packed = msgpack.packb(header)
    except (OverflowError, TypeError, ValueError):
        return
    try:
        _, message = decode([b"frame", packed, payload])
    except ProtocolError:
        return
    if message.array is not None:
        assert message.array.nbytes == len(payload)


LIMITS = (-95.5, 158.5)                                        # what the bundled radar model takes
extreme_values = st.sampled_from([1e300, -1e300, 3e38, -3e38, 1e6, -1e6, np.inf, -np.inf, np.nan, -32.0, 45.0])


@settings(max_examples=2_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.lists(extreme_values, min_size=4, max_size=4), st.sampled_from(["float32", "float64"]),
                          st.integers(-2**63, 2**64 - 1), st.sampled_from([b"frame", b"framex", b"frame\x00"])),
                min_size=1, max_size=8))
def test_fuzzed_values_stamps_and_topics_never_corrupt_the_window(messages):
    """Decode → exact topic → buffer, as the node does: any frame either enters the window with
    finite in-range values (NaN = no coverage) or is refused and counted; nothing else is raised."""
    pipeline = Pipeline(lambda frames: None, RingBuffer(3, 1, (2, 2), BufferPolicy(10**9, 2.5, False, LIMITS)), [])
    for values, dtype, stamp, topic in messages:
        with np.errstate(over="ignore"):
            payload = np.array(values, dtype).reshape(2, 2).tobytes()
        wire = [topic, msgpack.packb({"v": 1, "kind": "frame", "seq": 0, "stamp_ns": stamp, "shape": [2, 2],
                                      "dtype": dtype}), payload]
        try:
            decoded_topic, message = decode(wire)
        except ProtocolError:
            continue
        if decoded_topic == "frame":
            pipeline.submit(message.array, message.stamp_ns)
    frames, stamps = pipeline.buffer.window()
    measured = frames[~np.isnan(frames)]
    assert np.isfinite(measured).all() and ((measured >= LIMITS[0]) & (measured <= LIMITS[1])).all()
    assert ((stamps >= 0) & (stamps < 2**63)).all()
