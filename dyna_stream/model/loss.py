"""The unified training loss: task + λd·mean(S) + λw·mean(I) (+ a budget term for threshold gates)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .dynapruner import Prediction


@dataclass(frozen=True)
class LossWeights:
    data: float = 1e-3     # λd on mean(S)
    model: float = 1e-3    # λw on mean(I)
    budget: float = 1.0    # pulls kept fractions toward (1 − sparsity) under threshold gates


def masked_mse_per_sample(forecast: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B,) MSE over each sample's valid cells; (B, T, C, H, W) tensors."""
    valid = valid.to(forecast.dtype)
    return ((forecast - target) ** 2 * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1.0)


def masked_mse(forecast: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
               sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """MSE over valid cells; (B, T, C, H, W) tensors, optional per-sample weights (B,)."""
    per_sample = masked_mse_per_sample(forecast, target, valid)
    if sample_weight is not None:
        per_sample = per_sample * sample_weight
    return per_sample.mean()


def dyna_loss(prediction: Prediction, target: torch.Tensor, valid: torch.Tensor, *, weights: LossWeights,
              model_sparsity: float, gate_mode: str, sample_weight: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, dict]:
    """Total loss and its parts (floats, for logging; "per_sample": each sample's unweighted task
    loss, for sample pruning). ``sample_weight`` (B,) weights the task term per sample."""
    per_sample = masked_mse_per_sample(prediction.forecast, target, valid)
    task = (per_sample if sample_weight is None else per_sample * sample_weight).mean()
    sparsity = weights.data * prediction.importance_map.mean() + weights.model * prediction.unit_importance.mean()
    budget = torch.zeros((), device=task.device)
    if gate_mode == "threshold" and prediction.masks.gates:
        kept = torch.stack([gate.mean() for gate in prediction.masks.gates.values()])
        budget = weights.budget * ((kept - (1.0 - model_sparsity)) ** 2).mean()
    total = task + sparsity + budget
    return total, {"task": task.item(), "sparsity": sparsity.item(), "budget": budget.item(),
                   "per_sample": per_sample.detach().tolist()}
