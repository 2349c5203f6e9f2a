"""The paper's tables, measured: each function trains what it needs through the lab and returns rows.

Table I    every backbone × data set: dense, MP (L1, same executed MACs), random and Dyna-Pruner at
           the Dyna-Pruner checkpoint's default point sd = sw (chosen on validation; else the
           suite's point), plus Dyna-Pruner at the Pareto points, and the classical baselines
           (persistence, the fallback, the seasonal copies of periodic data).
Table II   robustness: Gaussian input noise and mask failures, dense vs random vs Dyna-Pruner.
Table III  sensitivity over (sd, sw): the any-sparsity checkpoint vs one trained at each fixed point.
Table IV   ablation: data mask only, model mask only, independent masks (no shared S), full.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from ..data.registry import get_dataset
from ..evaluate.runner import SEASONAL, Operating
from ..model.checkpoint import Checkpoint
from .lab import Lab, Trained

log = logging.getLogger(__name__)
EXTRAPOLATION_LABELS = {"persistence": "persistence", "advection": "optical-flow advection"}


@dataclass(frozen=True)
class Combo:
    dataset: str
    backbone: str


@dataclass
class ComboModels:
    """The checkpoints of one combination and the point sd = sw its Table I rows run at."""

    dense: Trained
    dyna: Trained
    mp: Trained
    point: float


def combo_models(lab: Lab, combo: Combo) -> ComboModels:
    dense = lab.dense(combo.dataset, combo.backbone)
    dyna = lab.pruner(combo.dataset, combo.backbone, "dyna")
    point = table_point(lab, dyna)
    return ComboModels(dense, dyna, lab.mp(combo.dataset, combo.backbone, dense, dyna, point), point)


def table_point(lab: Lab, dyna: Trained) -> float:
    """The Dyna-Pruner checkpoint's default point (chosen on validation) when the suite uses it and
    the checkpoint records one with sd = sw, else the suite's ``point``."""
    recorded = dyna.checkpoint.default_point
    if lab.suite.use_default_point and recorded is not None and recorded.data_sparsity == recorded.model_sparsity:
        return recorded.data_sparsity
    return lab.suite.point


def main_table(lab: Lab, combo: Combo, models: ComboModels) -> dict:
    """Table I rows (and the Pareto points) of one backbone on one data set."""
    point = models.point
    entries = [("dense", "dense", models.dense, Operating("dense")),
               ("MP", "MP (L1, fine-tuned)", models.mp, Operating("static")),
               ("random", f"random sd=sw={point:g}", models.dyna, Operating("random", point, point)),
               ("dyna", f"Dyna-Pruner sd=sw={point:g}", models.dyna, Operating("dyna", point, point))]
    rows = []
    for kind, label, trained, operating in entries:
        rows.append({"kind": kind, "label": label, "train_seconds": trained.train_seconds,
                     **lab.measure(combo.dataset, trained, operating)})
        log.info("%s/%s %-28s MSE %.4g  %.3f GMACs  %.2f ms", combo.dataset, combo.backbone, label,
                 rows[-1]["mse"], rows[-1]["gmacs"], rows[-1]["latency_ms"])
    pareto = [{"kind": "dyna", "label": f"Dyna-Pruner sd=sw={s:g}",
               **lab.measure(combo.dataset, models.dyna, Operating("dyna", s, s))}
              for s in lab.suite.pareto_points if s != point]
    return {"dataset": combo.dataset, "backbone": combo.backbone, "point": point, "rows": rows, "pareto": pareto,
            "baselines": baselines(lab, combo.dataset, models.dense.checkpoint)}


def baselines(lab: Lab, dataset: str, like: Checkpoint) -> list[dict]:
    """Persistence, the data set's fallback when it differs, and its seasonal copies on the test split."""
    spec = get_dataset(dataset)
    methods = [(name, EXTRAPOLATION_LABELS[name]) for name in dict.fromkeys(("persistence", spec.fallback))]
    methods += [(f"{SEASONAL}{name}", f"seasonal copy (a {name} before)") for name, _ in spec.periods]
    return [{"method": method, "label": label, **lab.baseline(dataset, method, like)} for method, label in methods]


def robustness_table(lab: Lab, combo: Combo, models: ComboModels) -> dict:
    """Table II: test MSE under input noise σ (normalised) and mask failures (share of kept tiles)."""
    point, plan = models.point, lab.suite.robustness
    forecasters = [("dense", models.dense, Operating("dense")),
                   ("random", models.dyna, Operating("random", point, point)),
                   ("dyna", models.dyna, Operating("dyna", point, point))]
    rows = []
    for kind, trained, operating in forecasters:
        def mse(trained=trained, operating=operating, **change) -> float:
            return lab.measure(combo.dataset, trained, replace(operating, **change), timed=False)["mse"]
        rows.append({"kind": kind, "clean": mse(),
                     "noise": {str(s): mse(input_noise=s) for s in plan.noise},
                     "mask_failure": ({str(f): mse(mask_failure=f) for f in plan.mask_failure}
                                      if kind != "dense" else {})})
    return {"dataset": combo.dataset, "backbone": combo.backbone, "rows": rows}


def sensitivity_table(lab: Lab, combo: Combo, models: ComboModels) -> dict:
    """Table III: each (sd, sw) from the any-sparsity checkpoint and from one trained at that point."""
    rows = []
    for sd, sw in lab.suite.sensitivity_points:
        fixed = lab.pruner(
            combo.dataset, combo.backbone, f"fixed-{sd:g}-{sw:g}", f"train.sparsity_range=[{sd}, {sd}]",
            f"train.model_sparsity_range=[{sw}, {sw}]", f"train.validation_sparsity={sd}",
            f"train.validation_model_sparsity={sw}")
        operating = Operating("dyna", sd, sw)
        rows.append({"data_sparsity": sd, "model_sparsity": sw,
                     "any": lab.measure(combo.dataset, models.dyna, operating),
                     "fixed": {**lab.measure(combo.dataset, fixed, operating), "train_seconds": fixed.train_seconds}})
    return {"dataset": combo.dataset, "backbone": combo.backbone, "rows": rows}


def ablation_table(lab: Lab, combo: Combo, models: ComboModels) -> dict:
    """Table IV: every variant trained like the full model (same budget), scored at its masks' point."""
    point = lab.suite.point
    low, high = models.dyna.checkpoint.config.train.sparsity_range
    variants = [
        ("DP-only", "dp-only", (point, 0.0),
         ("train.model_sparsity_range=[0.0, 0.0]", "train.validation_model_sparsity=0.0")),
        ("MP-only", "mp-only", (0.0, point),
         ("train.sparsity_range=[0.0, 0.0]", "train.validation_sparsity=0.0",
          f"train.model_sparsity_range=[{low}, {high}]", f"train.validation_model_sparsity={point}")),
        ("independent DP+MP (no shared S)", "independent", (point, point), ("model.unit_pooling=uniform",)),
    ]
    rows = [{"label": "dense", **lab.measure(combo.dataset, models.dense, Operating("dense"))}]
    for label, variant, (sd, sw), overrides in variants:
        trained = lab.pruner(combo.dataset, combo.backbone, variant, *overrides)
        rows.append({"label": label, **lab.measure(combo.dataset, trained, Operating("dyna", sd, sw))})
    rows.append({"label": "full Dyna-Pruner", **lab.measure(combo.dataset, models.dyna,
                                                            Operating("dyna", point, point))})
    return {"dataset": combo.dataset, "backbone": combo.backbone, "rows": rows}
