"""ERA5 2 m temperature in WeatherBench layout (variable over time, lat, lon), kelvin."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .series import from_array

FILE_NAME = "2m_temperature_2019-03_uk_0.25deg.nc"
SPLIT_DAYS = {"train": (1, 21), "val": (22, 25), "test": (26, 31)}


def load_file(path: str | Path, variable: str = "t2m"):
    """Every hour of ``path`` as a (T, 1, lat, lon) series in K, lat descending as stored."""
    import netCDF4

    path = Path(path)
    if not path.is_file():
        raise DataError(f"ERA5 file not found: {path}")
    with netCDF4.Dataset(path) as dataset:
        if variable not in dataset.variables:
            raise DataError(f"{path.name} has no variable {variable!r}; it has {list(dataset.variables)}")
        field = np.ma.filled(dataset.variables[variable][:].astype(np.float32), np.nan)
        hours = np.asarray(dataset.variables["time"][:], dtype="int64")
    if field.ndim != 3:
        raise DataError(f"{path.name}:{variable} should be (time, lat, lon), got {field.shape}")
    times = np.datetime64("1970-01-01T00:00", "m") + hours.astype("timedelta64[h]")
    return from_array(field, units="K", name=f"ERA5 {variable}", fill_value=float(np.nanmean(field)),
                      times=times)


def load_split(folder: str | Path, split: str):
    """Days 1–21 train, 22–25 val, 26–31 test (DESIGN §7)."""
    if split not in SPLIT_DAYS:
        raise DataError(f"era5-t2m has splits {tuple(SPLIT_DAYS)}, not {split!r}")
    series = load_file(Path(folder) / FILE_NAME)
    first, last = SPLIT_DAYS[split]
    day = (series.times.astype("datetime64[D]") - series.times[0].astype("datetime64[D]")).astype(int) + 1
    index = np.flatnonzero((day >= first) & (day <= last))
    return series.slice(int(index[0]), int(index[-1]) + 1)
