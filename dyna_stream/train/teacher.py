"""Starting a run from another checkpoint, and distilling a dense forecast into the sub-networks.

``train.init_from`` copies a checkpoint's weights into the new model (a fine-tune, or a Dyna-Pruner
that starts from its dense model); ``train.distill_weight`` pulls each sampled sub-network's
forecast toward a dense forecast: a frozen teacher's (the init_from model) or, with
``train.sandwich``, the model's own dense path of the same step (in-place distillation, as in
slimmable networks). Measured on taxi-nyc SimVP, none of them brought the pruned points nearer the
separately trained dense model (docs/results.md); they are options, off by default.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError
from ..model.checkpoint import load_checkpoint
from ..model.dynapruner import DynaPruner, Prediction
from ..model.loss import TaskObjective

log = logging.getLogger(__name__)


def start_from(model: DynaPruner, path: str | Path, *, dataset: str) -> DynaPruner:
    """Copy into ``model`` the weights of checkpoint ``path`` whose names and shapes match; returns
    that checkpoint's model (eval mode, gradients off), the teacher of :class:`Distillation`.
    Raises ConfigError when the checkpoint is of another data set or shares no weight."""
    source = load_checkpoint(path)
    if source.dataset != dataset:
        raise ConfigError(f"train.init_from={path} was trained on {source.dataset}, this run is on {dataset}")
    own = model.state_dict()
    matching = {name: value for name, value in source.model.state_dict().items()
                if name in own and own[name].shape == value.shape}
    if not matching:
        raise ConfigError(f"train.init_from={path}: no weight matches this model (another backbone or size?)")
    model.load_state_dict(matching, strict=False)
    log.info("started from %s: %d of %d tensors", path, len(matching), len(own))
    teacher = source.model.eval()
    teacher.requires_grad_(False)
    return teacher


@dataclass
class Distillation:
    """weight · task objective(forecast, a dense forecast) over the valid cells: the frozen
    ``teacher``'s, or (teacher None) the model's own dense path of the same step (in-place)."""

    teacher: DynaPruner | None
    weight: float

    def to(self, device: torch.device) -> Distillation:
        if self.teacher is not None:
            self.teacher.to(device)
        return self

    def loss(self, forecast: torch.Tensor, batch: dict, objective: TaskObjective,
             dense: Prediction | None = None) -> torch.Tensor:
        """forecast (B, T_out, C, H, W) normalised; batch: the training batch it was made from;
        dense: the model's dense-path prediction on it (needed without a teacher)."""
        if self.teacher is None:
            if dense is None:
                raise ValueError("in-place distillation needs the step's dense-path prediction (train.sandwich)")
            soft = dense.forecast.detach()
        else:
            with torch.no_grad():
                soft = self.teacher(batch["frames"], batch["fallback"], coverage=batch["coverage"],
                                    policy="dense").forecast
        return self.weight * objective.per_sample(forecast, soft, batch["valid"]).mean()
