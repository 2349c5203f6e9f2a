"""Radar reflectivity arithmetic shared by every radar source: rain rate ↔ dBZ (Marshall–Palmer)
and resampling between pixel sizes (block mean in linear Z, DESIGN §7).

Shapes: (H, W) or (..., H, W) arrays; dBZ float32; validity bool of the same shape.
"""
from __future__ import annotations

import numpy as np

NO_ECHO_DBZ = -32.0            # "no echo": what dBZ holds where there is coverage but no rain
MIN_RAIN_MM_H = 0.1            # rain rates below this are "no echo" (KNMI, MRMS)
MARSHALL_PALMER = (200.0, 1.6)  # Z = a R^b, Z in mm⁶ m⁻³, R in mm/h


def rate_to_dbz(rate_mm_h: np.ndarray) -> np.ndarray:
    """Rain rate R [mm/h] → reflectivity 10 log10(a R^b) [dBZ]; R < 0.1 mm/h → no echo (−32 dBZ)."""
    a, b = MARSHALL_PALMER
    rate = np.asarray(rate_mm_h, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        dbz = 10.0 * np.log10(a * np.maximum(rate, MIN_RAIN_MM_H) ** b)
    return np.where(rate >= MIN_RAIN_MM_H, dbz, NO_ECHO_DBZ).astype(np.float32)


def dbz_to_z(dbz: np.ndarray) -> np.ndarray:
    """dBZ → linear Z (float64); the no-echo level maps to its tiny Z, never to rain."""
    return 10.0 ** (np.asarray(dbz, np.float64) / 10.0)


def z_to_dbz(z: np.ndarray) -> np.ndarray:
    """Linear Z → dBZ (float32), floored at the no-echo level."""
    return np.maximum(10.0 * np.log10(np.maximum(z, 1e-12)), NO_ECHO_DBZ).astype(np.float32)


def downsample(dbz: np.ndarray, valid: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Block mean in linear Z over ``factor`` × ``factor`` pixels, back to dBZ.

    Crops (H, W) to a multiple of ``factor`` from the top-left. A block is no-data when more
    than half of its pixels are; otherwise it is the mean of Z over its valid pixels.

    Parameters
    ----------
    dbz : float32 (..., H, W), dBZ.   valid : bool (..., H, W).
    Returns (dBZ (..., H//f, W//f), valid (..., H//f, W//f)).
    """
    if factor == 1:
        return dbz, valid
    lead = dbz.shape[:-2]
    h, w = (dbz.shape[-2] // factor) * factor, (dbz.shape[-1] // factor) * factor
    blocks = (*lead, h // factor, factor, w // factor, factor)
    axes = (len(lead) + 1, len(lead) + 3)
    z = np.where(valid, dbz_to_z(dbz), 0.0)[..., :h, :w].reshape(blocks)
    n_valid = valid[..., :h, :w].reshape(blocks).sum(axis=axes)
    mean_z = z.sum(axis=axes) / np.maximum(n_valid, 1)
    block_valid = n_valid * 2 >= factor * factor
    return np.where(block_valid, z_to_dbz(mean_z), np.float32(NO_ECHO_DBZ)), block_valid


def upsample(values: np.ndarray, factor: int, size: tuple[int, int]) -> np.ndarray:
    """Block repetition of (..., h, w) by ``factor``, cropped or edge-padded to ``size`` = (H, W):
    each fine pixel takes its block's value (the inverse of :func:`downsample` for a uniform block)."""
    if factor == 1 and values.shape[-2:] == tuple(size):
        return values
    fine = values.repeat(factor, axis=-2).repeat(factor, axis=-1)[..., :size[0], :size[1]]
    pad = [(0, 0)] * (fine.ndim - 2) + [(0, size[0] - fine.shape[-2]), (0, size[1] - fine.shape[-1])]
    return np.pad(fine, pad, mode="edge") if any(p[1] for p in pad[-2:]) else fine


def interpolate_in_time(before: np.ndarray, after: np.ndarray, weight: float) -> np.ndarray:
    """Reflectivity between two frames: (1 − weight)·Z(before) + weight·Z(after), in dBZ.

    Linear in Z, as the block mean is; used to put 2-minute MRMS frames on a 5-minute step."""
    if weight == 0.0:
        return before
    return z_to_dbz((1.0 - weight) * dbz_to_z(before) + weight * dbz_to_z(after))


def check_regular(times: list, step_minutes: float, where: str) -> None:
    """Raise unless ``times`` (datetimes, sorted) are exactly ``step_minutes`` apart."""
    from ..errors import DataError

    steps = {(b - a).total_seconds() / 60 for a, b in zip(times, times[1:])}
    if steps - {float(step_minutes)}:
        raise DataError(f"{where}: frames are not every {step_minutes:g} min "
                        f"(steps seen: {sorted(steps)} min); one event must be gap-free")
