"""Named data sets with their benchmark protocol (DESIGN §7), and loading of arbitrary user files."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from . import era5, radar_fmi, radar_sets, taxi_nyc
from .gridded_files import read_array, to_tchw
from .series import Series, from_array

SPLITS = ("train", "val", "test")
DEFAULT_ROOT_ENV = "DYNA_STREAM_DATA"


@dataclass(frozen=True)
class DatasetSpec:
    """A data set and the protocol its numbers are reported under.

    ``fallback`` names the forecast that pruned tiles take (see ``dyna_stream.extrapolation``);
    ``value_range`` is the physically possible (low, high) that forecasts are clipped to
    (None: unbounded on that side). ``load_split`` returns one series or, for data sets made of
    several sources or regions, a list of them. ``pixel_km`` and ``step_minutes``: the grid's pixel
    size and time step (None: not a map, or not known).
    """

    name: str
    folder: str
    t_in: int
    t_out: int
    fallback: str
    csi_thresholds: tuple[float, ...]
    load_split: Callable[[Path, str], Series]
    value_range: tuple[float | None, float | None] = (None, None)
    pixel_km: float | None = None
    step_minutes: float | None = None


RADAR_THRESHOLDS = (20.0, 30.0, 40.0)          # dBZ: CSI thresholds (moderate, heavy, very heavy rain)
RADAR_RANGE = (radar_fmi.NO_ECHO_DBZ, radar_fmi.MAX_DBZ)
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        *(DatasetSpec(name, folder, 6, 6, "advection", RADAR_THRESHOLDS, splitter, RADAR_RANGE, 4.0, 5.0)
          for name, folder, splitter in (("radar-fmi", "radar_fmi", radar_sets.fmi_split),
                                         ("radar-knmi", "radar_knmi", radar_sets.knmi_split),
                                         ("radar-mrms", "radar_mrms", radar_sets.mrms_split),
                                         ("radar-multi", ".", radar_sets.multi_split))),
        DatasetSpec("taxi-nyc", "nyc_taxi_flow", 4, 4, "persistence", (), taxi_nyc.load_split, (0.0, None)),
        DatasetSpec("era5-t2m", "era5_t2m_uk", 12, 12, "persistence", (), era5.load_split),
    )
}


def get_dataset(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}") from None


def default_root() -> Path:
    """``$DYNA_STREAM_DATA`` or ``../shared/data`` beside the current directory."""
    return Path(os.environ.get(DEFAULT_ROOT_ENV, "../shared/data"))


def load_split(name: str, split: str, root: str | Path | None = None) -> Series:
    """Split ``split`` of data set ``name`` from ``root`` (default: :func:`default_root`); for data
    sets of several parts (sources, regions) see :func:`load_parts`."""
    parts = load_parts(name, split, root)
    if len(parts) > 1:
        raise DataError(f"{name} {split} has {len(parts)} parts ({', '.join(p.name for p in parts)}); "
                        "load them with load_parts")
    return parts[0]


def load_parts(name: str, split: str, root: str | Path | None = None) -> list[Series]:
    """Split ``split`` of data set ``name`` as its list of series (one per source or region)."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, not {split!r}")
    spec = get_dataset(name)
    folder = Path(root if root is not None else default_root()) / spec.folder
    if not folder.is_dir():
        raise DataError(f"{name}: folder {folder} not found; pass --data-root (or set ${DEFAULT_ROOT_ENV}) "
                        f"to the folder that holds {spec.folder}/")
    loaded = spec.load_split(folder, split)
    return list(loaded) if isinstance(loaded, list | tuple) else [loaded]


def load_path(path: str | Path, variable: str | None = None, *, units: str = "", fill_value: float = 0.0,
              layout: str = "auto") -> Series:
    """Any user input: a folder of FMI radar files, or an array file in ``layout`` (see
    :func:`~dyna_stream.data.gridded_files.to_tchw`: (T, H, W), (T, C, H, W) or channel-last (T, H, W, C))."""
    path = Path(path)
    if path.is_dir():
        return radar_fmi.load_event(path)
    if not path.exists():
        raise DataError(f"input not found: {path}")
    array = to_tchw(read_array(path, variable), layout, name=path.name)
    return from_array(array, units=units, name=path.name, fill_value=fill_value)
