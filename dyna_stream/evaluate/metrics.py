"""Forecast scores per lead time, accumulated over windows (DESIGN §7).

Every score averages over *scored cells*: cells where the truth and all input frames are valid.
MSE and MAE are pooled over all scored cells of a lead (units², units); SSIM is the mean over
windows of the SSIM map averaged over the scored cells of each (window, lead); CSI counts
hits / misses / false alarms (forecast and truth ≥ threshold) over all windows, then divides, and
the frequency bias (hits + false alarms) / (hits + misses) from the same counts says whether a
forecaster paints too little (< 1: damped intensities) or too much (> 1) above the threshold.
Forecasts may be NaN outside coverage (never a scored cell).
"""
from __future__ import annotations

import cv2
import numpy as np


def ssim_map(forecast: np.ndarray, truth: np.ndarray, data_range: float) -> np.ndarray:
    """Structural similarity map of two (H, W) images, Gaussian window σ = 1.5 (Wang et al. 2004)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    blur = lambda image: cv2.GaussianBlur(image, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    x, y = forecast.astype(np.float64), truth.astype(np.float64)
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


class ForecastScores:
    """Accumulates scores of (T_out, C, H, W) forecasts, physical units, one window at a time.

    Parameters
    ----------
    t_out : number of lead times.
    thresholds : CSI thresholds in the data's units (e.g. dBZ); empty for no CSI.
    data_range : SSIM dynamic range L in the data's units.
    """

    def __init__(self, t_out: int, thresholds: tuple[float, ...], data_range: float) -> None:
        self.thresholds, self.data_range = tuple(thresholds), float(data_range)
        self.squared = np.zeros(t_out)
        self.absolute = np.zeros(t_out)
        self.cells = np.zeros(t_out)
        self.ssim_sum = np.zeros(t_out)
        self.ssim_count = np.zeros(t_out)
        self.contingency = np.zeros((len(self.thresholds), t_out, 3))  # hits, misses, false alarms

    def update(self, forecast: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> None:
        """forecast, truth (T_out, C, H, W) physical units; valid (T_out, C, H, W) bool."""
        if forecast.shape != truth.shape or truth.shape != valid.shape:
            raise ValueError(f"shapes differ: forecast {forecast.shape}, truth {truth.shape}, valid {valid.shape}")
        forecast = np.where(np.isnan(forecast), truth, forecast)     # no coverage: never scored, keeps SSIM finite
        error = np.where(valid, forecast - truth, 0.0)
        self.squared += (error**2).sum(axis=(1, 2, 3))
        self.absolute += np.abs(error).sum(axis=(1, 2, 3))
        self.cells += valid.sum(axis=(1, 2, 3))
        for lead in range(forecast.shape[0]):
            for channel in range(forecast.shape[1]):
                mask = valid[lead, channel]
                if mask.any():
                    score = ssim_map(forecast[lead, channel], truth[lead, channel], self.data_range)
                    self.ssim_sum[lead] += score[mask].mean()
                    self.ssim_count[lead] += 1
        for i, threshold in enumerate(self.thresholds):
            predicted, observed = (forecast >= threshold) & valid, (truth >= threshold) & valid
            self.contingency[i, :, 0] += (predicted & observed).sum(axis=(1, 2, 3))
            self.contingency[i, :, 1] += (~predicted & observed).sum(axis=(1, 2, 3))
            self.contingency[i, :, 2] += (predicted & ~observed).sum(axis=(1, 2, 3))

    def result(self) -> dict[str, list[float] | float]:
        """Per-lead lists and their means: mse, mae, ssim, csi@<threshold>, bias@<threshold>."""
        cells = np.maximum(self.cells, 1)
        per_lead = {
            "mse": self.squared / cells,
            "mae": self.absolute / cells,
            "ssim": self.ssim_sum / np.maximum(self.ssim_count, 1),
        }
        for i, threshold in enumerate(self.thresholds):
            hits, misses, false_alarms = self.contingency[i].T
            per_lead[f"csi@{threshold:g}"] = hits / np.maximum(hits + misses + false_alarms, 1)
            per_lead[f"bias@{threshold:g}"] = (hits + false_alarms) / np.maximum(hits + misses, 1)
        out: dict[str, list[float] | float] = {}
        for name, values in per_lead.items():
            out[name] = [float(v) for v in values]
            out[f"{name}_mean"] = float(np.mean(values))
        out["scored_cells"] = float(self.cells.sum())
        return out
