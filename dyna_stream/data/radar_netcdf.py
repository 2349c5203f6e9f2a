"""Radar composites in CF netCDF, one or more frames a file (BoM Rainfields3 and most services'
netCDF products) → dBZ.

Format (NetCDF Climate and Forecast conventions, as radar services write them): a gridded variable
whose last two dimensions are the grid rows and columns, with a ``units`` attribute that says what
it holds (:data:`UNITS`): reflectivity (``dBZ``), a rain rate (``mm/h``, ``mm h-1``,
``kg m-2 s-1``, …) or an accumulation (``mm``, ``kg m-2``, ``m``). The variable is the one named
``--variable``-style by :data:`PREFERRED` (``precipitation``, ``rainfall_rate``, ``DBZH``, …) or else
the only variable with such units. Masked cells (``_FillValue``, ``missing_value``) and NaN are "no
radar"; a measured zero is "no echo".

- Times: the ``valid_time`` variable (Rainfields3) or the variable's ``time`` coordinate, decoded by
  its CF ``units`` ("seconds since …") and calendar.
- An accumulation is divided by its interval: ``valid_time − start_time`` (Rainfields3), the time
  coordinate's ``bounds``, or else the step between files (what a service's "5-minute accumulation"
  is). A single file with none of these is refused.
- Pixel size: the spacing of the row and column coordinate variables in ``m`` or ``km`` (projected
  grids); a latitude/longitude grid's pixel is its north–south size (1° = 111.2 km).
- Rows are kept in the file's order (a grid stored south to north stays so); the forecast comes
  back on the file's own cells.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import DataError
from .reflectivity import NO_ECHO_DBZ, TO_DBZ, regular_step
from .series import Series

SUFFIXES = (".nc", ".nc4", ".cdf")
KM_PER_DEGREE = 111.2
PREFERRED = ("precipitation", "rainfall_rate", "rain_rate", "precipitation_rate", "reflectivity", "DBZH", "dbz")

# units attribute (lower case, spaces collapsed) → (what it is, factor to mm/h or to dBZ; mm for amounts)
UNITS: dict[str, tuple[str, float]] = {
    "dbz": ("dBZ", 1.0),
    "mm/h": ("rate", 1.0), "mm h-1": ("rate", 1.0), "mm/hr": ("rate", 1.0), "mm hr-1": ("rate", 1.0),
    "mm hour-1": ("rate", 1.0), "mm.h-1": ("rate", 1.0), "mm h^-1": ("rate", 1.0),
    "kg m-2 s-1": ("rate", 3600.0), "mm s-1": ("rate", 3600.0), "mm/s": ("rate", 3600.0),
    "m s-1": ("rate", 3.6e6),
    "mm": ("amount", 1.0), "kg m-2": ("amount", 1.0), "m": ("amount", 1000.0),
}
LENGTH_KM = {"m": 1e-3, "meter": 1e-3, "meters": 1e-3, "metre": 1e-3, "metres": 1e-3, "km": 1.0,
             "kilometer": 1.0, "kilometers": 1.0, "kilometre": 1.0, "kilometres": 1.0}
DEGREES = ("degrees_north", "degree_north", "degrees_n", "degrees", "degree")


def _units(variable) -> str:
    return " ".join(str(getattr(variable, "units", "")).strip().lower().split())


def _radar_variables(dataset) -> list[str]:
    """Names of the gridded (≥ 2-D) variables whose units say reflectivity, a rain rate or an amount."""
    return [name for name, var in dataset.variables.items() if var.ndim >= 2 and _units(var) in UNITS]


def _pick(dataset, name: str) -> str:
    found = _radar_variables(dataset)
    for preferred in PREFERRED:
        if preferred in found:
            return preferred
    if len(found) == 1:
        return found[0]
    gridded = {key: _units(var) or "no units" for key, var in dataset.variables.items() if var.ndim >= 2}
    if not found:
        raise DataError(f"{name}: no reflectivity or rain variable (gridded variables and their units: {gridded}; "
                        f"units read: {sorted(UNITS)})")
    raise DataError(f"{name}: several radar variables {found} and none of {list(PREFERRED)}; convert the one "
                    "you want to an array file and pass --variable")


def is_radar_netcdf(path: Path) -> bool:
    """Whether ``path`` is a netCDF file holding a radar variable (False for anything unreadable)."""
    import netCDF4

    if path.suffix.lower() not in SUFFIXES or not path.is_file():
        return False
    try:
        with netCDF4.Dataset(path) as dataset:
            return bool(_radar_variables(dataset))
    except OSError:
        return False


def holds(files: list[Path], looked_at: int = 3) -> bool:
    """Whether a folder's ``files`` are netCDF radar frames: one of its first ``looked_at`` netCDF files is."""
    return any(is_radar_netcdf(path) for path in [p for p in files if p.suffix.lower() in SUFFIXES][:looked_at])


def _times(dataset, key: str) -> np.ndarray | None:
    """Decoded CF times of variable ``key`` (if the file has it) as datetime64[s] (N,)."""
    import cftime

    if key not in dataset.variables:
        return None
    times = dataset.variables[key]
    decoded = cftime.num2date(np.ravel(np.ma.filled(times[:], np.nan)), times.units,
                              getattr(times, "calendar", "standard"),
                              only_use_cftime_datetimes=False, only_use_python_datetimes=True)
    return np.array([np.datetime64(stamp.replace(tzinfo=None), "s") for stamp in decoded])


def _frame_times(dataset, variable, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(valid times datetime64[s] (T,), accumulation hours (T,) or None when the file does not say)."""
    time_key = "valid_time" if "valid_time" in dataset.variables else \
        next((dim for dim in variable.dimensions[:-2] if dim in dataset.variables), "time")
    try:
        valid = _times(dataset, time_key)
        start = _times(dataset, "start_time")
        bounds_key = getattr(dataset.variables[time_key], "bounds", None) if valid is not None else None
        bounds = None if bounds_key is None or bounds_key not in dataset.variables else \
            _times(dataset, bounds_key).reshape(-1, 2)
    except (AttributeError, ValueError, TypeError) as exc:
        raise DataError(f"{name}: its times cannot be decoded ({exc}); CF times need units like "
                        "'seconds since 1970-01-01'") from None
    if valid is None:
        raise DataError(f"{name}: no time variable (valid_time or the variable's time coordinate); the forecast's "
                        "leads need the frames' times")
    if start is None and bounds is not None:
        start, valid = bounds[:, 0], bounds[:, 1]
    hours = None if start is None else (valid - start).astype("timedelta64[s]").astype(np.float64) / 3600.0
    if hours is not None and not (hours > 0).all():
        raise DataError(f"{name}: an accumulation interval is not positive ({hours} h)")
    return valid, hours


def _pixel_km(dataset, variable, name: str) -> float | None:
    """The grid's pixel size in km from the row/column coordinate variables (None when absent)."""
    sizes = []
    for dim in variable.dimensions[-2:]:
        if dim not in dataset.variables or dataset.variables[dim].size < 2:
            return None
        coordinate = dataset.variables[dim]
        step = float(np.median(np.abs(np.diff(np.ma.filled(coordinate[:].astype(np.float64), np.nan)))))
        unit = _units(coordinate)
        if unit in LENGTH_KM:
            sizes.append(step * LENGTH_KM[unit])
        elif unit.startswith(DEGREES):
            sizes.append(step * KM_PER_DEGREE)
        else:
            return None
    degrees = _units(dataset.variables[variable.dimensions[-1]]).startswith(DEGREES)
    if abs(sizes[0] - sizes[1]) > 0.02 * max(sizes) and not degrees:      # east-west degrees shrink with latitude
        raise DataError(f"{name}: pixels of {sizes[1]:g} × {sizes[0]:g} km; only square pixels are read")
    return sizes[0]


def read_file(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, str, float | None]:
    """One netCDF radar file → (values float64 (T, H, W) in the file's kind, valid bool (T, H, W),
    valid times datetime64[s] (T,), accumulation hours (T,) or None, kind "dBZ" | "rate" | "amount",
    pixel km or None); rates are in mm/h and amounts in mm."""
    import netCDF4

    path = Path(path)
    if not path.is_file():
        raise DataError(f"radar file not found: {path}")
    try:
        with netCDF4.Dataset(path) as dataset:
            key = _pick(dataset, path.name)
            variable = dataset.variables[key]
            variable.set_auto_mask(True)
            raw = np.ma.masked_invalid(np.ma.asarray(variable[:], dtype=np.float64))
            times, hours = _frame_times(dataset, variable, path.name)
            pixel_km = _pixel_km(dataset, variable, path.name)
            kind, factor = UNITS[_units(variable)]
    except OSError as exc:
        raise DataError(f"{path.name}: not a readable netCDF file ({exc})") from None
    values = np.ma.filled(raw, np.nan).reshape(-1, *raw.shape[-2:])
    if len(times) != values.shape[0]:
        raise DataError(f"{path.name}: {len(times)} times for {values.shape[0]} frames of {key}")
    valid = np.isfinite(values)
    return np.where(valid, values * factor, 0.0), valid, times, hours, kind, pixel_km


def _to_dbz(values: np.ndarray, valid: np.ndarray, kind: str, hours: np.ndarray) -> np.ndarray:
    """values (T, H, W) of ``kind`` → dBZ float32 (T, H, W); amounts over ``hours`` (T,) become rates."""
    if kind == "amount":
        values = values / hours[:, None, None]
    convert = TO_DBZ["dBZ" if kind == "dBZ" else "mm/h"]
    return np.where(valid, np.maximum(convert(values), NO_ECHO_DBZ), np.float32(NO_ECHO_DBZ)).astype(np.float32)


def load_event(folder: str | Path) -> Series:
    """Every netCDF radar file in ``folder`` as a dBZ series (T, 1, H, W) at its native pixel size, in
    time order; the frames must share one grid, one kind of quantity and a regular step."""
    folder = Path(folder)
    files = sorted(path for path in folder.iterdir() if is_radar_netcdf(path))
    if not files:
        raise DataError(f"{folder}: no netCDF radar files (.nc with a dBZ, rain-rate or rain-amount variable)")
    decoded = [read_file(path) for path in files]
    grids = sorted({(frame[0].shape[1:], frame[4], frame[5]) for frame in decoded}, key=str)
    if len(grids) > 1:
        raise DataError(f"{folder}: files on different grids or of different quantities {grids}; one event must "
                        "share one grid and quantity")
    times = np.concatenate([frame[2] for frame in decoded])
    order = np.argsort(times, kind="stable")
    values, valid = (np.concatenate([frame[k] for frame in decoded])[order] for k in (0, 1))
    times = times[order]
    step = regular_step([datetime.fromisoformat(str(t)) for t in times], str(folder))
    kind = decoded[0][4]
    hours = None if kind != "amount" else _accumulation_hours(decoded, order, step, folder)
    dbz = _to_dbz(values, valid, kind, hours)
    return Series(dbz[:, None], valid[:, None], times.astype("datetime64[m]"), "dBZ", NO_ECHO_DBZ,
                  f"netCDF radar {folder.name}", decoded[0][5], step)


def _accumulation_hours(decoded: list, order: np.ndarray, step: float | None, folder: Path) -> np.ndarray:
    """Each frame's accumulation interval in hours: the files' own, else the step between frames."""
    if all(frame[3] is not None for frame in decoded):
        return np.concatenate([frame[3] for frame in decoded])[order]
    if step is None:
        raise DataError(f"{folder}: one rain-amount frame without start_time or time bounds; its interval "
                        "(and so its rain rate) is unknown")
    return np.full(len(order), step / 60.0)
