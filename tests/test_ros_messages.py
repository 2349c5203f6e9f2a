"""Image layouts shared by the MCAP recorder and the ROS 2 node (no ROS import needed)."""
import numpy as np
import pytest

from dyna_stream.errors import DataError
from dyna_stream.stream.ros_messages import InputScaling, decode_image, image_fields, unstack_forecast


def padded(rows: np.ndarray, pad: int) -> tuple[bytes, int]:
    raw = rows.view(np.uint8).reshape(rows.shape[0], -1)
    step = raw.shape[1] + pad
    return np.pad(raw, ((0, 0), (0, pad)), constant_values=7).tobytes(), step


@pytest.mark.parametrize(("encoding", "dtype"), [("mono8", "u1"), ("8UC1", "u1"), ("mono16", "<u2"), ("16UC1", ">u2"),
                                                 ("32FC1", "<f4"), ("32FC1", ">f4")])
@pytest.mark.parametrize("pad", [0, 3])
def test_every_encoding_and_byte_order_decodes_with_row_padding(encoding, dtype, pad):
    rng = np.random.default_rng(0)
    values = (rng.random((5, 7)) * 200).astype(dtype)
    data, step = padded(values, pad)
    decoded = decode_image(encoding, 5, 7, step, int(np.dtype(dtype).byteorder == ">"), data)
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, values.astype(np.float32))


def test_scaling_maps_raw_values_to_physical_units():
    dn = np.array([[0, 64, 255]], np.uint8)
    dbz = decode_image("mono8", 1, 3, 3, 0, dn.tobytes(), InputScaling(0.5, -32.0))
    np.testing.assert_array_equal(dbz, [[-32.0, 0.0, 95.5]])
    with pytest.raises(ValueError, match="non-zero scale"):
        InputScaling(0.0, 1.0)


@pytest.mark.parametrize(("args", "message"), [
    (("rgb8", 2, 2, 6, 0, bytes(12)), "unsupported image encoding 'rgb8'"),
    (("mono16", 2, 2, 3, 0, bytes(6)), "step 3 is shorter than a row"),
    (("mono8", 2, 2, 2, 0, bytes(5)), "5 bytes, header says 2 rows"),
    (("32FC1", 0, 2, 8, 0, b""), "empty image"),
])
def test_unreadable_images_say_what_is_wrong(args, message):
    with pytest.raises(DataError, match=message):
        decode_image(*args)


def test_forecast_layout_stacks_leads_and_channels_vertically_and_round_trips():
    forecast = np.arange(3 * 2 * 4 * 5, dtype=np.float32).reshape(3, 2, 4, 5)
    fields = image_fields(forecast, stamp_ns=1_700_000_000_123_456_789, frame_id="radar")
    assert (fields["height"], fields["width"], fields["step"], fields["encoding"]) == (24, 5, 20, "32FC1")
    assert fields["header"] == {"stamp": {"sec": 1_700_000_000, "nanosec": 123_456_789}, "frame_id": "radar"}
    plane = np.frombuffer(fields["data"], "<f4").reshape(24, 5)
    np.testing.assert_array_equal(plane[4 * 3:4 * 4], forecast[1, 1])      # plane k = lead k // C, channel k % C
    np.testing.assert_array_equal(unstack_forecast(fields["data"], 24, 5, leads=3, channels=2), forecast)
    with pytest.raises(DataError, match="not a multiple"):
        unstack_forecast(fields["data"], 24, 5, leads=5)
