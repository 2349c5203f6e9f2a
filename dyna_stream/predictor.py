"""Forecast one window with a checkpoint: the call the CLI, the stream node and users share."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .data.registry import DATASETS
from .data.windows import model_input
from .errors import DataError
from .extrapolation import get_extrapolator
from .model.checkpoint import Checkpoint


@dataclass
class Forecast:
    """forecast (T_out, C, H, W) physical units; importance S (H, W) ∈ [0, 1]; kept_tiles (H, W) {0, 1};
    fallback (T_out, C, H, W) the extrapolation pruned tiles took; macs: backbone MACs executed."""

    forecast: np.ndarray
    importance: np.ndarray
    kept_tiles: np.ndarray
    fallback: np.ndarray
    macs: float


class Predictor:
    """Wraps a checkpoint at an operating point; ``sparsity`` can change between calls.

    Parameters
    ----------
    checkpoint : a loaded checkpoint.  data_sparsity, model_sparsity : sd, sw ∈ [0, 1).
    policy : "dyna" (default), "dense", "random" or "static".
    """

    def __init__(self, checkpoint: Checkpoint, *, data_sparsity: float = 0.7, model_sparsity: float = 0.7,
                 policy: str = "dyna") -> None:
        self.checkpoint, self.policy = checkpoint, policy
        self.data_sparsity, self.model_sparsity = data_sparsity, model_sparsity
        spec = DATASETS.get(checkpoint.dataset)
        self.extrapolate = get_extrapolator(spec.fallback if spec else "persistence")
        self.checkpoint.model.eval()

    @property
    def t_in(self) -> int:
        return self.checkpoint.t_in

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> Forecast:
        """frames : (T_in, C, H, W) physical units, invalid cells at the checkpoint's fill value."""
        ckpt = self.checkpoint
        expected = (ckpt.t_in, ckpt.model.channels)
        if frames.ndim != 4 or frames.shape[:2] != expected:
            raise DataError(f"input window has shape {frames.shape}; this model needs (T_in={expected[0]}, "
                            f"C={expected[1]}, H, W) — pass the latest {expected[0]} frames")
        if not np.isfinite(frames).all():
            raise DataError("input window holds NaN or infinite values; fill invalid cells with the fill value "
                            f"{ckpt.fill_value:g} {ckpt.normaliser.units}")
        frames = frames.astype(np.float32)
        fallback = self.extrapolate(frames, ckpt.t_out, ckpt.fill_value)
        multiple, fill = ckpt.model.tile_size, ckpt.fill_value
        result = self.run_normalised(model_input(frames, ckpt.normaliser, multiple, fill),
                                     model_input(fallback, ckpt.normaliser, multiple, fill), frames.shape[-2:])
        result.fallback = fallback
        return result

    @torch.no_grad()
    def run_normalised(self, frames: torch.Tensor, fallback: torch.Tensor, size: tuple[int, int]) -> Forecast:
        """Model inputs already normalised and padded, (T_in, C, Hp, Wp) and (T_out, C, Hp, Wp);
        ``size`` = the unpadded (H, W) the outputs are cropped to. ``Forecast.fallback`` stays physical
        only when set by :meth:`__call__`."""
        ckpt = self.checkpoint
        height, width = size
        prediction = ckpt.model(frames[None], fallback[None], policy=self.policy,
                                data_sparsity=self.data_sparsity, model_sparsity=self.model_sparsity)
        forecast = ckpt.normaliser.inverse(prediction.forecast[0, ..., :height, :width].numpy())
        spatial = prediction.masks.spatial(tuple(prediction.forecast.shape[-2:]))
        kept = np.ones((height, width), np.float32) if spatial is None else spatial[0, 0, :height, :width].numpy()
        return Forecast(forecast, prediction.importance_map[0, 0, :height, :width].numpy(), kept,
                        ckpt.normaliser.inverse(fallback[..., :height, :width].numpy()),
                        float(ckpt.model.macs(prediction)[0]))
