"""Dyna-Pruner: a backbone that refines a coarse forecast under per-sample data and model masks.

base = fallback + coarse([X, fallback]) everywhere (the cheap coarse path, :mod:`.coarse`; without
one, base = fallback), forecast = base + M_data ⊙ backbone([X, base]): pruned tiles take the coarse
forecast (on radar the advected last frame plus the coarse correction, elsewhere the persisted one
plus it) in training and inference alike (DESIGN §2, §7). A coarse path with ``context`` channels
adds its context features to the backbone's input ([X, base, context]), so a kept tile is refined
knowing its surroundings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..backbones import create_backbone
from .coarse import CoarsePath
from .context import MaskContext
from .generator import MaskGenerator
from .masks import ContentBudget, covered_tiles, fail_tiles
from .norm import NormLevels, write_statistics
from .policies import GATE_MODES, MaskRequest, get_policy

NORM_STATISTICS = ("active", "all")


@dataclass
class Prediction:
    """One forward pass.

    forecast : (B, T_out, C, H, W) normalised.  importance_map : S (B, 1, H, W).
    unit_importance : I (B, units).  masks : the MaskContext it ran under.
    base : (B, T_out, C, H, W) normalised, what pruned tiles take (fallback + coarse path).
    """

    forecast: torch.Tensor
    importance_map: torch.Tensor
    unit_importance: torch.Tensor
    masks: MaskContext
    base: torch.Tensor


class DynaPruner(nn.Module):
    """Backbone + mask generator + fallback blending.

    Parameters
    ----------
    backbone : registered backbone name.  t_in, t_out, channels : window shape.
    backbone_kwargs : extra builder arguments (widths, blocks, ...).
    generator_hidden, generator_reduction : mask generator size.
    gate_mode : "topk" (any-sparsity training, exact budgets) or "threshold" (learnable τ per group).
    unit_pooling : "importance" (unit importance pooled with S: shared S) or "uniform" (ablation).
    norm_statistics : "active" (training BatchNorm statistics over the kept tiles and channels,
        :mod:`dyna_stream.model.norm`) or "all" (over the whole batch, as plain BatchNorm).
    coverage_input : the mask generator reads the coverage map (where the input has measurements).
        Whatever this says, a tile without a measured cell is never kept when coverage is passed.
    coarse : CoarsePath arguments (factor, width, blocks, dilation, context) or None (pruned tiles take
        the bare fallback: checkpoints from before the coarse path). The factor must divide the tile
        size; ``context`` > 0 needs a backbone that reads extra input channels (SimVP, TAU).
    seasonal_frames : frames read after the T_in recent ones (the frames one period before each
        target, :mod:`dyna_stream.data.seasonal`); the backbone and the coarse path see all
        ``input_frames`` = T_in + seasonal_frames, the mask generator the recent ones.
    """

    def __init__(self, *, backbone: str, t_in: int, t_out: int, channels: int,
                 backbone_kwargs: dict[str, Any] | None = None, generator_hidden: int = 16,
                 generator_reduction: int = 4, gate_mode: str = "topk", unit_pooling: str = "importance",
                 norm_statistics: str = "active", coverage_input: bool = True,
                 coarse: dict[str, int] | None = None, seasonal_frames: int = 0) -> None:
        super().__init__()
        if gate_mode not in GATE_MODES:
            raise ValueError(f"gate_mode must be one of {GATE_MODES}, not {gate_mode!r}")
        if norm_statistics not in NORM_STATISTICS:
            raise ValueError(f"norm_statistics must be one of {NORM_STATISTICS}, not {norm_statistics!r}")
        self.t_in, self.t_out, self.channels, self.gate_mode = t_in, t_out, channels, gate_mode
        self.input_frames = t_in + seasonal_frames
        self.norm_statistics = norm_statistics
        self.norm_levels: NormLevels | None = None
        self.loaded_norm_level: int | None = None     # the level whose statistics the BatchNorms hold
        context = 0 if coarse is None else coarse.get("context", 0)
        self.backbone = create_backbone(backbone, t_in=self.input_frames, t_out=t_out, channels=channels,
                                        **(backbone_kwargs or {}), **({"context": context} if context else {}))
        units = sum(self.backbone.groups.values())
        self.generator = MaskGenerator(channels=channels, units=units, hidden=generator_hidden,
                                       reduction=generator_reduction, pooling=unit_pooling,
                                       coverage_input=coverage_input)
        self.coarse = (None if coarse is None
                       else CoarsePath(t_in=self.input_frames, t_out=t_out, channels=channels, **coarse))
        if self.coarse is not None and self.tile_size % self.coarse.factor:
            raise ValueError(f"the coarse path's factor {self.coarse.factor} must divide the tile size "
                             f"{self.tile_size}")
        self.thresholds = nn.Parameter(torch.full((len(self.backbone.groups),), 0.5))
        for name, size in self.backbone.groups.items():
            self.register_buffer(f"static_gate_{name}", torch.ones(size))

    @property
    def tile_size(self) -> int:
        return self.backbone.tile_size

    @property
    def fine_input_channels(self) -> int:
        """Channels of the backbone's input (see :meth:`start`): the frames, the base, any context."""
        context = 0 if self.coarse is None else self.coarse.context
        return (self.input_frames + self.t_out) * self.channels + context

    def static_gates(self) -> dict[str, torch.Tensor]:
        """The fixed (MP) channel gates, group → (1, C)."""
        return {name: getattr(self, f"static_gate_{name}")[None] for name in self.backbone.groups}

    def set_static_gates(self, gates: dict[str, torch.Tensor]) -> None:
        for name, gate in gates.items():
            getattr(self, f"static_gate_{name}").copy_(gate)

    def batchnorms(self) -> list[nn.BatchNorm2d]:
        """The backbone's BatchNorms, in module order (the order of :class:`NormLevels` statistics)."""
        return [m for m in self.backbone.modules() if isinstance(m, nn.BatchNorm2d)]

    def set_norm_levels(self, levels: NormLevels | None) -> None:
        """Calibrated BatchNorm statistics per model-sparsity level (None: the training statistics)."""
        self.norm_levels, self.loaded_norm_level = levels, None

    def use_norm_level(self, model_sparsity: float) -> None:
        """At inference with calibrated levels, load the statistics of the level nearest to sw."""
        if self.norm_levels is None or self.backbone.training:
            return
        level = self.norm_levels.nearest(model_sparsity)
        if level != self.loaded_norm_level:
            write_statistics(self.batchnorms(), self.norm_levels.stats[level])
            self.loaded_norm_level = level

    def select_masks(self, frames: torch.Tensor, fallback: torch.Tensor, *, data_sparsity: float = 0.0,
                     model_sparsity: float = 0.0, policy: str = "dyna", mask_failure: float = 0.0,
                     coverage: torch.Tensor | None = None, content_budget: ContentBudget | None = None,
                     sync_free: bool = False) -> tuple[torch.Tensor, torch.Tensor, MaskContext]:
        """Run the mask generator and the policy: S (B, 1, H, W), I (B, units) and the masks.
        ``mask_failure``: share of the kept tiles flipped to pruned at random (robustness tests).
        ``coverage`` (B, 1, H, W) {0, 1}: where the input has measurements (None: everywhere); S is 0
        and no tile is kept outside it. ``content_budget``: the tiles kept follow S's threshold, at
        most as many as top-k at sd (see :class:`~.masks.ContentBudget`). With calibrated norm
        levels, loads the BatchNorm statistics of this point's sw. ``sync_free``: choose them without a
        host sync (for static-shape and graphed execution, :mod:`dyna_stream.sparse.static`)."""
        self.use_norm_level(0.0 if policy == "dense" else model_sparsity)
        recent = frames[:, :self.t_in]
        importance_map, unit_importance = self.generator(self.generator.summarise(recent, fallback, coverage))
        covered = None
        if coverage is not None:
            importance_map = importance_map * coverage.to(importance_map.dtype)
            covered = covered_tiles(coverage, self.tile_size)
        masks = get_policy(policy)(MaskRequest(
            importance_map, unit_importance, data_sparsity, model_sparsity, self.tile_size,
            self.backbone.groups, self.thresholds, self.static_gates(), self.gate_mode, covered, content_budget,
            sync_free))
        if mask_failure > 0:
            masks = MaskContext(fail_tiles(masks.tiles, mask_failure), masks.gates)
        return importance_map, unit_importance, masks

    def base(self, frames: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
        """What every tile starts from (B, T_out, C, H, W): the fallback plus the coarse path's
        correction (the fallback itself without a coarse path)."""
        return self.start(frames, fallback)[0]

    def start(self, frames: torch.Tensor, fallback: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The base (see :meth:`base`) and the fine path's input as its channel parts, each
        (B, C_i, H, W): the frames, the base and, with a context-giving coarse path, its context."""
        if self.coarse is None:
            base, context = fallback, None
        else:
            correction, context = self.coarse.run(torch.cat([frames.flatten(1, 2), fallback.flatten(1, 2)], dim=1))
            base = fallback + correction.reshape(fallback.shape)
        parts = [frames.flatten(1, 2), base.flatten(1, 2)]
        return base, parts if context is None else [*parts, context]

    def coarse_macs(self, height: int, width: int) -> int:
        """The coarse path's MACs for one H × W sample (0 without one)."""
        return 0 if self.coarse is None else self.coarse.macs(height, width)

    def forward(self, frames: torch.Tensor, fallback: torch.Tensor, *, data_sparsity: float = 0.0,
                model_sparsity: float = 0.0, policy: str = "dyna", mask_failure: float = 0.0,
                coverage: torch.Tensor | None = None, content_budget: ContentBudget | None = None) -> Prediction:
        """frames (B, input_frames, C, H, W): the T_in recent frames, then any seasonal ones; fallback
        (B, T_out, C, H, W); normalised; H, W multiples of tile_size;
        coverage (B, 1, H, W) {0, 1} or None, content_budget (see :meth:`select_masks`)."""
        importance_map, unit_importance, masks = self.select_masks(
            frames, fallback, data_sparsity=data_sparsity, model_sparsity=model_sparsity, policy=policy,
            mask_failure=mask_failure, coverage=coverage, content_budget=content_budget)
        masks.active_statistics = self.backbone.training and self.norm_statistics == "active"
        base, inputs = self.start(frames, fallback)
        correction = self.backbone(masks.concat(inputs), masks)
        return Prediction(base + correction.reshape(base.shape), importance_map, unit_importance, masks, base)

    def macs(self, prediction: Prediction) -> torch.Tensor:
        """MACs per sample (B,): the backbone's for the kept tiles and channels of ``prediction`` plus
        the coarse path's (which runs everywhere)."""
        batch, height, width = prediction.forecast.shape[0], *prediction.forecast.shape[-2:]
        return (self.backbone.macs(prediction.masks, batch, prediction.forecast.device)
                + self.coarse_macs(height, width))
