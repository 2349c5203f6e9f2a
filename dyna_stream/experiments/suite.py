"""Experiment suites: which data sets, backbones, budgets and studies reproduce the paper's tables.

A suite is a YAML file validated at load (unknown keys, data sets and backbones are refused with
the registered names); ``paper`` and ``quick`` ship with the package (``suites/``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..backbones import BACKBONES
from ..config import load_config
from ..data.registry import DATASETS
from ..errors import ConfigError

SUITES_DIR = Path(__file__).with_name("suites")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _registered(value: dict, registry: dict, what: str) -> dict:
    unknown = sorted(set(value) - set(registry))
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; choose from {sorted(registry)}")
    return value


class DatasetPlan(_Strict):
    """How every backbone trains on one data set: RunConfig overrides (``section.key=value``)."""

    overrides: list[str] = Field(default_factory=list)
    tile_latent: int = Field(4, ge=1, description="tile side in latent pixels (input tile = stride × this)")
    test_frames: int | None = Field(None, ge=2, description="score only the first N test frames (quick runs)")
    dyna_start: Literal["scratch", "dense"] | None = Field(
        None, description="this data set's Dyna-Pruner checkpoints start from scratch or from the dense model "
                          "(None: the suite's dyna_start)")
    distill_weight: float | None = Field(None, ge=0, description="with dyna_start: dense (None: the suite's)")
    backbone_overrides: dict[str, list[str]] = Field(
        default_factory=dict, description="further overrides for one backbone on this data set (after `overrides`)")

    @field_validator("backbone_overrides")
    @classmethod
    def _known_backbones(cls, value: dict) -> dict:
        return _registered(value, BACKBONES, "backbone")


class BackbonePlan(_Strict):
    kwargs: dict = Field(default_factory=dict, description="builder arguments (widths, blocks, ...)")
    steps_scale: float = Field(1.0, gt=0, description="multiplies the data set's train.steps (slow backbones)")


class Study(_Strict):
    """One (data set, backbone) pair a study runs on."""

    dataset: str
    backbone: str


class Robustness(_Strict):
    noise: list[float] = Field(default_factory=lambda: [0.01, 0.05], description="σ, normalised units")
    mask_failure: list[float] = Field(default_factory=lambda: [0.05, 0.10], description="kept tiles flipped")


class Suite(_Strict):
    name: str
    datasets: dict[str, DatasetPlan]
    backbones: dict[str, BackbonePlan]
    point: float = Field(0.7, gt=0, lt=1, description="the operating point sd = sw of Table I and II when a "
                                                       "Dyna-Pruner checkpoint records no default point (or "
                                                       "use_default_point is false)")
    use_default_point: bool = Field(True, description="Table I and II run each Dyna-Pruner checkpoint at its "
                                                      "default point (the most pruned sd = sw within 2 % of its most "
                                                      "accurate point on validation, recorded when it was trained)")
    pareto_points: list[float] = Field(default_factory=lambda: [0.3, 0.5, 0.7, 0.9])
    mp_steps_fraction: float = Field(0.25, gt=0, le=1, description="MP fine-tuning steps / training steps")
    dyna_start: Literal["scratch", "dense"] = Field(
        "scratch", description="Dyna-Pruner checkpoints (the full model, fixed points, ablations) train from scratch, "
                               "or start from the combination's dense model and distil its forecast")
    distill_weight: float = Field(1.0, ge=0, description="with dyna_start: dense, the distillation term's weight")
    robustness: Robustness = Field(default_factory=Robustness)
    sensitivity: Study | None = None
    sensitivity_points: list[tuple[float, float]] = Field(
        default_factory=lambda: [(0.5, 0.5), (0.7, 0.5), (0.7, 0.7), (0.9, 0.7), (0.9, 0.9)])
    ablation: Study | None = None
    latency_runs: int = Field(20, ge=1)
    latency_warmup: int = Field(3, ge=0)

    def start_of(self, dataset: str) -> tuple[str, float]:
        """(dyna_start, distill_weight) of ``dataset``'s Dyna-Pruner checkpoints: its own, else the suite's."""
        plan = self.datasets[dataset]
        return (plan.dyna_start or self.dyna_start,
                self.distill_weight if plan.distill_weight is None else plan.distill_weight)

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, value: dict) -> dict:
        return _registered(value, DATASETS, "data set")

    @field_validator("backbones")
    @classmethod
    def _known_backbones(cls, value: dict) -> dict:
        return _registered(value, BACKBONES, "backbone")

    @model_validator(mode="after")
    def _studies_in_suite(self) -> Suite:
        for label, study in (("sensitivity", self.sensitivity), ("ablation", self.ablation)):
            if study is not None and (study.dataset not in self.datasets or study.backbone not in self.backbones):
                raise ValueError(f"{label} runs on {study.dataset}/{study.backbone}, which the suite does not train; "
                                 f"data sets {sorted(self.datasets)}, backbones {sorted(self.backbones)}")
        return self


def bundled_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Suite:
    """A bundled suite by name (``paper``, ``quick``) or a suite YAML file, with ``key=value`` overrides."""
    path = Path(name_or_path)
    if not path.is_file():
        path = SUITES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"suite {str(name_or_path)!r} is neither a file nor a bundled suite "
                              f"({', '.join(bundled_suites())})")
    return load_config(path, overrides, schema=Suite)


def restricted(suite: Suite, datasets: list[str]) -> Suite:
    """``suite`` on ``datasets`` only (names it plans); its studies on other data sets are dropped."""
    unknown = sorted(set(datasets) - set(suite.datasets))
    if unknown:
        raise ConfigError(f"suite {suite.name} has no data set {', '.join(unknown)}; "
                          f"it runs {', '.join(suite.datasets)}")
    kept = {name: plan for name, plan in suite.datasets.items() if name in datasets}
    studies = {label: study if study is not None and study.dataset in kept else None
               for label, study in (("sensitivity", suite.sensitivity), ("ablation", suite.ablation))}
    return suite.model_copy(update={"datasets": kept, **studies})
