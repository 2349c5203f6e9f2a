"""sensor_msgs/Image and diagnostic_msgs conversions over the plain layouts of
:mod:`dyna_stream.stream.ros_messages` and :mod:`dyna_stream.stream.health`."""
from __future__ import annotations

import array

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dyna_stream.stream.health import Health
from dyna_stream.stream.ros_messages import InputScaling, decode_image, image_fields, stamp_to_ns


def frame_from_image(msg: Image, scaling: InputScaling) -> tuple[np.ndarray, int, str]:
    """(pixels (H, W) float32 physical, stamp ns, frame_id); DataError for unreadable images."""
    pixels = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, memoryview(msg.data),
                          scaling)
    return pixels, stamp_to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec), msg.header.frame_id


def image_from_array(values: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """A 32FC1 Image of (…, H, W) values, leading axes stacked vertically (see ros_messages)."""
    fields = image_fields(values, stamp_ns, frame_id)
    return Image(header=Header(stamp=Time(**fields["header"]["stamp"]), frame_id=frame_id),
                 height=fields["height"], width=fields["width"],
                 encoding=fields["encoding"], is_bigendian=fields["is_bigendian"], step=fields["step"],
                 data=array.array("B", fields["data"]))


def diagnostics(health: Health, *, name: str, hardware_id: str, stamp) -> DiagnosticArray:
    status = DiagnosticStatus(level=bytes([int(health.level)]), name=name, message=health.message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=key, value=value) for key, value in health.strings().items()])
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])
