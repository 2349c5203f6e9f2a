"""The unified training loss: task + λd·mean(S) + λw·mean(I) (+ a budget term for threshold gates).

The task term is the MSE over valid cells, or (``TaskObjective``) an intensity-weighted MSE + MAE
in the spirit of the TrajGRU benchmark's B-MSE/B-MAE (Shi et al. 2017): each cell weighs by the
intensity of its truth, so damping a storm costs more than painting a little rain where there is
none — the MSE optimum on uncertain futures is a blurred, damped forecast (low frequency bias).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .dynapruner import Prediction


@dataclass(frozen=True)
class TaskObjective:
    """The task term. ``mae``: add the MAE to the MSE. ``thresholds`` (ascending, normalised units)
    and ``weights``: a cell whose truth is at or above ``thresholds[k]`` weighs ``weights[k]`` (the
    last one it reaches), others 1; the terms are weighted means over valid cells."""

    mae: bool = False
    thresholds: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()

    def cell_weights(self, target: torch.Tensor) -> torch.Tensor | None:
        """(B, T, C, H, W) weights from the truth, or None (all 1)."""
        if not self.thresholds:
            return None
        weight = torch.ones_like(target)
        for threshold, value in zip(self.thresholds, self.weights):
            weight = torch.where(target >= threshold, torch.full_like(target, value), weight)
        return weight

    def per_sample(self, forecast: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B,) task loss of each sample over its valid cells."""
        weight = valid.to(forecast.dtype)
        cell = self.cell_weights(target)
        if cell is not None:
            weight = weight * cell
        error = forecast - target
        total = error.square()
        if self.mae:
            total = total + error.abs()
        return (total * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1.0)


MSE = TaskObjective()


@dataclass(frozen=True)
class LossWeights:
    data: float = 1e-3     # λd on mean(S)
    model: float = 1e-3    # λw on mean(I)
    budget: float = 1.0    # pulls kept fractions toward (1 − sparsity) under threshold gates


def masked_mse_per_sample(forecast: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B,) MSE over each sample's valid cells; (B, T, C, H, W) tensors."""
    return MSE.per_sample(forecast, target, valid)


def masked_mse(forecast: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
               sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """MSE over valid cells; (B, T, C, H, W) tensors, optional per-sample weights (B,)."""
    per_sample = masked_mse_per_sample(forecast, target, valid)
    if sample_weight is not None:
        per_sample = per_sample * sample_weight
    return per_sample.mean()


def dyna_loss(prediction: Prediction, target: torch.Tensor, valid: torch.Tensor, *, weights: LossWeights,
              model_sparsity: float, gate_mode: str, sample_weight: torch.Tensor | None = None,
              objective: TaskObjective = MSE) -> tuple[torch.Tensor, dict]:
    """Total loss and its parts (floats, for logging; "per_sample": each sample's unweighted task
    loss, for sample pruning). ``sample_weight`` (B,) weights the task term per sample."""
    per_sample = objective.per_sample(prediction.forecast, target, valid)
    task = (per_sample if sample_weight is None else per_sample * sample_weight).mean()
    sparsity = weights.data * prediction.importance_map.mean() + weights.model * prediction.unit_importance.mean()
    budget = torch.zeros((), device=task.device)
    if gate_mode == "threshold" and prediction.masks.gates:
        kept = torch.stack([gate.mean() for gate in prediction.masks.gates.values()])
        budget = weights.budget * ((kept - (1.0 - model_sparsity)) ** 2).mean()
    total = task + sparsity + budget
    return total, {"task": task.item(), "sparsity": sparsity.item(), "budget": budget.item(),
                   "per_sample": per_sample.detach().tolist()}
