"""Synthetic moving storms — only for fast unit tests; real data sets serve everything else."""
from __future__ import annotations

import numpy as np

from .series import Series


def moving_storms(*, frames: int = 16, height: int = 64, width: int = 48, storms: int = 3,
                  seed: int = 0) -> Series:
    """Gaussian reflectivity cells drifting at constant velocity, in dBZ (T, 1, H, W).

    Background −32 dBZ (no echo), cell peaks 35–55 dBZ, speeds up to 2 px per frame; a
    no-data corner (bottom-right 6×6) mimics radar coverage limits.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    centres = rng.uniform([0, 0], [height, width], size=(storms, 2))
    velocity = rng.uniform(-2, 2, size=(storms, 2))
    peaks = rng.uniform(35, 55, size=storms)
    radii = rng.uniform(4, 9, size=storms)
    values = np.full((frames, 1, height, width), -32.0, np.float32)
    for t in range(frames):
        for centre, v, peak, radius in zip(centres, velocity, peaks, radii):
            cy, cx = centre + v * t
            cell = (peak + 32.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2)) - 32.0
            values[t, 0] = np.maximum(values[t, 0], cell)
    valid = np.ones_like(values, dtype=bool)
    valid[..., -6:, -6:] = False
    values[~valid] = -32.0
    times = np.datetime64("2020-01-01T00:00", "m") + np.arange(frames) * np.timedelta64(5, "m")
    return Series(values, valid, times, "dBZ", -32.0, "synthetic moving storms")
