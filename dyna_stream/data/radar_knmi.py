"""KNMI radar composites (HDF5, the RAD_NL25 products) → reflectivity in dBZ.

Format (KNMI open data, CC BY 4.0, "Royal Netherlands Meteorological Institute (KNMI)"): the KNMI
HDF5 layout (not ODIM). ``image1/image_data`` (765 × 700, 1 km pixels, upper-left origin) holds
digital numbers PV; ``image1/calibration`` gives ``GEO = a*PV + b`` and the no-data values (outside
the radar range); ``image1``'s ``image_geo_parameter`` what GEO is; ``overview/product_datetime_end``
(and ``_start``) the time. Two quantities are read (:data:`QUANTITIES`):
- an accumulation in mm (RAD_NL25_RAP_5min, RAD_NL25_RAC_…): rain rate R = accumulation over the
  product's start–end minutes → dBZ by Marshall–Palmer (KNMI's own Z–R relation);
- reflectivity in dBZ (RAD_NL25_PCP_NA, ``GEO=0.5*PV+-32``), as it is.
"""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import DataError
from .gridded_files import attribute_text
from .reflectivity import NO_ECHO_DBZ, amount_to_dbz, downsample, event_files, stack_event
from .series import Series

STEP_MINUTES = 5
PIXEL_KM = 1.0
IMAGE = "image1/image_data"
FILE_PATTERN = re.compile(r"^RAD_NL25_\w+?_(\d{12})\.h5$")
NAMING = "RAD_NL25_<product>_YYYYMMDDHHMM.h5"
_CALIBRATION = re.compile(r"GEO\s*=\s*([-+]?[0-9.eE]+)\s*\*\s*PV\s*(?:([-+]{1,2})\s*([0-9.eE]+))?\s*$")
_TIME = "%d-%b-%Y;%H:%M:%S"


def _reflectivity(dbz: np.ndarray, minutes: float) -> np.ndarray:
    return np.maximum(dbz, NO_ECHO_DBZ).astype(np.float32)


QUANTITIES = {
    # the unit image_geo_parameter ends with → GEO (H, W) and the product's minutes → dBZ
    "[MM]": amount_to_dbz,
    "[DBZ]": _reflectivity,
}


def _calibration(formula: str, where: str) -> tuple[float, float]:
    """``GEO=a*PV+b`` (b may be written ``+-32``) → (a, b)."""
    match = _CALIBRATION.search(formula.strip())
    if match is None:
        raise DataError(f"{where}: calibration {formula!r} is not GEO=a*PV+b")
    scale, signs, offset = match.groups()
    sign = -1.0 if (signs or "+").count("-") % 2 else 1.0
    return float(scale), sign * float(offset or 0.0)


def _time(text: str, where: str) -> datetime:
    try:
        return datetime.strptime(text.split(".")[0], _TIME)
    except ValueError:
        raise DataError(f"{where}: product time {text!r} is not DD-MON-YYYY;HH:MM:SS") from None


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
            overview = handle["overview"].attrs
            end = attribute_text(overview["product_datetime_end"])
            start = attribute_text(overview["product_datetime_start"]) if "product_datetime_start" in overview else None
            quantity = attribute_text(handle["image1"].attrs.get("image_geo_parameter", b"?"))
    except (OSError, KeyError) as exc:
        raise DataError(f"{path.name}: not a KNMI radar HDF5 file ({exc}); it needs {IMAGE}, "
                        "image1/calibration and overview/product_datetime_end") from None
    convert = next((to_dbz for unit, to_dbz in QUANTITIES.items() if quantity.upper().endswith(unit)), None)
    if convert is None:
        raise DataError(f"{path.name}: holds {quantity}; read: an accumulation in mm or reflectivity in dBZ "
                        f"({', '.join(QUANTITIES)})")
    scale, offset = _calibration(formula, path.name)
    time = _time(end, path.name)
    minutes = (time - _time(start, path.name)).total_seconds() / 60 if start else STEP_MINUTES
    if minutes <= 0:
        raise DataError(f"{path.name}: the product ends ({end}) before it starts ({start})")
    valid = ~np.isin(raw, list(missing))
    dbz = np.where(valid, convert(raw.astype(np.float64) * scale + offset, minutes), np.float32(NO_ECHO_DBZ))
    return dbz.astype(np.float32), valid, time


def list_frames(folder: str | Path) -> list[Path]:
    """The KNMI files of one event, in time order; raises if the folder has none."""
    return event_files(folder, FILE_PATTERN, "KNMI radar", NAMING, "radar_knmi")


def load_event(folder: str | Path, *, downsample_factor: int = 4) -> Series:
    """All frames of one KNMI event as a dBZ series (T, 1, H/f, W/f), times from the files."""
    decoded = [read_frame(path) for path in list_frames(folder)]
    decoded.sort(key=lambda frame: frame[2])
    grids = sorted({frame[0].shape for frame in decoded})
    if len(grids) > 1:
        raise DataError(f"{folder}: frames on different grids {grids}; one event must share one grid")
    frames = [(*downsample(dbz, valid, downsample_factor), time) for dbz, valid, time in decoded]
    return stack_event(frames, f"KNMI radar {Path(folder).name}", PIXEL_KM * downsample_factor, str(folder))
