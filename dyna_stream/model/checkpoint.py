"""Checkpoints that carry everything needed to use them: config, normalisation, metrics, version.

Saved with torch.save as a plain dict of tensors and builtins, loaded with
``torch.load(weights_only=True)``; loading validates the format and rebuilds the model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..atomic import write_with
from ..config import ModelConfig, RunConfig
from ..data.normalise import Normaliser
from ..data.registry import DATASETS, DatasetSpec, dataset_for, get_dataset, load_parts
from ..data.seasonal import SEASONAL, Periods, longest
from ..data.series import Series
from ..data.windows import ConcatWindows, WindowDataset, window_set
from ..errors import CheckpointError, ConfigError
from .dynapruner import DynaPruner
from .norm import NormLevels
from .operating_point import FALLBACK_POINT, DefaultPoint

FORMAT = "dyna_stream.checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A model with what it was trained on and how it scored."""

    model: DynaPruner
    config: RunConfig
    normaliser: Normaliser
    dataset: str
    t_in: int
    t_out: int
    fill_value: float
    metrics: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    version: str = __version__
    training_state: dict[str, Any] = field(default_factory=dict)
    pixel_km: float | None = None          # the grid it was trained at (None: not a map, or unknown)
    step_minutes: float | None = None      # minutes between its frames (None: unknown)
    default_point: DefaultPoint | None = None   # chosen on validation (None: written before it was recorded)
    periods: Periods = ()                  # its data set's (name, frames) cycles when it was trained

    @property
    def seasonal_inputs(self) -> bool:
        """Whether the model reads the frames one period before each target (ST-ResNet's period)."""
        return self.config.model.seasonal

    @property
    def fallback(self) -> str:
        """What pruned tiles start from: the model's own choice, else its data set's."""
        return fallback_name(self.config.model, DATASETS.get(self.dataset))

    @property
    def input_frames(self) -> int:
        """Frames a forecast needs, the latest last: T_in, or for a seasonal model the longest
        period (its seasonal frames lie that far back)."""
        return max(self.t_in, longest(self.periods)) if self.seasonal_inputs else self.t_in

    @property
    def operating_point(self) -> tuple[float, float]:
        """(sd, sw) to run at unless told otherwise: the recorded default point, else FALLBACK_POINT."""
        if self.default_point is None:
            return FALLBACK_POINT
        return self.default_point.data_sparsity, self.default_point.model_sparsity


def fallback_name(config: ModelConfig, spec: DatasetSpec | None) -> str:
    """The forecast pruned tiles start from: ``model.fallback``, else the data set's (else persistence)."""
    return config.fallback or (spec.fallback if spec is not None else "persistence")


def build_model(config: ModelConfig, *, t_in: int, t_out: int, channels: int, periods: Periods = ()) -> DynaPruner:
    """The model ``config`` describes for windows of T_in → T_out frames of ``channels``; a seasonal
    model reads the frames one period of ``periods`` (its data set's) before each target too."""
    if config.seasonal and not periods:
        raise ConfigError("model.seasonal needs a data set with periods (taxi-nyc: day and week; era5-t2m: day)")
    if (config.fallback or "").startswith(SEASONAL):
        if not config.seasonal:
            raise ConfigError(f"model.fallback={config.fallback} reads one period back: set model.seasonal=true too")
        if config.fallback.removeprefix(SEASONAL) not in dict(periods):
            raise ConfigError(f"model.fallback={config.fallback}: the data set's periods are {dict(periods)}")
    return DynaPruner(backbone=config.backbone, t_in=t_in, t_out=t_out, channels=channels,
                      seasonal_frames=len(periods) * t_out if config.seasonal else 0,
                      backbone_kwargs=config.backbone_kwargs, generator_hidden=config.generator_hidden,
                      generator_reduction=config.generator_reduction, gate_mode=config.gate_mode,
                      unit_pooling=config.unit_pooling, norm_statistics=config.norm_statistics,
                      coverage_input=config.coverage_input,
                      coarse=None if config.coarse is None else config.coarse.model_dump())


def split_windows(checkpoint: Checkpoint, split: str, data_root: str | Path | None = None
                  ) -> WindowDataset | ConcatWindows:
    """The windows of ``checkpoint``'s data set split ("train", "val", "test") as it sees them: its
    own normalisation, window and tile padding (``data_root`` None: the one it was trained with)."""
    spec = get_dataset(checkpoint.dataset)
    root = data_root if data_root is not None else checkpoint.config.data.root
    return checkpoint_windows(checkpoint, load_parts(spec.name, split, root), spec)


def checkpoint_windows(checkpoint: Checkpoint, parts: list[Series], spec: DatasetSpec
                       ) -> WindowDataset | ConcatWindows:
    """The windows of ``parts`` (series of ``spec``) as ``checkpoint`` sees them: its normalisation,
    tile padding, fallback and, for a seasonal model, the seasonal frames in its inputs; ``spec``'s
    window shape and periods (seasonal baselines read them)."""
    return window_set(parts, t_in=spec.t_in, t_out=spec.t_out, normaliser=checkpoint.normaliser,
                      fallback=checkpoint.fallback, multiple=checkpoint.model.tile_size, periods=spec.periods,
                      seasonal_inputs=checkpoint.seasonal_inputs)


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Write atomically: a crash leaves the previous file intact."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": checkpoint.version,
        "config": checkpoint.config.model_dump(mode="json"),
        "normaliser": checkpoint.normaliser.to_dict(),
        "dataset": checkpoint.dataset,
        "window": [checkpoint.t_in, checkpoint.t_out, checkpoint.model.channels],
        "fill_value": checkpoint.fill_value,
        "metrics": checkpoint.metrics,
        "step": checkpoint.step,
        "state_dict": checkpoint.model.state_dict(),
        "norm_levels": None if checkpoint.model.norm_levels is None else checkpoint.model.norm_levels.to_payload(),
        "training_state": checkpoint.training_state,
        "grid": {"pixel_km": checkpoint.pixel_km, "step_minutes": checkpoint.step_minutes},
        "default_point": None if checkpoint.default_point is None else checkpoint.default_point.to_dict(),
        "periods": [[name, frames] for name, frames in checkpoint.periods],
    }
    write_with(path, lambda tmp: torch.save(payload, tmp))


def _with_legacy_defaults(config: dict) -> dict:
    """Fields added after a checkpoint was written take the value its training really used."""
    legacy = {"model": {"norm_statistics": "all", "coverage_input": False, "coarse": None},
              "train": {"calibrate_norm": False}}
    for section, defaults in legacy.items():
        values = config.get(section) if isinstance(config, dict) else None
        if isinstance(values, dict):
            for key, value in defaults.items():
                values.setdefault(key, value)
    return config


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load and validate; raises CheckpointError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        # torch's own text suggests weights_only=False (running code from the file): never pass it on
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(exc).__name__}): corrupt, truncated or "
                              "not a dyna_stream file; checkpoints are read with weights_only=True, never "
                              "executed") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a dyna_stream checkpoint (no '{FORMAT}' header)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {payload.get('format_version')} is not supported "
                              f"by dyna_stream {__version__} (reads format {FORMAT_VERSION}); retrain or upgrade")
    try:
        config = RunConfig.model_validate(_with_legacy_defaults(payload["config"]))
        t_in, t_out, channels = (int(v) for v in payload["window"])
        periods = tuple((str(name), int(frames)) for name, frames in payload.get("periods", []))
        model = build_model(config.model, t_in=t_in, t_out=t_out, channels=channels, periods=periods)
        model.load_state_dict(payload["state_dict"])
        if payload.get("norm_levels") is not None:
            model.set_norm_levels(NormLevels.from_payload(payload["norm_levels"]))
        normaliser = Normaliser.from_dict(payload["normaliser"])
        fill_value = float(payload["fill_value"])
        point = payload.get("default_point")
        default_point = None if point is None else DefaultPoint.from_dict(point)
    except (KeyError, ValueError, RuntimeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: checkpoint does not match this code "
                              f"({type(exc).__name__}: {exc})") from None
    model.eval()
    if config.data.file is not None:          # trained on a user's file: its data set exists again here
        dataset_for(config.data)
    pixel_km, step_minutes = _grid(payload)
    return Checkpoint(model, config, normaliser, str(payload["dataset"]), t_in, t_out, fill_value,
                      dict(payload.get("metrics", {})), int(payload.get("step", 0)),
                      str(payload.get("version", "?")), dict(payload.get("training_state", {})),
                      pixel_km, step_minutes, default_point, periods)


def _grid(payload: dict) -> tuple[float | None, float | None]:
    """(pixel km, step minutes) the model was trained at; checkpoints written before they were
    recorded take their data set's (the registry knows every built-in one)."""
    grid = payload.get("grid")
    if isinstance(grid, dict):
        return grid.get("pixel_km"), grid.get("step_minutes")
    spec = DATASETS.get(str(payload.get("dataset")))
    return (spec.pixel_km, spec.step_minutes) if spec else (None, None)
