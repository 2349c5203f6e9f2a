"""NYC taxi crowd flow (STSAN preprocessing): in/out trips per cell per 30 min, 16 × 12 grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .gridded_files import read_array
from .series import Series

START = np.datetime64("2016-01-01T00:00", "m")
STEP = np.timedelta64(30, "m")
SPLIT_ORDER = ("train", "val", "test")


def load_split(folder: str | Path, split: str) -> Series:
    """One given split as a (T, 2, 16, 12) series: channel 0 inflow, 1 outflow (trips / cell / 30 min)."""
    folder = Path(folder)
    if split not in SPLIT_ORDER:
        raise DataError(f"taxi-nyc has splits {SPLIT_ORDER}, not {split!r}")
    offset = 0
    for earlier in SPLIT_ORDER[: SPLIT_ORDER.index(split)]:
        offset += _read(folder, earlier).shape[0]
    flow = _read(folder, split)
    times = START + STEP * (offset + np.arange(flow.shape[0]))
    values = np.ascontiguousarray(flow.transpose(0, 3, 1, 2), dtype=np.float32)
    return Series(values, np.isfinite(values), times, "trips / cell / 30 min", 0.0, f"NYC taxi flow ({split})")


def _read(folder: Path, split: str) -> np.ndarray:
    flow = read_array(folder / f"flow_{split}.npz", "flow")
    if flow.ndim != 4 or flow.shape[-1] != 2:
        raise DataError(f"flow_{split}.npz: expected (T, H, W, 2) in/out flow, got {flow.shape}")
    return flow
