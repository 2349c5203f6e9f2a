"""A user's own series as a data set: one array file (.npy/.npz/.nc/.h5) or a folder of radar files
(FMI, KNMI, NOAA MRMS, MeteoSwiss GIF, DWD RADOLAN, any service's ODIM_H5 composites or CF netCDF
frames), split in time into train / val / test, so ``train`` and ``eval`` take it like a built-in
one (and ``predict`` forecasts from its latest frames)."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from ..errors import DataError
from . import radar_fmi, radar_knmi, radar_mch, radar_mrms, radar_netcdf, radar_odim, radar_radolan
from .gridded_files import read_array, to_tchw
from .reflectivity import NO_ECHO_DBZ, to_dbz
from .series import Series, from_array


def _named(pattern: re.Pattern) -> Callable[[list[Path]], bool]:
    return lambda files: any(pattern.match(path.name) for path in files)


RADAR_FOLDERS: dict[str, tuple[Callable[[list[Path]], bool], Callable[[Path], Series]]] = {
    # service or format → (whether a folder's files are its own, the loader of such a folder)
    "FMI": (_named(radar_fmi.FILE_PATTERN), radar_fmi.load_event),
    "KNMI": (_named(radar_knmi.FILE_PATTERN), radar_knmi.load_event),
    "NOAA MRMS": (_named(radar_mrms.FILE_PATTERN), radar_mrms.load_event),
    "ODIM_H5": (radar_odim.holds, radar_odim.load_event),     # OPERA and most European services
    "CF netCDF": (radar_netcdf.holds, radar_netcdf.load_event),   # BoM Rainfields3 and others' netCDF products
    "MeteoSwiss GIF": (radar_mch.holds, radar_mch.load_event),    # the MeteoSwiss archive's AQC / CPC composites
    "DWD RADOLAN": (radar_radolan.holds, radar_radolan.load_event),   # the German service's binary composites
}

SPLITS = ("train", "val", "test")           # in time order


@dataclass(frozen=True)
class FileSource:
    """Where a user's series is and how to read it: ``variable`` inside the file, its axes
    ``layout`` ("auto", "THW", "TCHW", "THWC"), its physical ``units`` and the ``fill_value``
    cells without a measurement take; ``splits`` = the train and val shares of the frames, in time
    order (test: the rest)."""

    path: str
    variable: str | None = None
    layout: str = "auto"
    units: str = ""
    fill_value: float = 0.0
    splits: tuple[float, float] = (0.7, 0.15)

    def load(self) -> Series:
        return _read(self)

    def split(self, split: str, *, min_frames: int) -> Series:
        """Frames of ``split`` (contiguous in time, no overlap with the others); each split must hold
        at least ``min_frames`` (one window)."""
        if split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, not {split!r}")
        series = self.load()
        train, val = self.splits
        if not (0 < train and 0 < val and train + val < 1):
            raise DataError(f"splits {self.splits}: train and val shares must be positive and sum below 1 "
                            "(test takes the rest)")
        count = len(series)
        edges = (0, round(count * train), round(count * (train + val)), count)
        start, stop = edges[SPLITS.index(split)], edges[SPLITS.index(split) + 1]
        if stop - start < min_frames:
            raise DataError(f"{Path(self.path).name}: the {split} split holds {stop - start} of {count} frames "
                            f"(shares {train:g} / {val:g} / {1 - train - val:g}); one window needs {min_frames} "
                            "— give a longer series or other splits")
        return series.slice(start, stop)


@lru_cache(maxsize=4)
def _read(source: FileSource) -> Series:
    return load_path(source.path, source.variable, units=source.units, fill_value=source.fill_value,
                     layout=source.layout)


def load_path(path: str | Path, variable: str | None = None, *, units: str = "", fill_value: float = 0.0,
              layout: str = "auto", input_units: str | None = None) -> Series:
    """Any user input: a folder of one radar service's files (:data:`RADAR_FOLDERS`, told apart by
    their names or, for ODIM_H5, their header), or an array file in ``layout`` (see
    :func:`~dyna_stream.data.gridded_files.to_tchw`: (T, H, W), (T, C, H, W) or channel-last
    (T, H, W, C)) in ``units``. ``input_units`` ("mm/h": rain rate): an array in other units than the
    model's dBZ, converted on its valid (non-NaN) cells."""
    path = Path(path)
    if path.is_dir():
        if input_units not in (None, "dBZ"):
            raise DataError(f"{path}: a radar folder says its own units; --input-units is for array files")
        return radar_folder(path)
    if not path.exists():
        raise DataError(f"input not found: {path}")
    array = to_tchw(read_array(path, variable), layout, name=path.name)
    if input_units is None or input_units == units:
        return from_array(array, units=units, name=path.name, fill_value=fill_value)
    if units != "dBZ":
        raise DataError(f"--input-units {input_units}: only radar converts (to dBZ); this model works in {units!r}")
    series = from_array(array, units=units, name=f"{path.name} ({input_units} as dBZ)", fill_value=NO_ECHO_DBZ)
    return replace(series, values=to_dbz(series.values, series.valid, input_units))


def radar_folder(folder: Path) -> Series:
    """The event in ``folder`` from the one service whose files it holds; one clear line when
    it holds none (naming what is read) or the files of several."""
    files = sorted(folder.iterdir())
    services = [service for service, (holds, _) in RADAR_FOLDERS.items() if holds(files)]
    if not services:
        raise DataError(f"{folder}: no radar files of a service read here ({', '.join(RADAR_FOLDERS)}); "
                        "give their folder, or an array file (.npy/.npz/.nc/.h5) in dBZ or with --input-units")
    if len(services) > 1:
        raise DataError(f"{folder}: holds files of {' and '.join(services)}; one event is one service's files")
    return RADAR_FOLDERS[services[0]][1](folder)
