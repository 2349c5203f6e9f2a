"""NOAA MRMS precipitation rate (GRIB2, continental US) → reflectivity in dBZ on a 5-minute step.

Format (US government work, courtesy "NOAA/NSSL MRMS"): one GRIB2 message per file, product
``PrecipRate`` (discipline 209, category 6, number 1) in mm/h on a regular 0.01° lat/lon grid of
3500 × 7000 cells, north-to-south rows; −3 = no coverage. Files come every 2 minutes.

Decoding uses ecCodes (``pip install eccodes``: the wheel bundles the library; the optional
``grib`` extra), the field's reference decoder, rather than a hand-written GRIB2/PNG unpacker.
The 2-minute frames are put on the model's 5-minute step by linear interpolation in Z between
the two nearest frames (odd multiples of 5 min fall midway between two files), a documented
approximation: a feature advected for 1 min is blurred, never shifted.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from ..atomic import write_with
from ..errors import DataError
from .reflectivity import NO_ECHO_DBZ, check_regular, dbz_to_z, downsample, event_files, rate_to_dbz, z_to_dbz
from .regrid import resample_in_time
from .series import Series

NATIVE_STEP_MINUTES = 2
PIXEL_KM = 1.0                  # 0.01°: 1.11 km north-south, 0.64–1.04 km east-west over the US
NO_COVERAGE = -3.0
FILE_PATTERN = re.compile(r"^PrecipRate_00\.00_(\d{8}-\d{6})\.grib2(\.gz)?$")
_PRODUCT = (209, 6, 1)          # discipline, parameterCategory, parameterNumber of PrecipRate


@dataclass(frozen=True)
class Box:
    """A crop of the native grid: ``top``, ``left``, ``height``, ``width`` in pixels."""

    top: int
    left: int
    height: int
    width: int

    def cut(self, array: np.ndarray) -> np.ndarray:
        return array[..., self.top:self.top + self.height, self.left:self.left + self.width]


def _eccodes():
    try:
        import eccodes
    except ImportError:
        raise DataError("reading MRMS GRIB2 files needs ecCodes: pip install 'dyna_stream[grib]' "
                        "(or pip install eccodes)") from None
    return eccodes


def read_frame(path: str | Path, box: Box | None = None) -> tuple[np.ndarray, np.ndarray, datetime]:
    """One MRMS file → (dBZ float32 (H, W), valid bool (H, W), valid time UTC), cropped to ``box``."""
    eccodes = _eccodes()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"radar file not found: {path}")
    try:
        with path.open("rb") as handle:
            message = eccodes.codes_grib_new_from_file(handle)
            if message is None:
                raise DataError(f"{path.name}: holds no GRIB message")
            try:
                keys = {key: eccodes.codes_get(message, key) for key in
                        ("discipline", "parameterCategory", "parameterNumber", "Ni", "Nj",
                         "year", "month", "day", "hour", "minute", "second")}
                rate = eccodes.codes_get_values(message)
            finally:
                eccodes.codes_release(message)
    except DataError:
        raise
    except Exception as exc:  # ecCodes raises its own hierarchy for truncated or foreign files
        raise DataError(f"{path.name}: not a readable GRIB2 file ({type(exc).__name__}: {exc})") from None
    product = (keys["discipline"], keys["parameterCategory"], keys["parameterNumber"])
    if product != _PRODUCT:
        raise DataError(f"{path.name}: GRIB product {product} is not MRMS PrecipRate {_PRODUCT} (mm/h)")
    rate = rate.reshape(keys["Nj"], keys["Ni"])
    if box is not None:
        rate = box.cut(rate)
    valid = rate > NO_COVERAGE + 0.5
    dbz = np.where(valid, rate_to_dbz(np.where(valid, rate, 0.0)), np.float32(NO_ECHO_DBZ))
    time = datetime(*(int(keys[k]) for k in ("year", "month", "day", "hour", "minute", "second")))
    return dbz.astype(np.float32), valid, time


def list_frames(folder: str | Path) -> list[Path]:
    """The MRMS files of one event, in time order; raises if the folder has none."""
    return event_files(folder, FILE_PATTERN, "MRMS", "PrecipRate_00.00_YYYYMMDD-HHMMSS.grib2", "radar_mrms")


def load_event(folder: str | Path, *, downsample_factor: int = 4, step_minutes: float = 5,
               box: Box | None = None, files: list[Path] | None = None) -> Series:
    """An MRMS event (default: every file of ``folder``) as a dBZ series (T, 1, H/f, W/f) on a
    ``step_minutes`` step, cropped to ``box`` (native pixels) before anything else is computed."""
    files = files if files is not None else list_frames(folder)
    decoded = [read_frame(path, box) for path in files]
    decoded.sort(key=lambda frame: frame[2])
    times = [frame[2] for frame in decoded]
    check_regular(times, NATIVE_STEP_MINUTES, str(folder))
    if (times[-1] - times[0]).total_seconds() / 60 < step_minutes:
        raise DataError(f"{folder}: {len(times)} frames span less than one {step_minutes:g}-min step")
    coarse = [downsample(dbz, valid, downsample_factor) for dbz, valid, _ in decoded]
    frames, valid, positions = resample_in_time(np.stack([c[0] for c in coarse]), np.stack([c[1] for c in coarse]),
                                                NATIVE_STEP_MINUTES, step_minutes, anchor="first",
                                                to_linear=dbz_to_z, from_linear=z_to_dbz)
    times = [times[0] + timedelta(minutes=position * NATIVE_STEP_MINUTES) for position in positions]
    return Series(frames[:, None], valid[:, None], np.array([np.datetime64(t, "m") for t in times]), "dBZ",
                  NO_ECHO_DBZ, f"MRMS radar {Path(folder).name}", PIXEL_KM * downsample_factor, step_minutes)


def cache_dir() -> Path:
    """Where decoded events are kept between runs: ``$DYNA_STREAM_CACHE`` or ~/.cache/dyna_stream."""
    return Path(os.environ.get("DYNA_STREAM_CACHE", Path.home() / ".cache" / "dyna_stream"))


def load_event_cached(folder: str | Path, *, downsample_factor: int = 4, step_minutes: float = 5) -> Series:
    """:func:`load_event` of the whole grid, kept as an .npz in :func:`cache_dir` keyed by the files'
    names, sizes and times (decoding 24.5 M cells a frame takes ~2 s; the cache loads in ~1 s)."""
    files = list_frames(folder)
    stamp = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    key = hashlib.sha256(f"{stamp}|{downsample_factor}|{step_minutes}".encode()).hexdigest()[:16]
    path = cache_dir() / f"mrms_{Path(folder).name}_{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            return Series(cached["values"], cached["valid"], cached["times"], "dBZ", NO_ECHO_DBZ,
                          f"MRMS radar {Path(folder).name}", PIXEL_KM * downsample_factor, step_minutes)
    series = load_event(folder, downsample_factor=downsample_factor, step_minutes=step_minutes, files=files)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_with(path, lambda tmp: np.savez(tmp, values=series.values, valid=series.valid, times=series.times))
    return series
