"""The radar data sets' splits (DESIGN §7): which frames, events and regions train, validate and test.

Every radar set is reflectivity in dBZ on a ~4 km grid (native 1 km pixels, 4 × 4 block mean in
linear Z) every 5 minutes. Within an event, validation and test frames follow the training frames,
so no target is ever trained on; across MRMS regions the split is by region.
"""
from __future__ import annotations

from pathlib import Path

from . import radar_fmi, radar_knmi, radar_mrms
from .series import Series

FMI_TRAIN_EVENT, FMI_TEST_EVENT = "20160928", "20170509"
KNMI_EVENT = "20100826"
KNMI_SPLITS = {"train": (0, 46), "val": (46, 68), "test": (68, 92)}   # frames 00:00–03:45 | –05:35 | –07:35
MRMS_EVENT = "20190610"
MRMS_REGION = 256                # region side on the 4 km grid (~1000 km)
# (top, left) of each region on the 4 km grid (row 0 = 54.995 N, column 0 = 129.995 W; 0.04° a pixel),
# the 256-aligned squares where ≥ 2 % of the covered cells are ≥ 20 dBZ at 00:00 UTC
MRMS_REGIONS = {
    "train": ((0, 256), (0, 512), (0, 1024), (256, 1024), (256, 1280), (512, 512), (512, 768), (512, 1280)),
    "val": ((0, 768),),             # northern Plains, 45–55 N, 99–89 W
    "test": ((512, 1024),),         # Gulf coast and Florida, 24–35 N, 89–79 W
}


def fmi_split(folder: Path, split: str) -> Series:
    """Train on the 2016-09-28 event, test on 2017-05-09. Validation: the last 18 frames of the
    training event (its targets, frames 28–39, are never trained on; train uses frames 0–27)."""
    if split == "test":
        return radar_fmi.load_event(folder / FMI_TEST_EVENT)
    event = radar_fmi.load_event(folder / FMI_TRAIN_EVENT)
    return event.slice(0, 28) if split == "train" else event.slice(22, len(event))


def knmi_split(folder: Path, split: str) -> Series:
    """The 2010-08-26 event in time order: train 00:00–03:45, validate 03:50–05:35, test the last
    two hours' frames 05:40–07:35 (13 windows whose targets span its last hour)."""
    return radar_knmi.load_event(folder / KNMI_EVENT).slice(*KNMI_SPLITS[split])


def mrms_split(folder: Path, split: str) -> list[Series]:
    """2019-06-10 00:00–01:10 UTC on a 5-minute step, one series per region of the split."""
    event = radar_mrms.load_event_cached(folder / MRMS_EVENT)
    return [region(event, top, left) for top, left in MRMS_REGIONS[split]]


def region(series: Series, top: int, left: int, size: int = MRMS_REGION) -> Series:
    """A ``size`` × ``size`` crop of a series at (top, left), named by its corner."""
    from dataclasses import replace

    return replace(series, values=series.values[..., top:top + size, left:left + size],
                   valid=series.valid[..., top:top + size, left:left + size],
                   name=f"{series.name} region ({top}, {left})")


def multi_split(root: Path, split: str) -> list[Series]:
    """FMI + KNMI + MRMS: the same split of each source (``root`` holds radar_fmi/, radar_knmi/,
    radar_mrms/)."""
    return [fmi_split(root / "radar_fmi", split), knmi_split(root / "radar_knmi", split),
            *mrms_split(root / "radar_mrms", split)]
