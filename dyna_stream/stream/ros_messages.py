"""ROS 2 ``sensor_msgs/Image`` layouts as plain data, used by the recorders and the rclpy node
(this module imports no ROS package).

Inputs: single-channel images in ``mono8``/``8UC1``, ``mono16``/``16UC1`` or ``32FC1``, any
row ``step`` ≥ width · bytes per pixel, either byte order. The node maps raw values to the
model's physical units with ``physical = raw · scale + offset`` (for FMI radar mono8 frames:
scale 0.5, offset −32 gives dBZ).

Outputs: forecasts are ``32FC1`` with the T_out × C forecast planes stacked vertically
(height = T_out·C·H, width = W; plane k = lead k // C + 1, channel k % C), values in the
model's physical units. Importance maps are ``32FC1`` H × W images in [0, 1]. The header copies
the newest input frame's stamp and frame_id.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError

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
OUTPUT_ENCODING = "32FC1"

# encoding → numpy scalar type of one pixel (single channel only: the models take one channel)
INPUT_ENCODINGS: dict[str, str] = {"mono8": "u1", "8UC1": "u1", "mono16": "u2", "16UC1": "u2", "32FC1": "f4"}


@dataclass(frozen=True)
class InputScaling:
    """physical = raw · scale + offset (raw: the pixel value as sent)."""

    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.scale) and np.isfinite(self.offset)) or self.scale == 0:
            raise ValueError(f"input scaling needs a finite non-zero scale and finite offset, got {self}")


def stamp_to_ns(sec: int, nanosec: int) -> int:
    return int(sec) * 1_000_000_000 + int(nanosec)


def decode_image(encoding: str, height: int, width: int, step: int, is_bigendian: int, data: bytes | memoryview,
                 scaling: InputScaling = InputScaling()) -> np.ndarray:
    """A received Image's pixels as float32 physical values (H, W); :class:`DataError` says what
    is wrong with a message that cannot be read (unsupported encoding, sizes that do not add up)."""
    kind = INPUT_ENCODINGS.get(encoding)
    if kind is None:
        raise DataError(f"unsupported image encoding {encoding!r}; send one of {sorted(INPUT_ENCODINGS)}")
    dtype = np.dtype(kind).newbyteorder(">" if is_bigendian else "<")
    if height <= 0 or width <= 0:
        raise DataError(f"empty image ({height}×{width})")
    row_bytes = width * dtype.itemsize
    if step < row_bytes:
        raise DataError(f"step {step} is shorter than a row of {width} {encoding} pixels ({row_bytes} bytes)")
    if len(data) != step * height:
        raise DataError(f"image data has {len(data)} bytes, header says {height} rows × step {step} = "
                        f"{step * height}")
    rows = np.frombuffer(data, dtype=np.uint8).reshape(height, step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype).astype(np.float32)
    if scaling.scale != 1.0 or scaling.offset != 0.0:
        pixels = pixels * np.float32(scaling.scale) + np.float32(scaling.offset)
    return pixels


def image_fields(array: np.ndarray, stamp_ns: int, frame_id: str) -> dict:
    """A 32FC1 Image as a dict for an array (…, H, W): leading axes are stacked vertically."""
    planes = np.ascontiguousarray(array, dtype="<f4").reshape(-1, array.shape[-1])
    height, width = planes.shape
    return {"header": {"stamp": {"sec": stamp_ns // 1_000_000_000, "nanosec": stamp_ns % 1_000_000_000},
                       "frame_id": frame_id},
            "height": height, "width": width, "encoding": OUTPUT_ENCODING, "is_bigendian": 0, "step": 4 * width,
            "data": planes.tobytes()}


def unstack_forecast(data: bytes, height: int, width: int, leads: int, channels: int = 1) -> np.ndarray:
    """A /forecast image's payload back to (T_out, C, H, W) float32."""
    planes = np.frombuffer(data, dtype="<f4").reshape(height, width)
    if height % (leads * channels):
        raise DataError(f"forecast image height {height} is not a multiple of {leads} leads × {channels} channels")
    return planes.reshape(leads, channels, height // (leads * channels), width)
