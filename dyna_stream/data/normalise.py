"""Per-channel affine normalisation whose statistics travel with the model."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CheckpointError, DataError
from .series import Series


@dataclass(frozen=True)
class Normaliser:
    """x_norm = (x − mean[c]) / std[c], statistics over valid training cells, physical units.

    ``low`` and ``high`` are the smallest and largest valid training values (all channels);
    their difference is the dynamic range SSIM is computed with.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    units: str
    low: float
    high: float

    @property
    def data_range(self) -> float:
        return max(self.high - self.low, 1e-6)

    @classmethod
    def fit(cls, series: Series | list[Series]) -> Normaliser:
        """Statistics over the valid cells of one series or of several (pooled, same channels and units)."""
        parts = series if isinstance(series, list) else [series]
        names = ", ".join(part.name for part in parts)
        if len({part.shape[1] for part in parts}) > 1 or len({part.units for part in parts}) > 1:
            raise DataError(f"{names}: series with different channels or units cannot share a normalisation")
        means, stds = [], []
        for c in range(parts[0].shape[1]):
            cells = np.concatenate([part.values[:, c][part.valid[:, c]] for part in parts])
            if cells.size == 0:
                raise DataError(f"{names}: channel {c} has no valid cell to fit normalisation on")
            means.append(float(cells.mean()))
            stds.append(float(max(cells.std(), 1e-6)))
        cells = np.concatenate([part.values[part.valid] for part in parts])
        return cls(tuple(means), tuple(stds), parts[0].units, float(cells.min()), float(cells.max()))

    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        shape = (len(self.mean), 1, 1)
        return np.asarray(self.mean, np.float32).reshape(shape), np.asarray(self.std, np.float32).reshape(shape)

    def forward(self, values: np.ndarray) -> np.ndarray:
        """Physical (..., C, H, W) → normalised, float32."""
        mean, std = self._stats()
        return ((values - mean) / std).astype(np.float32)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Normalised (..., C, H, W) → physical units, float32."""
        mean, std = self._stats()
        return (values * std + mean).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "units": self.units,
                "low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, data: dict) -> Normaliser:
        try:
            return cls(tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"]),
                       str(data["units"]), float(data["low"]), float(data["high"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint normalisation block is malformed ({exc})") from None

    def unlike(self, series: Series) -> str | None:
        """Why ``series`` looks unlike the training data (None: it does not): per channel, a mean more
        than 2 training standard deviations away, or a spread 3× narrower or wider. Not for radar
        reflectivity, where a calm hour is all no-echo and legitimately narrow."""
        if self.units == "dBZ":
            return None
        for c, (mean, std) in enumerate(zip(self.mean, self.std)):
            cells = series.values[:, c][series.valid[:, c]]
            if cells.size < 2:
                continue
            shift, ratio = abs(float(cells.mean()) - mean) / std, float(cells.std()) / std
            if shift > 2 or not 1 / 3 <= ratio <= 3:
                return (f"channel {c}: mean {cells.mean():.4g}, std {cells.std():.4g} {self.units} against the "
                        f"training data's {mean:.4g}, {std:.4g}")
        return None

    def check_channels(self, channels: int) -> None:
        if channels != len(self.mean):
            raise DataError(f"data has {channels} channels but the model was trained on {len(self.mean)}")

