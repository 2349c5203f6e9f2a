"""Forecast one window with a checkpoint: the call the CLI, the stream node and users share."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from .area_guard import guard_forecast
from .data.reflectivity import reflectivity_adapter
from .data.registry import DATASETS
from .data.regrid import GridAdapter, check_step, grid_factor, resample_in_time
from .data.seasonal import seasonal_frames, starting_forecast
from .data.series import Series
from .data.windows import model_input, pad_to_multiple
from .errors import ConfigError, DataError
from .model.checkpoint import Checkpoint
from .model.masks import ContentBudget
from .model.operating_point import DATA_BUDGETS
from .sparse import SparseEngine
from .sparse.blocks import BlockEngine, has_finite_radius
from .sparse.graphs import GraphedSteps

log = logging.getLogger(__name__)


def grid_adapter(checkpoint: Checkpoint, factor: int) -> GridAdapter:
    """Input grid ``factor`` times finer ↔ the checkpoint's grid: block means in linear Z for
    reflectivity, plain means otherwise."""
    return (reflectivity_adapter(factor) if checkpoint.normaliser.units == "dBZ"
            else GridAdapter(factor, checkpoint.fill_value))


def on_model_step(series: Series, checkpoint: Checkpoint, *, anchor: str = "last") -> Series:
    """``series`` at the checkpoint's time step: frames at a finer step are picked (a whole ratio: 1 or
    2.5 min into 5 min) or interpolated between two frames (2 min: linear in Z for reflectivity), counted
    from the ``anchor`` frame ("last": the newest frame stays the newest, as a forecast needs); a step up
    to 25 % coarser (BoM's 6 min) is interpolated likewise, a coarser one refused (DataError); an unknown
    step on either side is taken as the model's."""
    model_minutes, input_minutes = checkpoint.step_minutes, series.step_minutes
    if model_minutes is None or input_minutes is None or abs(input_minutes - model_minutes) < 1e-6:
        return series
    adapter = grid_adapter(checkpoint, 1)
    values, valid, positions = resample_in_time(series.values, series.valid, input_minutes, model_minutes,
                                                anchor=anchor, to_linear=adapter.to_linear,
                                                from_linear=adapter.from_linear)
    origin = series.times[0].astype("datetime64[s]")
    offsets = np.round(positions * input_minutes * 60).astype("timedelta64[s]")
    times = (origin + offsets).astype("datetime64[m]") if not np.isnat(origin) else series.times[:len(positions)]
    log.info("%s: %d frames every %g min put on the model's %g-min step (%d frames, ending at the newest)",
             series.name, len(series), input_minutes, model_minutes, len(positions))
    return replace(series, values=values, valid=valid, times=times, step_minutes=model_minutes,
                   context_frames=0)


def on_model_grid(series: Series, checkpoint: Checkpoint) -> Series:
    """``series`` on the checkpoint's grid and step: a whole factor finer is block-averaged onto it (see
    :func:`grid_adapter`), a finer step put on the model's (:func:`on_model_step`, from the first frame);
    a much coarser step, a coarser or an uneven pixel size is refused (DataError); an unknown size or step
    on either side is taken as the model's."""
    series = on_model_step(series, checkpoint, anchor="first")
    factor = grid_factor(series.pixel_km, checkpoint.pixel_km)
    if factor == 1:
        return series
    values, valid = grid_adapter(checkpoint, factor).to_model(series.values, series.valid)
    log.info("%s: %g km pixels block-averaged ×%d onto the model's %g km grid", series.name, series.pixel_km,
             factor, checkpoint.pixel_km)
    return replace(series, values=values, valid=valid, pixel_km=checkpoint.pixel_km)
# The engines (the same forecast; what runs differs): "sparse" only the kept tiles and channels
# (dynamic shapes); "graphed" the same at the operating point's fixed sizes, one CUDA graph per point
# on a GPU (dyna_stream.sparse.graphs; eagerly on a CPU); "blocks" the kept superblocks with the
# receptive field as halo through the dense layers (dyna_stream.sparse.blocks); "masked" the dense
# training graph with the masks multiplied in (no saving).
ENGINES = ("auto", "sparse", "graphed", "blocks", "masked")
# The sparse kind "auto" runs per device type: dynamic shapes pay on CPUs; on a GPU at batch 1 they
# are launch- and sync-bound (H100: 5–9 ms vs 1.4 ms dense eager, docs/results.md), graphs are not.
AUTO_ENGINE = {"cpu": "sparse", "cuda": "graphed"}
# "auto" times that engine, "masked" and, on a GPU, "blocks" (for backbones with a finite receptive
# radius) on the first window of each grid size and operating point and keeps the fastest: on tiny
# grids (taxi 16×12) the sparse engine's gathers cost more than the MACs they save, and only a
# profile says where a GPU's graphed step beats its dense one. On CPUs blocks never won
# (benchmarks/execution_strategies.py: 0.8–1.3× dense where sparse ran 2.6–10×): not timed there.
AUTO_BLOCKS = {"cpu": False, "cuda": True}
AUTO_TRIALS = 3
ENGINE_BUILDERS = {"sparse": SparseEngine, "graphed": GraphedSteps, "blocks": BlockEngine}


def resolve_device(name: str | torch.device) -> torch.device:
    """"cpu", "cuda", "cuda:N" or "auto" (the GPU when this torch build sees one, else the CPU)."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, not {name!r}") from None
    if device.type not in AUTO_ENGINE:
        raise ConfigError(f"device {name!r} is not supported; use cpu, cuda, cuda:N or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this torch build sees no CUDA GPU "
                          f"(torch {torch.__version__}); install a CUDA build of torch or use device cpu / auto")
    return device


def resolve_engine(engine: str, device: torch.device) -> str:
    """The engine that runs: ``engine`` itself, or for "auto" the one that pays on ``device``."""
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {ENGINES}, not {engine!r}")
    return AUTO_ENGINE[device.type] if engine == "auto" else engine


@dataclass
class Forecast:
    """forecast (T_out, C, H, W) physical units, NaN where the input had no measurement; importance
    S (H, W) ∈ [0, 1]; kept_tiles (H, W) {0, 1}; fallback (T_out, C, H, W) what pruned tiles took:
    the extrapolation plus the model's coarse path (NaN outside coverage too); macs: MACs executed
    (backbone and coarse path); coverage (H, W) bool: cells
    where every input frame has a measurement (False: "no data", distinct from "no echo")."""

    forecast: np.ndarray
    importance: np.ndarray
    kept_tiles: np.ndarray
    fallback: np.ndarray
    macs: float
    coverage: np.ndarray | None = None


def _checked_sparsity(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be in [0, 1) (the share pruned; 0 keeps everything), got {value:g}")
    return value


class Predictor:
    """Wraps a checkpoint at an operating point; ``sparsity`` can change between calls.

    Parameters
    ----------
    checkpoint : a loaded checkpoint.  data_sparsity, model_sparsity : sd, sw ∈ [0, 1) (None: the
        checkpoint's default point, chosen on validation; 0.7 for checkpoints without one).
    policy : "dyna" (default), "dense", "random" or "static".
    engine : one of ``ENGINES`` (see there): "sparse", "graphed", "blocks", "masked", or "auto"
        (default: the fastest of ``candidates`` on ``device`` for each grid and operating point,
        timed once, see ``AUTO_ENGINE``; ``last_engine`` and the outputs' metadata say which ran).
    device : "cpu", "cuda", "cuda:N" or "auto" (default: the GPU if there is one). The model moves
        there; inputs and outputs stay NumPy arrays on the host.
    mask_failure : share of the kept tiles flipped to pruned at random (robustness experiments only).
    input_pixel_km : the inputs' pixel size in km (None: taken as the model's). An input k times finer
        than the model's grid is block-averaged onto it (linear Z for reflectivity) and the outputs
        repeated back onto the input's cells; any other size is refused (DataError).
    input_step_minutes : minutes between the input frames (None: taken as the model's); another step
        than the model's is refused.
    data_budget : "topk" (default: exactly ⌈(1 − sd)·N⌉ tiles) or "threshold" (the tiles whose mean
        S exceeds the checkpoint's calibrated tile threshold, at most as many as top-k at sd and at
        least as many as top-k at ``max_data_sparsity``: a calm window costs less than a storm).
    max_data_sparsity : the threshold budget's lower bound on the kept share, as a sparsity.
    area_guard : pass forecasts through the checkpoint's echo-area guard, if it has one
        (``model.area_guard``, :mod:`dyna_stream.area_guard`); False: the model's output as it is.
    """

    def __init__(self, checkpoint: Checkpoint, *, data_sparsity: float | None = None,
                 model_sparsity: float | None = None,
                 policy: str = "dyna", engine: str = "auto", device: str | torch.device = "auto",
                 mask_failure: float = 0.0, input_pixel_km: float | None = None,
                 input_step_minutes: float | None = None, data_budget: str = "topk",
                 max_data_sparsity: float = 0.99, area_guard: bool = True) -> None:
        check_step(input_step_minutes, checkpoint.step_minutes)
        self.grid = grid_adapter(checkpoint, grid_factor(input_pixel_km, checkpoint.pixel_km))
        self.checkpoint, self.policy, self.mask_failure = checkpoint, policy, mask_failure
        self.device = resolve_device(device)
        self.engine = resolve_engine(engine, self.device)
        checkpoint.model.to(self.device)
        self.timed_choice = engine == "auto"
        if mask_failure > 0 and self.engine == "graphed":
            if not self.timed_choice:
                raise ConfigError("engine graphed replays fixed masks and cannot draw a random mask failure; "
                                  "use engine sparse or masked")
            self.engine = "sparse"
        self.candidates = (self.engine, "masked") if self.timed_choice else (self.engine,)
        if self.timed_choice and AUTO_BLOCKS[self.device.type] and has_finite_radius(checkpoint.model):
            self.candidates += ("blocks",)
        self._engines: dict[str, object] = {}
        self.engine_choices: dict[tuple, dict[str, float]] = {}   # (Hp, Wp, sd, sw, budget) → ms per engine
        self.last_engine = self.engine
        default = checkpoint.operating_point
        self.data_sparsity = default[0] if data_sparsity is None else data_sparsity
        self.model_sparsity = default[1] if model_sparsity is None else model_sparsity
        self.data_budget, self.max_data_sparsity = data_budget, max_data_sparsity
        self.area_guard = checkpoint.config.model.area_guard if area_guard else None
        spec = DATASETS.get(checkpoint.dataset)
        self.value_range = spec.value_range if spec else (None, None)
        self.checkpoint.model.eval()

    @property
    def data_sparsity(self) -> float:
        return self._data_sparsity

    @data_sparsity.setter
    def data_sparsity(self, value: float) -> None:
        self._data_sparsity = _checked_sparsity("data sparsity sd", value)

    @property
    def model_sparsity(self) -> float:
        return self._model_sparsity

    @model_sparsity.setter
    def model_sparsity(self, value: float) -> None:
        self._model_sparsity = _checked_sparsity("model sparsity sw", value)

    @property
    def data_budget(self) -> str:
        return self._data_budget

    @data_budget.setter
    def data_budget(self, value: str) -> None:
        if value not in DATA_BUDGETS:
            raise ConfigError(f"data budget must be one of {', '.join(DATA_BUDGETS)}, got {value!r}")
        point = self.checkpoint.default_point
        if value == "threshold" and (point is None or point.tile_threshold is None):
            raise ConfigError("this checkpoint has no calibrated tile threshold for the threshold data budget; "
                              "run `dyna-stream choose-point --checkpoint CKPT --out CKPT` first")
        self._data_budget = value

    @property
    def max_data_sparsity(self) -> float:
        return self._max_data_sparsity

    @max_data_sparsity.setter
    def max_data_sparsity(self, value: float) -> None:
        self._max_data_sparsity = _checked_sparsity("max data sparsity", value)

    @property
    def content_budget(self) -> ContentBudget | None:
        """The threshold budget the masks follow (None under top-k)."""
        if self.data_budget != "threshold":
            return None
        return ContentBudget(self.checkpoint.default_point.tile_threshold, self.max_data_sparsity)

    @property
    def operating_point(self) -> dict[str, float | str]:
        return {"data_sparsity": self.data_sparsity, "model_sparsity": self.model_sparsity, "policy": self.policy,
                "data_budget": self.data_budget, "engine": self.last_engine, "device": str(self.device)}

    @property
    def input_limits(self) -> tuple[float, float]:
        """(low, high) physical values an input may hold: the data set's range (else the training
        data's) widened by half its span on each side. Beyond that a frame is in other units,
        wrongly scaled or corrupt (radar: −95.5 … 158.5 dBZ)."""
        normaliser = self.checkpoint.normaliser
        low, high = (normaliser.low if self.value_range[0] is None else self.value_range[0],
                     normaliser.high if self.value_range[1] is None else self.value_range[1])
        margin = (high - low) / 2
        return low - margin, high + margin

    @property
    def t_in(self) -> int:
        """Frames a call takes, the latest last: T_in, or a seasonal model's longest period."""
        return self.checkpoint.input_frames

    @torch.no_grad()
    def __call__(self, frames: np.ndarray, valid: np.ndarray | None = None) -> Forecast:
        """frames : (T, C, H, W) physical units, the latest ``t_in`` frames (T_in; a seasonal model:
        its longest period, whose frames one period before each target it reads); NaN (or ``valid``
        False, same shape) marks cells without a measurement: the model sees the fill value there,
        keeps no tile that holds only such cells, and the forecast is NaN where any of the T_in
        recent frames had no measurement."""
        ckpt = self.checkpoint
        expected = (self.t_in, ckpt.model.channels)
        if frames.ndim != 4 or frames.shape[:2] != expected:
            seasonal = f" (T_in {ckpt.t_in}; this seasonal model reads one period back)" if ckpt.seasonal_inputs else ""
            raise DataError(f"input window has shape {frames.shape}; this model needs (T={expected[0]}, "
                            f"C={expected[1]}, H, W) — pass the latest {expected[0]} frames{seasonal}")
        if np.isinf(frames).any():
            raise DataError("input window holds infinite values; mark cells without a measurement with NaN")
        measured = ~np.isnan(frames) if valid is None else np.asarray(valid, bool) & ~np.isnan(frames)
        if not measured.any():
            raise DataError("input window has no measured cell (all NaN); nothing to forecast from")
        frames = np.where(measured, frames, np.float32(ckpt.fill_value)).astype(np.float32)
        if self.grid.factor == 1:
            return self._forecast(frames, measured)
        size = frames.shape[-2:]
        if min(size) < self.grid.factor:
            raise DataError(f"input grid {size} is smaller than one model pixel ({self.grid.factor} input pixels)")
        coarse = self._forecast(*self.grid.to_model(frames, measured))
        fine_coverage = measured[-ckpt.t_in:].all(axis=0).any(axis=0)
        coverage = self.grid.to_input(coarse.coverage, size) & fine_coverage
        forecast, fallback = (np.where(coverage, self.grid.to_input(a, size), np.float32(np.nan))
                              for a in (coarse.forecast, coarse.fallback))
        return Forecast(forecast, self.grid.to_input(coarse.importance, size),
                        self.grid.to_input(coarse.kept_tiles, size), fallback, coarse.macs, coverage)

    def _forecast(self, frames: np.ndarray, measured: np.ndarray) -> Forecast:
        """frames (T, C, H, W) on the model's grid (see :meth:`__call__`), fill value where
        ``measured`` is False."""
        ckpt = self.checkpoint
        recent, measured = frames[-ckpt.t_in:], measured[-ckpt.t_in:]
        fallback = starting_forecast(ckpt.fallback, frames, t_in=ckpt.t_in, t_out=ckpt.t_out,
                                     fill_value=ckpt.fill_value, periods=ckpt.periods)
        multiple, fill = ckpt.model.tile_size, ckpt.fill_value
        coverage = pad_to_multiple(measured.all(axis=0).any(axis=0, keepdims=True), multiple, False)
        if ckpt.seasonal_inputs:
            seasonal = seasonal_frames(frames, len(frames), ckpt.t_out, ckpt.periods)
            recent = np.concatenate([recent, seasonal.reshape(-1, *recent.shape[1:])])
        return self.run_normalised(model_input(recent, ckpt.normaliser, multiple, fill),
                                   model_input(fallback, ckpt.normaliser, multiple, fill), frames.shape[-2:],
                                   torch.from_numpy(coverage))

    @torch.no_grad()
    def run_normalised(self, frames: torch.Tensor, fallback: torch.Tensor, size: tuple[int, int],
                       coverage: torch.Tensor | None = None) -> Forecast:
        """Model inputs already normalised and padded, (input_frames, C, Hp, Wp) and (T_out, C, Hp, Wp), and
        the coverage (1, Hp, Wp) bool (None: everything measured); ``size`` = the unpadded (H, W) the
        outputs are cropped to; every output is in physical units, NaN outside coverage."""
        ckpt = self.checkpoint
        height, width = size
        frames, fallback = frames.to(self.device), fallback.to(self.device)
        options = {"policy": self.policy, "data_sparsity": self.data_sparsity,
                   "model_sparsity": self.model_sparsity, "mask_failure": self.mask_failure,
                   "coverage": None if coverage is None else coverage[None].to(self.device),
                   "content_budget": self.content_budget}
        self.last_engine = self._engine_for(frames, fallback, options)
        prediction, macs = self._run_engine(self.last_engine, frames, fallback, options)
        forecast = np.clip(ckpt.normaliser.inverse(_host(prediction.forecast[0, ..., :height, :width])),
                           *self.value_range)
        spatial = prediction.masks.spatial(tuple(prediction.forecast.shape[-2:]))
        kept = np.ones((height, width), np.float32) if spatial is None else _host(spatial[0, 0, :height, :width])
        extrapolated = np.clip(ckpt.normaliser.inverse(_host(prediction.base[0, ..., :height, :width])),
                               *self.value_range)
        covered = np.ones((height, width), bool) if coverage is None else _host(coverage[0, :height, :width])
        if self.area_guard is not None:
            last = ckpt.normaliser.inverse(_host(frames[ckpt.t_in - 1, :, :height, :width]))
            forecast = guard_forecast(forecast, last, covered, ratio=self.area_guard.ratio,
                                      floor=self.area_guard.floor)
        if not covered.all():
            forecast, extrapolated = (np.where(covered, a, np.float32(np.nan)) for a in (forecast, extrapolated))
        return Forecast(forecast, _host(prediction.importance_map[0, 0, :height, :width]), kept, extrapolated, macs,
                        covered)

    def _run_engine(self, engine: str, frames: torch.Tensor, fallback: torch.Tensor, options: dict) -> tuple:
        """(prediction, executed MACs) of one engine on a batch of one."""
        if engine != "masked":
            if engine not in self._engines:
                self._engines[engine] = ENGINE_BUILDERS[engine](self.checkpoint.model)
            prediction = self._engines[engine](frames[None], fallback[None], **options)
            return prediction, float(prediction.accounting[0].macs)
        prediction = self.checkpoint.model(frames[None], fallback[None], **options)
        return prediction, float(self.checkpoint.model.macs(prediction)[0])

    def _engine_for(self, frames: torch.Tensor, fallback: torch.Tensor, options: dict) -> str:
        """The engine asked for, or under "auto" the fastest candidate for this grid size and
        operating point (each timed once, best of :data:`AUTO_TRIALS` after a warm-up; they compute
        the same forecast)."""
        if not self.timed_choice:
            return self.engine
        key = (*frames.shape[-2:], self.data_sparsity, self.model_sparsity, self.data_budget)
        if key not in self.engine_choices:
            timings = {}
            sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
            for engine in self.candidates:
                self._run_engine(engine, frames, fallback, options)
                runs = []
                for _ in range(AUTO_TRIALS):
                    sync()
                    started = time.perf_counter()
                    self._run_engine(engine, frames, fallback, options)
                    sync()
                    runs.append((time.perf_counter() - started) * 1e3)
                timings[engine] = min(runs)
            self.engine_choices[key] = timings
            log.info("engine auto for grid %dx%d at sd=%.2f sw=%.2f (%s budget): %s; runs %s", *key,
                     ", ".join(f"{name} {ms:.1f} ms" for name, ms in timings.items()), min(timings, key=timings.get))
        timings = self.engine_choices[key]
        return min(timings, key=timings.get)


def _host(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()
