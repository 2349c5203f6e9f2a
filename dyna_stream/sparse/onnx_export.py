"""ONNX export of the dense forecaster (the fallback path for TensorRT / onnxruntime users).

The exported graph takes normalised, tile-padded inputs and returns the normalised forecast:
frames (1, T_in, C, H, W), fallback (1, T_out, C, H, W) → forecast (1, T_out, C, H, W).
Masks are data-dependent gathers that ONNX runtimes do not accelerate, so the export is the
dense model; sparse execution stays in PyTorch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import write_with
from ..model.context import MaskContext
from ..model.dynapruner import DynaPruner


class DenseForecaster(nn.Module):
    """The dense path of a DynaPruner (coarse path included) as a plain two-input module."""

    def __init__(self, model: DynaPruner) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
        base, inputs = self.model.start(frames, fallback)
        correction = self.model.backbone(torch.cat(inputs, dim=1), MaskContext())
        return base + correction.reshape(base.shape)


def export_onnx(model: DynaPruner, path: str | Path, *, height: int, width: int, opset: int = 17) -> Path:
    """Write the dense forecaster for (height, width) inputs (multiples of the tile size) to ``path``."""
    module = DenseForecaster(model.eval())
    example = (torch.zeros(1, model.input_frames, model.channels, height, width),
               torch.zeros(1, model.t_out, model.channels, height, width))
    write_with(path, lambda tmp: torch.onnx.export(
        module, example, str(tmp), input_names=["frames", "fallback"], output_names=["forecast"],
        opset_version=opset, dynamo=False))
    return Path(path)


def onnx_parity(model: DynaPruner, path: str | Path, frames: torch.Tensor, fallback: torch.Tensor) -> float:
    """Max |onnxruntime − torch| on the given inputs (normalised units)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = DenseForecaster(model.eval())(frames, fallback).detach().numpy()
    actual = session.run(["forecast"], {"frames": frames.numpy(), "fallback": fallback.numpy()})[0]
    return float(np.abs(actual - expected).max())
