"""KNMI radar precipitation composites (HDF5, product RAD_NL25_RAP_5min) → reflectivity in dBZ.

Format (KNMI open data, CC BY 4.0, "Royal Netherlands Meteorological Institute (KNMI)"): the KNMI
HDF5 layout (not ODIM). ``image1/image_data`` uint16 (765 × 700, 1 km pixels, upper-left origin)
holds the 5-minute accumulation; ``image1/calibration`` gives ``GEO = a*PV + b`` in mm and the
no-data value (65535, outside the radar range); ``overview/product_datetime_end`` the time.
Rain rate R = accumulation × 60 / 5 mm/h → dBZ by Marshall–Palmer (KNMI's own Z–R relation).
"""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import DataError
from .gridded_files import attribute_text
from .reflectivity import NO_ECHO_DBZ, check_regular, downsample, event_files, rate_to_dbz
from .series import Series

STEP_MINUTES = 5
PIXEL_KM = 1.0
IMAGE = "image1/image_data"
FILE_PATTERN = re.compile(r"^RAD_NL25_RA[PC]_5min_(\d{12})\.h5$")
_CALIBRATION = re.compile(r"GEO\s*=\s*([-+0-9.eE]+)\s*\*\s*PV\s*([-+]\s*[0-9.eE]+)?")


def read_frame(path: str | Path) -> tuple[np.ndarray, np.ndarray, datetime]:
    """One KNMI file → (dBZ float32 (765, 700), valid bool (765, 700), end time UTC)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"radar file not found: {path}")
    try:
        with h5py.File(path, "r") as handle:
            raw = handle[IMAGE][()]
            calibration = handle["image1/calibration"].attrs
            formula = attribute_text(calibration["calibration_formulas"])
            missing = {int(np.ravel(calibration[key])[0]) for key in
                       ("calibration_missing_data", "calibration_out_of_image") if key in calibration}
            end = attribute_text(handle["overview"].attrs["product_datetime_end"])
            quantity = attribute_text(handle["image1"].attrs.get("image_geo_parameter", b"?"))
    except (OSError, KeyError) as exc:
        raise DataError(f"{path.name}: not a KNMI radar HDF5 file ({exc}); it needs {IMAGE}, "
                        "image1/calibration and overview/product_datetime_end") from None
    match = _CALIBRATION.search(formula)
    if match is None or "[MM]" not in quantity.upper():
        raise DataError(f"{path.name}: holds {quantity} calibrated as {formula!r}; expected an accumulation "
                        "in mm (GEO=a*PV+b)")
    scale, offset = float(match.group(1)), float((match.group(2) or "0").replace(" ", ""))
    valid = ~np.isin(raw, list(missing))
    rate_mm_h = (raw.astype(np.float64) * scale + offset) * (60.0 / STEP_MINUTES)
    dbz = np.where(valid, rate_to_dbz(rate_mm_h), np.float32(NO_ECHO_DBZ))
    try:
        time = datetime.strptime(end.split(".")[0], "%d-%b-%Y;%H:%M:%S")
    except ValueError:
        raise DataError(f"{path.name}: product_datetime_end {end!r} is not DD-MON-YYYY;HH:MM:SS") from None
    return dbz.astype(np.float32), valid, time


def list_frames(folder: str | Path) -> list[Path]:
    """The KNMI files of one event, in time order; raises if the folder has none."""
    return event_files(folder, FILE_PATTERN, "KNMI radar", "RAD_NL25_RAP_5min_YYYYMMDDHHMM.h5", "radar_knmi")


def load_event(folder: str | Path, *, downsample_factor: int = 4) -> Series:
    """All frames of one KNMI event as a dBZ series (T, 1, H/f, W/f), times from the files."""
    decoded = [read_frame(path) for path in list_frames(folder)]
    decoded.sort(key=lambda frame: frame[2])
    check_regular([frame[2] for frame in decoded], STEP_MINUTES, str(folder))
    frames, masks = zip(*(downsample(dbz, valid, downsample_factor) for dbz, valid, _ in decoded))
    times = np.array([np.datetime64(frame[2], "m") for frame in decoded])
    return Series(np.stack(frames)[:, None], np.stack(masks)[:, None], times, "dBZ", NO_ECHO_DBZ,
                  f"KNMI radar {Path(folder).name}", PIXEL_KM * downsample_factor, STEP_MINUTES)
