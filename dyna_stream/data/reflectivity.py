"""Radar reflectivity arithmetic shared by every radar source: rain rate ↔ dBZ (Marshall–Palmer)
and resampling between pixel sizes (block mean in linear Z, DESIGN §7), plus the checks every
source's event folder gets (file listing, regular time step).

Shapes: (H, W) or (..., H, W) arrays; dBZ float32; validity bool of the same shape.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import DataError
from .regrid import GridAdapter, block_mean
from .series import Series

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


def amount_to_dbz(amount_mm: np.ndarray, minutes: float) -> np.ndarray:
    """Precipitation amount [mm] accumulated over ``minutes`` → reflectivity [dBZ] of its mean rate
    (:func:`rate_to_dbz`)."""
    return rate_to_dbz(np.asarray(amount_mm, np.float64) * (60.0 / minutes))


TO_DBZ: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "dBZ": lambda dbz: np.asarray(dbz, np.float32),
    "mm/h": rate_to_dbz,           # rain rate, Marshall–Palmer (most services' rate products: MRMS, OPERA RATE)
}


def to_dbz(values: np.ndarray, valid: np.ndarray, units: str) -> np.ndarray:
    """``values`` in ``units`` (a key of :data:`TO_DBZ`) → dBZ on the ``valid`` cells, no echo elsewhere."""
    try:
        convert = TO_DBZ[units]
    except KeyError:
        raise DataError(f"input units {units!r} cannot be turned into reflectivity; choose one of "
                        f"{sorted(TO_DBZ)}") from None
    return np.where(valid, convert(np.where(valid, values, 0.0)), np.float32(NO_ECHO_DBZ)).astype(np.float32)


def dbz_to_z(dbz: np.ndarray) -> np.ndarray:
    """dBZ → linear Z (float64); the no-echo level maps to its tiny Z, never to rain."""
    return 10.0 ** (np.asarray(dbz, np.float64) / 10.0)


def z_to_dbz(z: np.ndarray) -> np.ndarray:
    """Linear Z → dBZ (float32), floored at the no-echo level."""
    return np.maximum(10.0 * np.log10(np.maximum(z, 1e-12)), NO_ECHO_DBZ).astype(np.float32)


def downsample(dbz: np.ndarray, valid: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Block mean in linear Z over ``factor`` × ``factor`` pixels, back to dBZ (see
    :func:`~dyna_stream.data.regrid.block_mean`: top-left crop, a block is no-data when more than
    half of its pixels are). dbz float32 (..., H, W), valid bool (..., H, W) → (..., H//f, W//f) each."""
    return block_mean(dbz, valid, factor, fill_value=NO_ECHO_DBZ, to_linear=dbz_to_z, from_linear=z_to_dbz)


def reflectivity_adapter(factor: int) -> GridAdapter:
    """Input grid ↔ model grid for dBZ: block means in linear Z."""
    return GridAdapter(factor, NO_ECHO_DBZ, dbz_to_z, z_to_dbz)


def interpolate_in_time(before: np.ndarray, after: np.ndarray, weight: float) -> np.ndarray:
    """Reflectivity between two frames: (1 − weight)·Z(before) + weight·Z(after), in dBZ.

    Linear in Z, as the block mean is; used to put 2-minute MRMS frames on a 5-minute step."""
    if weight == 0.0:
        return before
    return z_to_dbz((1.0 - weight) * dbz_to_z(before) + weight * dbz_to_z(after))


def check_regular(times: list, step_minutes: float, where: str) -> None:
    """Raise unless ``times`` (datetimes, sorted) are exactly ``step_minutes`` apart."""
    steps = {(b - a).total_seconds() / 60 for a, b in zip(times, times[1:])}
    if steps - {float(step_minutes)}:
        raise DataError(f"{where}: frames are not every {step_minutes:g} min "
                        f"(steps seen: {sorted(steps)} min); one event must be gap-free")


def regular_step(times: list[datetime], where: str) -> float | None:
    """The step between ``times`` (datetimes, sorted) in minutes, None for a single frame; raises
    unless every step is the first one."""
    if len(times) < 2:
        return None
    step = (times[1] - times[0]).total_seconds() / 60
    check_regular(times, step, where)
    return step


def stack_event(frames: list[tuple], name: str, pixel_km: float, where: str) -> Series:
    """Decoded frames ``(dBZ (H, W), valid (H, W), time, ...)`` on one grid, sorted by time → a dBZ
    series (T, 1, H, W) at their regular step."""
    times = [frame[2] for frame in frames]
    step = regular_step(times, where)
    values, valid = (np.stack([frame[k] for frame in frames])[:, None] for k in (0, 1))
    return Series(values, valid, np.array([np.datetime64(t, "m") for t in times]), "dBZ", NO_ECHO_DBZ,
                  name, pixel_km, step)


def stack_files(files: list[Path], read_frame: Callable[[Path], tuple], name: str, where: str) -> Series:
    """``files`` decoded by ``read_frame`` (→ ``(dBZ (H, W), valid (H, W), time, pixel km, *kind)``)
    as one dBZ series in time order; the frames must share one grid, pixel size and kind (a product)."""
    decoded = sorted((read_frame(path) for path in files), key=lambda frame: frame[2])
    kinds = sorted({(frame[0].shape, *frame[3:]) for frame in decoded})
    if len(kinds) > 1:
        raise DataError(f"{where}: frames of different grids, pixel sizes or products {kinds}; one event is one "
                        "product on one grid")
    return stack_event(decoded, name, decoded[0][3], where)


def event_files(folder: str | Path, pattern: re.Pattern, source: str, naming: str, root_folder: str) -> list[Path]:
    """The files of one radar event whose names match ``pattern``, sorted by name (= by time);
    raises DataError naming ``source``'s file ``naming`` when the folder is missing or has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"radar folder not found: {folder}; point data.root at the folder holding {root_folder}/")
    files = sorted(p for p in folder.iterdir() if pattern.match(p.name))
    if not files:
        raise DataError(f"{folder}: no {source} files ({naming})")
    return files
