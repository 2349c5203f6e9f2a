"""MeteoSwiss radar composites in their 8-bit GIF archive format → reflectivity in dBZ.

Format (as the MeteoSwiss archive and the pysteps-data collection hold them): one GIF a frame on
the Swiss CCS4 grid (640 × 710 pixels of 1 km; the file carries no georeferencing, so the pixel
size is the grid's), named ``<product><yyjjjHHMM><flags>[_<minutes>].<version>.gif``: the product,
the UTC time as two-digit year, day of the year, hour and minute, and for accumulations their length
in minutes (``AQC161932100V_00005.801.gif``: Acquire, 2016-07-11 21:00, five minutes).

The precipitation products read here code MeteoSwiss' logarithmic scale in the digital number DN:
the amount over the accumulation is (10^((DN − 71.5) / 20) / 316)^(1 / 1.5) mm; DN 0–1 and 251–254
are no precipitation, DN 255 no data (outside radar coverage). The amount becomes a rain rate over
the accumulation, and the rate reflectivity (Marshall–Palmer, as for every rate source here).
Products whose DN indexes a colour table instead (RZC, AZC) are refused in one line: their table is
not in the file.
"""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from .reflectivity import NO_ECHO_DBZ, amount_to_dbz, event_files, stack_files
from .series import Series

__all__ = ["FILE_PATTERN", "holds", "read_frame", "dn_to_dbz", "load_event"]

FILE_PATTERN = re.compile(r"^(?P<product>[A-Z]{3})(?P<stamp>\d{9})[0-9A-Z]{1,2}(?:_(?P<minutes>\d{5}))?"
                          r"\.\d{3}\.gif$", re.IGNORECASE)
NAMING = "<product><yyjjjHHMM><flags>[_<minutes>].<version>.gif, e.g. AQC161932100V_00005.801.gif"
PIXEL_KM = 1.0                 # the CCS4 grid's pixel size
NODATA_DN = 255
ACCUMULATION_MINUTES = {"AQC": 5.0, "CPC": 60.0}     # logarithmic-scale products → accumulation when unnamed
COLOUR_TABLE_PRODUCTS = ("RZC", "AZC")


def _amounts_mm() -> np.ndarray:
    """DN 0..255 → the amount it codes [mm over the accumulation]; NaN for no data."""
    dn = np.arange(256, dtype=np.float64)
    amounts = (10.0 ** ((dn - 71.5) / 20.0) / 316.0) ** (1.0 / 1.5)
    amounts[(dn < 2) | ((dn > 250) & (dn < NODATA_DN))] = 0.0
    amounts[NODATA_DN] = np.nan
    return amounts


AMOUNT_MM = _amounts_mm()


def holds(files: list[Path]) -> bool:
    """Whether a folder's ``files`` are MeteoSwiss GIF composites (told apart by their names)."""
    return any(FILE_PATTERN.match(path.name) for path in files)


def dn_to_dbz(dn: np.ndarray, accumulation_minutes: float) -> tuple[np.ndarray, np.ndarray]:
    """DN (uint8, any shape) of a product accumulated over ``accumulation_minutes`` → (dBZ float32,
    valid bool) of the same shape."""
    valid = dn != NODATA_DN
    dbz = amount_to_dbz(np.nan_to_num(AMOUNT_MM[dn]), accumulation_minutes)
    return np.where(valid, dbz, np.float32(NO_ECHO_DBZ)), valid


def _name_fields(path: Path) -> tuple[str, datetime, float]:
    match = FILE_PATTERN.match(path.name)
    if not match:
        raise DataError(f"{path.name}: not a MeteoSwiss composite name ({NAMING})")
    product = match["product"].upper()
    if product in COLOUR_TABLE_PRODUCTS:
        raise DataError(f"{path.name}: {product} codes its values through a colour table the file does not hold; "
                        f"read here: {', '.join(ACCUMULATION_MINUTES)} (or give the frames as ODIM_H5 or an array)")
    if product not in ACCUMULATION_MINUTES:
        raise DataError(f"{path.name}: MeteoSwiss product {product} is not read here; read: "
                        f"{', '.join(ACCUMULATION_MINUTES)}")
    minutes = float(match["minutes"]) if match["minutes"] else ACCUMULATION_MINUTES[product]
    if minutes <= 0:
        raise DataError(f"{path.name}: an accumulation of {minutes:g} min")
    try:
        time = datetime.strptime(match["stamp"], "%y%j%H%M")
    except ValueError:
        raise DataError(f"{path.name}: {match['stamp']} is not a time yyjjjHHMM ({NAMING})") from None
    return product, time, minutes


def read_frame(path: str | Path) -> tuple[np.ndarray, np.ndarray, datetime, float, str]:
    """One composite → (dBZ float32 (H, W), valid bool (H, W), its time, pixel km, its product)."""
    path = Path(path)
    product, time, minutes = _name_fields(path)
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise DataError(f"{path}: a {image.mode} image; a MeteoSwiss composite holds 8-bit digital numbers")
            dn = np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"radar file not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: not a readable GIF ({exc}); re-download it") from None
    return (*dn_to_dbz(dn, minutes), time, PIXEL_KM, product)


def load_event(folder: str | Path) -> Series:
    """Every MeteoSwiss composite in ``folder`` as a dBZ series (T, 1, H, W) at 1 km, in time
    order; the frames must be one product on one grid at a regular step."""
    folder = Path(folder)
    files = event_files(folder, FILE_PATTERN, "MeteoSwiss composite", NAMING, folder.name)
    return stack_files(files, read_frame, f"MeteoSwiss {folder.name}", str(folder))
