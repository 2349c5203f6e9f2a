"""ODIM_H5 radar composites (OPERA's exchange format, written by most European services) → dBZ.

Format (EUMETNET OPERA "ODIM_H5" information model, v2.x): the root attribute ``Conventions``
starts with ``ODIM_H5``; ``/what`` says the object (``COMP`` or ``IMAGE``: a Cartesian 2-D
product; polar volumes are not read) and the nominal ``date`` / ``time``; ``/where`` the pixel size
``xscale`` / ``yscale`` in metres (a value under 10 is read as km, as MeteoSwiss writes it; degrees
on a longitude/latitude ``projdef``); ``/datasetN/dataM/data`` holds the raw values with
``/datasetN/dataM/what`` (or, inherited, ``/datasetN/what``) giving ``quantity``, ``gain``,
``offset``, ``nodata`` (no measurement) and ``undetect`` (measured, no echo). Rows run north to
south (upper-left origin). The first dataset holding a quantity read here is taken:

- ``DBZH`` / ``TH``: reflectivity in dBZ;
- ``RATE``: rain rate in mm/h → dBZ by Marshall–Palmer;
- ``ACRR``: accumulation in mm over the product's start–end interval → mm/h → dBZ.

Frames are returned at their native pixel size (the Predictor block-averages a whole finer factor
onto the model's grid); an event's frames must share one grid and one regular time step.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import DataError
from .gridded_files import attribute_text
from .reflectivity import NO_ECHO_DBZ, TO_DBZ, stack_files
from .series import Series

SUFFIXES = (".h5", ".hdf", ".hdf5")
CARTESIAN = ("COMP", "IMAGE")


def _stamp(what, date_key: str, time_key: str) -> datetime | None:
    if date_key not in what.attrs or time_key not in what.attrs:
        return None
    stamp = attribute_text(what.attrs[date_key]) + attribute_text(what.attrs[time_key])[:6]
    return datetime.strptime(stamp, "%Y%m%d%H%M%S")


def _accumulation_hours(what, name: str) -> float:
    start, end = _stamp(what, "startdate", "starttime"), _stamp(what, "enddate", "endtime")
    if start is None or end is None or end <= start:
        raise DataError(f"{name}: an ACRR accumulation needs startdate/starttime before enddate/endtime")
    return (end - start).total_seconds() / 3600.0


KM_PER_DEGREE = 111.2
LONGITUDE_LATITUDE = ("+proj=latlong", "+proj=longlat", "+proj=lonlat", "+proj=latlon")
IN_KM_BELOW = 10.0       # a scale under 10 is kilometres (MeteoSwiss writes 1.0), never 10 m pixels


def _pixel_km(where) -> list[float]:
    """(x, y) pixel size in km from ``/where``: ``xscale``/``yscale`` in metres per ODIM; degrees on a
    longitude/latitude grid (north–south size for both); a scale below :data:`IN_KM_BELOW` is taken
    as km, as some services write it."""
    scales = [float(np.ravel(where.attrs[key])[0]) for key in ("xscale", "yscale")]
    projection = attribute_text(where.attrs.get("projdef", b"")).replace(" ", "").lower()
    if any(name.replace(" ", "") in projection for name in LONGITUDE_LATITUDE):
        return [scales[1] * KM_PER_DEGREE] * 2
    return [scale if scale < IN_KM_BELOW else scale / 1000.0 for scale in scales]


QUANTITY_UNITS = {"DBZH": "dBZ", "TH": "dBZ", "RATE": "mm/h",
                  "ACRR": "mm/h"}    # ACRR: mm, divided by its interval in hours first


def is_odim(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file whose root says ODIM_H5 (False for anything unreadable)."""
    import h5py

    if path.suffix.lower() not in SUFFIXES or not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as handle:
            return attribute_text(handle.attrs.get("Conventions", b"")).startswith("ODIM_H5")
    except OSError:
        return False


def holds(files: list[Path], looked_at: int = 3) -> bool:
    """Whether a folder's ``files`` are ODIM_H5 composites: one of its first ``looked_at`` HDF5 files says so."""
    return any(is_odim(path) for path in [p for p in files if p.suffix.lower() in SUFFIXES][:looked_at])


def _field(handle, name: str):
    """(data array, its what-attributes merged over the dataset's, the dataset's what) of the first
    dataset/data pair whose quantity is in :data:`QUANTITY_UNITS`."""
    seen = []
    for key in sorted(k for k in handle if k.startswith("dataset")):
        dataset = handle[key]
        inherited = dict(dataset["what"].attrs) if "what" in dataset else {}
        for data_key in sorted(k for k in dataset if k.startswith("data") and "data" in dataset[k]):
            attrs = {**inherited, **(dict(dataset[data_key]["what"].attrs) if "what" in dataset[data_key] else {})}
            quantity = attribute_text(attrs.get("quantity", b"?"))
            if quantity in QUANTITY_UNITS:
                return dataset[data_key]["data"][()], attrs, quantity, dataset.get("what", handle["what"])
            seen.append(quantity)
    raise DataError(f"{name}: no reflectivity or rain field (found {sorted(set(seen)) or 'none'}; "
                    f"read: {sorted(QUANTITY_UNITS)})")


def read_frame(path: str | Path) -> tuple[np.ndarray, np.ndarray, datetime, float]:
    """One ODIM_H5 composite → (dBZ float32 (H, W), valid bool (H, W), nominal time UTC, pixel km)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"radar file not found: {path}")
    try:
        with h5py.File(path, "r") as handle:
            convention = attribute_text(handle.attrs.get("Conventions", b""))
            if not convention.startswith("ODIM_H5"):
                raise DataError(f"{path.name}: not an ODIM_H5 file (Conventions {convention!r})")
            what, where = handle["what"], handle["where"]
            kind = attribute_text(what.attrs.get("object", b"?"))
            if kind not in CARTESIAN:
                raise DataError(f"{path.name}: an ODIM {kind} object; only Cartesian composites and images "
                                f"({', '.join(CARTESIAN)}) are read, not polar volumes or scans")
            raw, attrs, quantity, product_what = _field(handle, path.name)
            time = _stamp(what, "date", "time")
            scales = _pixel_km(where)
            if time is None:
                raise DataError(f"{path.name}: /what has no date and time")
            gain, offset = float(attrs.get("gain", 1.0)), float(attrs.get("offset", 0.0))
            nodata, undetect = attrs.get("nodata"), attrs.get("undetect")
            valid = np.ones(raw.shape, bool) if nodata is None else raw != nodata
            echo = valid if undetect is None else valid & (raw != undetect)
            values = raw[echo].astype(np.float64) * gain + offset
            if quantity == "ACRR":
                values = values / _accumulation_hours(product_what, path.name)
            dbz = np.full(raw.shape, NO_ECHO_DBZ, np.float32)
            dbz[echo] = TO_DBZ[QUANTITY_UNITS[quantity]](values)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path.name}: not a readable ODIM_H5 composite ({exc})") from None
    if raw.ndim != 2:
        raise DataError(f"{path.name}: data of shape {raw.shape}; a composite is one 2-D field")
    if abs(scales[0] - scales[1]) > 1e-6 * max(scales):
        raise DataError(f"{path.name}: pixels of {scales[0]:g} × {scales[1]:g} km; only square pixels are read")
    return np.maximum(dbz, NO_ECHO_DBZ), valid, time, scales[0]


def load_event(folder: str | Path) -> Series:
    """Every ODIM_H5 composite in ``folder`` as a dBZ series (T, 1, H, W) at its native pixel size,
    in time order; the frames must share one grid, pixel size and a regular step."""
    folder = Path(folder)
    files = sorted(path for path in folder.iterdir() if is_odim(path))
    if not files:
        raise DataError(f"{folder}: no ODIM_H5 files (.h5/.hdf with Conventions ODIM_H5)")
    return stack_files(files, read_frame, f"ODIM radar {folder.name}", str(folder))
