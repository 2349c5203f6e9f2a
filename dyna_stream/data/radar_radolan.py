"""DWD RADOLAN composites (the German weather service's binary format) → reflectivity in dBZ.

Format (DWD's RADOLAN/RADVOR composite format description; the files DWD's open-data server
serves, plain, gzip or bzip2): an ASCII header ending in ETX (0x03), then the grid row by row
from the south (lower-left origin; flipped here to north up, as every reader returns frames).

Header: product (2 letters), the UTC time as ddhhmm, the composite's WMO number (10000), the
month and year as MMYY, then tokens: ``BY`` the file's length in bytes, ``PR`` the precision
(``E-02``: values in 0.01), ``INT`` the accumulation in minutes (``U1``: in days), ``GP`` the
grid as rows x columns, ``VV`` a forecast's lead in minutes (0 or absent: an observation),
``MS``/``ST`` the radar sites between ``<`` and ``>``.

Products read (:data:`PRODUCTS`):
- precipitation amounts (RY, YW, RV: 5 minutes; RW: 1 hour; SF: a day), 2 bytes a cell little
  endian: bits 0–11 the value × precision [mm over INT], bit 12 interpolated (kept), bit 13 no data,
  bit 15 clutter (kept, as DWD's own readers do); an amount becomes a rate over INT, the rate
  reflectivity (Marshall–Palmer, as for every rate source here);
- reflectivity (RX, WX), 1 byte a cell in RVP6 units: dBZ = value / 2 − 32.5; 250 no data, 249
  clutter (no echo).
The pixel size comes from the grid (:data:`GRID_PIXEL_KM`: DWD's national 1 km grids); another
grid is refused in one line, as are forecasts (VV > 0) and other products.
"""
from __future__ import annotations

import bz2
import gzip
import re
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import DataError
from .reflectivity import NO_ECHO_DBZ, amount_to_dbz, stack_files
from .series import Series

__all__ = ["holds", "is_radolan", "read_frame", "load_event", "PRODUCTS"]

ETX = b"\x03"
MAX_HEADER_BYTES = 4096
HEAD = re.compile(rb"^(?P<product>[A-Z]{2})(?P<ddhhmm>\d{6})(?P<wmo>\d{5})(?P<mmyy>\d{4})BY")
NODATA_BIT, VALUE_BITS = 0x2000, 0x0FFF
RVP6_NODATA, RVP6_CLUTTER = 250, 249
GRID_PIXEL_KM = {(900, 900): 1.0, (1100, 900): 1.0, (1200, 1100): 1.0}    # rows × columns → km
AMOUNT, REFLECTIVITY = "amount", "reflectivity"
PRODUCTS = {"RY": AMOUNT, "YW": AMOUNT, "RV": AMOUNT, "RW": AMOUNT, "SF": AMOUNT,
            "RX": REFLECTIVITY, "WX": REFLECTIVITY}


OPENERS = {b"\x1f\x8b": gzip.open, b"BZ": bz2.open}     # magic bytes → a streaming opener


def _open(path: Path):
    """``path`` opened for binary reading, through gunzip or bunzip2 when its magic bytes say so."""
    with open(path, "rb") as handle:
        magic = handle.read(2)
    return OPENERS.get(magic, open)(path, "rb")


def _decompressed(path: Path) -> bytes:
    """The file's bytes, gunzipped or bunzipped when it is compressed."""
    try:
        with _open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        raise DataError(f"radar file not found: {path}") from None
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: not a readable compressed file ({exc}); re-download it") from None


def is_radolan(path: Path) -> bool:
    """Whether ``path`` starts (once decompressed) with a RADOLAN composite header; reads only that
    header's first bytes, never the whole file."""
    try:
        with _open(path) as handle:
            return HEAD.match(handle.read(32)) is not None
    except (OSError, EOFError, ValueError):
        return False


OTHER_FORMATS = (".h5", ".hdf", ".nc", ".gif", ".pgm", ".grib2")     # names other readers claim


def holds(files: list[Path], looked_at: int = 3) -> bool:
    """Whether a folder's ``files`` are RADOLAN composites: one of its first ``looked_at`` files
    not named as another format starts with the header."""
    candidates = [p for p in files if not any(kind in p.name.lower() for kind in OTHER_FORMATS)]
    return any(is_radolan(path) for path in candidates[:looked_at])


def _token(header: str, name: str, pattern: str, where: str, *, required: bool = True) -> re.Match | None:
    match = re.search(pattern, header)
    if match is None and required:
        raise DataError(f"{where}: the RADOLAN header lacks its {name} token ({header[:80]!r})")
    return match


def _header(data: bytes, where: str) -> tuple[dict, int]:
    """Header fields and where the grid's bytes begin."""
    end = data.find(ETX, 0, MAX_HEADER_BYTES)
    head = HEAD.match(data)
    if head is None or end < 0:
        raise DataError(f"{where}: not a RADOLAN composite (no 'XXddhhmm10000MMYYBY…' header ending in ETX)")
    text = re.sub(r"<[^>]*>", "", data[:end].decode("latin-1"))      # site lists may hold any letters
    product = head["product"].decode()
    try:
        time = datetime.strptime(head["ddhhmm"].decode() + head["mmyy"].decode(), "%d%H%M%m%y")
    except ValueError:
        raise DataError(f"{where}: header time {head['ddhhmm'].decode()} {head['mmyy'].decode()} "
                        "is not ddhhmm MMYY") from None
    amount = PRODUCTS.get(product) == AMOUNT
    rows, columns = (int(v) for v in _token(text, "GP (grid)", r"GP\s*(\d+)\s*x\s*(\d+)", where).groups())
    precision = _token(text, "PR (precision)", r"PR\s*E\s*([-+]?\d+)", where, required=amount)
    interval = _token(text, "INT (interval)", r"INT\s*(\d+)", where, required=amount)
    in_days = _token(text, "U", r"(?<![A-Z])U\s*([01])", where, required=False)
    lead = _token(text, "VV", r"VV\s*(\d+)", where, required=False)
    minutes = int(interval.group(1)) * (1440 if in_days and in_days.group(1) == "1" else 1) if interval else None
    return {"product": product, "time": time, "grid": (rows, columns), "minutes": minutes,
            "precision": 10.0 ** int(precision.group(1)) if precision else None,
            "lead": int(lead.group(1)) if lead else 0}, end + 1


def _grid(data: bytes, start: int, fields: dict, dtype: str, where: str) -> np.ndarray:
    rows, columns = fields["grid"]
    body = data[start:]
    size = rows * columns * np.dtype(dtype).itemsize
    if len(body) < size:
        raise DataError(f"{where}: {len(body)} bytes for a {rows} x {columns} grid of {dtype}; the file is truncated")
    return np.flipud(np.frombuffer(body[:size], dtype).reshape(rows, columns))     # north up


def _amount_to_dbz(data: bytes, start: int, fields: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    raw = _grid(data, start, fields, "<u2", where)
    valid = (raw & NODATA_BIT) == 0
    if fields["minutes"] <= 0:
        raise DataError(f"{where}: an accumulation over {fields['minutes']} min")
    dbz = amount_to_dbz((raw & VALUE_BITS) * fields["precision"], fields["minutes"])
    return np.where(valid, dbz, np.float32(NO_ECHO_DBZ)), valid


def _rvp6_to_dbz(data: bytes, start: int, fields: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    raw = _grid(data, start, fields, "u1", where)
    valid = raw != RVP6_NODATA
    echo = valid & (raw != RVP6_CLUTTER)
    dbz = np.maximum(raw.astype(np.float32) / 2.0 - 32.5, NO_ECHO_DBZ)
    return np.where(echo, dbz, np.float32(NO_ECHO_DBZ)), valid


DECODERS = {AMOUNT: _amount_to_dbz, REFLECTIVITY: _rvp6_to_dbz}


def read_frame(path: str | Path) -> tuple[np.ndarray, np.ndarray, datetime, float, str]:
    """One composite → (dBZ float32 (H, W) north up, valid bool (H, W), its time UTC, pixel km,
    product)."""
    path = Path(path)
    data = _decompressed(path)
    fields, start = _header(data, path.name)
    product = fields["product"]
    if product not in PRODUCTS:
        raise DataError(f"{path.name}: RADOLAN product {product} is not read here; read: {', '.join(PRODUCTS)}")
    if fields["lead"] > 0:
        raise DataError(f"{path.name}: a {product} forecast {fields['lead']} min ahead (VV), not an observation")
    pixel_km = GRID_PIXEL_KM.get(fields["grid"])
    if pixel_km is None:
        raise DataError(f"{path.name}: a {fields['grid'][0]} x {fields['grid'][1]} RADOLAN grid, whose pixel size "
                        f"is not known here (read: {', '.join(f'{r} x {c}' for r, c in GRID_PIXEL_KM)})")
    dbz, valid = DECODERS[PRODUCTS[product]](data, start, fields, path.name)
    return dbz.astype(np.float32), valid, fields["time"], pixel_km, product


def load_event(folder: str | Path) -> Series:
    """Every RADOLAN composite in ``folder`` as a dBZ series (T, 1, H, W) at 1 km, in time order;
    the frames must share one grid and product at a regular step."""
    folder = Path(folder)
    files = sorted(path for path in folder.iterdir() if is_radolan(path))
    if not files:
        raise DataError(f"{folder}: no RADOLAN composites (files starting with a 'XXddhhmm10000MMYYBY…' header)")
    return stack_files(files, read_frame, f"RADOLAN {folder.name}", str(folder))
