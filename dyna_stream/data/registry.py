"""Named data sets with their benchmark protocol (DESIGN §7), and loading of arbitrary user files."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from . import era5, radar_fmi, radar_sets, taxi_nyc
from .seasonal import Periods, longest, with_history
from .series import Series
from .user_files import SPLITS, FileSource, load_path

__all__ = ["DATASETS", "SPLITS", "DatasetSpec", "dataset_for", "default_root", "get_dataset", "load_parts",
           "load_path", "load_split", "register_file_dataset"]

DEFAULT_ROOT_ENV = "DYNA_STREAM_DATA"


@dataclass(frozen=True)
class DatasetSpec:
    """A data set and the protocol its numbers are reported under.

    ``fallback`` names the forecast that pruned tiles take (see ``dyna_stream.extrapolation``);
    ``value_range`` is the physically possible (low, high) that forecasts are clipped to
    (None: unbounded on that side). ``load_split`` returns one series or, for data sets made of
    several sources or regions, a list of them. ``pixel_km`` and ``step_minutes``: the grid's pixel
    size and time step (None: not a map, or not known). ``source``: a user's file, split in time
    (then ``folder`` and ``load_split`` are not used). ``periods``: (name, frames) of the data's
    cycles (a day, a week): seasonal inputs and baselines read the frames one period before each
    target, and every split after the first carries the longest period of history before it.
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
    source: FileSource | None = None
    periods: Periods = ()


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
        DatasetSpec("taxi-nyc", "nyc_taxi_flow", 4, 4, "persistence", (), taxi_nyc.load_split, (0.0, None),
                    periods=(("day", 48), ("week", 336))),
        DatasetSpec("era5-t2m", "era5_t2m_uk", 12, 12, "persistence", (), era5.load_split,
                    periods=(("day", 24),)),
    )
}


BUILT_IN = frozenset(DATASETS)


def _unused_split(folder: Path, split: str) -> Series:
    raise DataError("a file data set is split by its FileSource")


def register_file_dataset(name: str, source: FileSource, *, t_in: int, t_out: int, fallback: str = "persistence",
                          csi_thresholds: tuple[float, ...] = (), value_range: tuple[float | None, float | None] =
                          (None, None), pixel_km: float | None = None, step_minutes: float | None = None
                          ) -> DatasetSpec:
    """Make a user's file the data set ``name`` for this process (checkpoints trained on it record
    how, and register it again when loaded). Built-in names are refused."""
    if name in BUILT_IN:
        raise DataError(f"{name!r} is a built-in data set; give your file another data.name")
    spec = DatasetSpec(name, "", t_in, t_out, fallback, tuple(csi_thresholds), _unused_split, tuple(value_range),
                       pixel_km, step_minutes, source)
    DATASETS[name] = spec
    return spec


def dataset_for(data) -> DatasetSpec:
    """The data set a run's ``data`` section (:class:`dyna_stream.config.DataConfig`) names: a
    built-in one, or its ``file`` registered under ``data.name``."""
    if data.file is None:
        return get_dataset(data.name)
    file = data.file
    source = FileSource(file.path, file.variable, file.layout, file.units, file.fill_value, tuple(file.splits))
    return register_file_dataset(data.name, source, t_in=file.t_in, t_out=file.t_out, fallback=file.fallback,
                                 csi_thresholds=tuple(file.csi_thresholds), value_range=tuple(file.value_range),
                                 pixel_km=file.pixel_km, step_minutes=file.step_minutes)


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
    if spec.source is not None:
        return [spec.source.split(split, min_frames=spec.t_in + spec.t_out)]
    folder = Path(root if root is not None else default_root()) / spec.folder
    if not folder.is_dir():
        raise DataError(f"{name}: folder {folder} not found; pass --data-root (or set ${DEFAULT_ROOT_ENV}) "
                        f"to the folder that holds {spec.folder}/")
    parts = _as_list(spec.load_split(folder, split))
    if spec.periods and split != SPLITS[0]:
        if len(parts) != 1:
            raise DataError(f"{name}: seasonal history is defined for one-part data sets, not {len(parts)} parts")
        earlier = [part for before in SPLITS[:SPLITS.index(split)]
                   for part in _as_list(spec.load_split(folder, before))]
        parts = [with_history(parts[0], earlier, longest(spec.periods))]
    return parts


def _as_list(loaded: Series | list[Series]) -> list[Series]:
    return list(loaded) if isinstance(loaded, list | tuple) else [loaded]
