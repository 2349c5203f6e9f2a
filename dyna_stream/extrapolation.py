"""Classical extrapolation forecasts: persistence and optical-flow advection.

They are baselines in reports and the fallback that pruned tiles of a Dyna-Pruner forecast
take (DESIGN §2). Pure NumPy/OpenCV on physical units, one window at a time.
"""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

FLOW_FRAMES = 3


def persistence(frames: np.ndarray, t_out: int, fill_value: float) -> np.ndarray:
    """Repeat the last frame. frames (T_in, C, H, W) → (t_out, C, H, W), same units."""
    return np.repeat(frames[-1:], t_out, axis=0).astype(np.float32)


def _to_uint8(frames: np.ndarray, fill_value: float) -> list[np.ndarray]:
    """Scale (T, H, W) to 0..255 for the flow solver, ``fill_value`` → 0, a shared scale for all T."""
    top = float(frames.max())
    scale = 255.0 / max(top - fill_value, 1e-6)
    return [np.clip((f - fill_value) * scale, 0, 255).astype(np.uint8) for f in frames]


def motion_field(frames: np.ndarray, fill_value: float) -> np.ndarray:
    """Mean Farneback flow over the last ``FLOW_FRAMES`` frames.

    frames : (T, H, W) physical units, T ≥ 2. Returns (H, W, 2) float32 displacement in
    pixels per frame step, (dx, dy).
    """
    images = _to_uint8(frames[-FLOW_FRAMES:], fill_value)
    flows = [cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3,
                                          poly_n=5, poly_sigma=1.2, flags=0)
             for a, b in zip(images, images[1:])]
    return np.mean(flows, axis=0).astype(np.float32)


def advect(field: np.ndarray, motion: np.ndarray, t_out: int, fill_value: float) -> np.ndarray:
    """Backward semi-Lagrangian advection of ``field`` (H, W) along ``motion`` (H, W, 2).

    Each lead k traces every target pixel one step back along the motion field from the
    position of lead k−1, then samples ``field`` there (bilinear); outside the grid →
    ``fill_value``. Returns (t_out, H, W) float32.
    """
    h, w = field.shape
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = grid_x.copy(), grid_y.copy()
    out = np.empty((t_out, h, w), np.float32)
    for k in range(t_out):
        step = cv2.remap(motion, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        map_x -= step[..., 0]
        map_y -= step[..., 1]
        out[k] = cv2.remap(field.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=float(fill_value))
    return out


def advection(frames: np.ndarray, t_out: int, fill_value: float) -> np.ndarray:
    """Optical-flow extrapolation of the last frame, per channel.

    frames : (T_in, C, H, W) physical units (invalid cells already at ``fill_value``).
    Returns (t_out, C, H, W) float32.
    """
    out = np.empty((t_out,) + frames.shape[1:], np.float32)
    for c in range(frames.shape[1]):
        motion = motion_field(frames[:, c], fill_value)
        out[:, c] = advect(frames[-1, c], motion, t_out, fill_value)
    return out


EXTRAPOLATORS: dict[str, Callable[[np.ndarray, int, float], np.ndarray]] = {
    "persistence": persistence,
    "advection": advection,
}


def get_extrapolator(name: str) -> Callable[[np.ndarray, int, float], np.ndarray]:
    try:
        return EXTRAPOLATORS[name]
    except KeyError:
        raise ValueError(f"unknown extrapolation {name!r}; choose one of {sorted(EXTRAPOLATORS)}") from None
