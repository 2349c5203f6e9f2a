"""Fold eval-mode BatchNorm into the preceding convolution: conv(x)·γ/σ + (β − μγ/σ)."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def fold_batchnorm(conv: nn.Conv2d, norm: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (C_out, C_in, k, k) and bias (C_out,) of the conv with ``norm`` folded in."""
    weight = conv.weight.detach().clone()
    bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(weight.shape[0], device=weight.device)
    if norm is None:
        return weight, bias
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return weight * scale[:, None, None, None], (bias - norm.running_mean) * scale + norm.bias
