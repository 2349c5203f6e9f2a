"""ROS 2 message layouts the recorders (and later the rclpy node) use, as plain data.

Forecasts are ``sensor_msgs/msg/Image`` with encoding ``32FC1``: the T_out × C forecast planes
stacked vertically (height = T_out·C·H, width = W; plane k = lead k // C + 1, channel k % C),
values in the model's physical units. Importance maps are ``32FC1`` H × W images in [0, 1].
The header copies the newest input frame's stamp and frame_id.
"""
from __future__ import annotations

import numpy as np

IMAGE_MSGDEF = """std_msgs/Header header
uint32 height
uint32 width
string encoding
uint8 is_bigendian
uint32 step
uint8[] data
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
"""
IMAGE_TYPE = "sensor_msgs/msg/Image"


def image_message(array: np.ndarray, stamp_ns: int, frame_id: str) -> dict:
    """A 32FC1 Image dict for an array (…, H, W): leading axes are stacked vertically."""
    planes = np.ascontiguousarray(array, dtype="<f4").reshape(-1, array.shape[-1])
    height, width = planes.shape
    return {"header": {"stamp": {"sec": stamp_ns // 1_000_000_000, "nanosec": stamp_ns % 1_000_000_000},
                       "frame_id": frame_id},
            "height": height, "width": width, "encoding": "32FC1", "is_bigendian": 0, "step": 4 * width,
            "data": planes.tobytes()}
