"""Run configuration: a YAML file validated at load, every field overridable as ``section.key=value``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileDataConfig(_Strict):
    """Your own series as the data set: one array file or a folder of radar files (FMI, KNMI, MRMS,
    ODIM_H5, CF netCDF, MeteoSwiss GIF, DWD RADOLAN), split in time."""

    path: str = Field(description="a .npy/.npz/.nc/.h5 array file or a folder of radar files "
                                  "(FMI, KNMI, MRMS, ODIM_H5, CF netCDF, MeteoSwiss GIF, DWD RADOLAN)")
    variable: str | None = Field(None, description="the array's name inside .npz/.nc/.h5")
    layout: Literal["auto", "THW", "TCHW", "THWC"] = Field(
        "auto", description="the array's axes (auto: 3 axes THW, 4 axes TCHW; THWC: channel-last)")
    units: str = Field("", description="physical units of the values (dBZ, K, trips, …)")
    fill_value: float = Field(0.0, description="what cells without a measurement (NaN) take")
    t_in: int = Field(6, ge=1, description="input frames")
    t_out: int = Field(6, ge=1, description="forecast frames")
    fallback: Literal["persistence", "advection"] = Field(
        "persistence", description="what pruned tiles take: persistence, or advection (optical flow; radar)")
    splits: tuple[float, float] = Field((0.7, 0.15), description="train and val shares of the frames in time "
                                                                 "order; test takes the rest")
    csi_thresholds: tuple[float, ...] = Field((), description="event thresholds for CSI scores (radar: 20 30 40)")
    value_range: tuple[float | None, float | None] = Field(
        (None, None), description="physically possible (low, high) forecasts are clipped to; null: unbounded")
    pixel_km: float | None = Field(None, gt=0, description="pixel size, km (null: not a map or unknown)")
    step_minutes: float | None = Field(None, gt=0, description="minutes between frames (null: unknown)")


class DataConfig(_Strict):
    name: str = Field("radar-fmi", description="a built-in data set, or the name your `file` data set takes")
    root: str | None = Field(
        None, description="folder holding the data sets; default $DYNA_STREAM_DATA or ../shared/data")
    file: FileDataConfig | None = Field(None, description="train on your own file instead of a built-in data set")


class CoarseConfig(_Strict):
    """The coarse path (``dyna_stream.model.coarse``): what pruned tiles receive."""

    factor: int = Field(4, ge=1, description="resolution divisor; must divide the backbone's tile size")
    width: int = Field(32, ge=1, description="hidden channels")
    blocks: int = Field(2, ge=0, description="residual 3x3 blocks after the stem")
    dilation: int = Field(1, ge=1, description="block i is dilated dilation**(i+1): 1 plain; 2 gives dilations "
                                               "2, 4, ... and a receptive field of 2**(blocks+2) - 1 coarse pixels "
                                               "at the same MACs (city-wide context on a small grid)")
    context: int = Field(0, ge=0, description="channels of the coarse path's features the fine path reads beside the "
                                              "frames and the base, so a kept tile knows its surroundings (0: none; "
                                              "SimVP and TAU)")


class AreaGuardConfig(_Strict):
    """The echo-area guard (``dyna_stream.area_guard``) every forecast of the model passes through."""

    ratio: float = Field(0.85, gt=0, le=1, description="at every intensity at or above the floor, the forecast paints "
                                                       "at least this share of the last observation's area")
    floor: float = Field(description="physical units: intensities below it are not guarded (radar: 10 dBZ, about "
                                     "0.15 mm/h of rain, the echo that matters to forecasters)")


class ModelConfig(_Strict):
    backbone: str = "simvp"
    backbone_kwargs: dict[str, Any] = Field(default_factory=dict)
    generator_hidden: int = Field(16, ge=1)
    generator_reduction: int = Field(4, ge=1)
    gate_mode: Literal["topk", "threshold"] = "topk"
    unit_pooling: Literal["importance", "uniform"] = Field(
        "importance", description="unit importance from generator features pooled with S as weights (the shared "
                                  "S of Dyna-Pruner), or uniformly (independent data and model masks, an ablation)")
    norm_statistics: Literal["active", "all"] = Field(
        "active", description="training BatchNorm statistics over the kept tiles and channels of each sample "
                              "(consistent at every sparsity), or over the whole batch (plain BatchNorm; "
                              "checkpoints older than this option)")
    coverage_input: bool = Field(
        True, description="the mask generator reads the coverage map (where the input has measurements), so "
                          "it can tell 'no radar' from 'no rain'; checkpoints older than this option: false")
    coarse: CoarseConfig | None = Field(
        default_factory=CoarseConfig,
        description="a cheap dense forecaster at 1/factor resolution whose output pruned tiles take, on top of the "
                    "fallback; null: pruned tiles take the bare fallback (checkpoints older than this option)")
    area_guard: AreaGuardConfig | None = Field(
        None, description="raise damped forecasts so they keep a share of the observed echo area (radar models; "
                          "null: the model's output as it is, and checkpoints older than this option)")
    seasonal: bool = Field(
        False, description="read the frames one period (the data set's periods: a day, a week) before each target "
                           "as inputs besides the recent frames (ST-ResNet's period); needs a data set with periods")
    fallback: str | None = Field(
        None, pattern=r"^(persistence|advection|seasonal:\w+)$",
        description="what pruned tiles start from (before the coarse path): null = the data set's (radar: advection, "
                    "else persistence); seasonal:<period> = the frames one period before each target (needs seasonal)")


DEVICE_FIELD = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                     description="where the model runs: auto (the GPU if torch sees one), cpu, cuda, cuda:N")


class TrainConfig(_Strict):
    seed: int = 0
    steps: int = Field(1500, ge=1)
    batch_size: int = Field(8, ge=1)
    crop: int = Field(128, ge=16, description="training crop side, pixels (whole tiles)")
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(50, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    policy: Literal["dyna", "dense", "static"] = "dyna"
    sparsity_range: tuple[float, float] = Field(
        (0.3, 0.9), description="sd (and sw, unless model_sparsity_range is set) drawn uniformly per batch")
    model_sparsity_range: tuple[float, float] | None = Field(
        None, description="sw drawn from this range instead; [0, 0] trains the data mask only, a one-point range "
                          "trains at a fixed sw")
    validation_sparsity: float = Field(0.7, ge=0, lt=1, description="sd (and sw) of the validation point")
    validation_model_sparsity: float | None = Field(None, ge=0, lt=1, description="sw of the validation point "
                                                                                  "(null: validation_sparsity)")
    default_point_tolerance: float | None = Field(
        0.02, ge=0, description="after training (dyna policy), record as the checkpoint's default operating point the "
                                "most pruned sd = sw within this share of the most accurate point's validation MSE "
                                "(the dense path's, or a pruned point's where lower); null: record none (predict and "
                                "the nodes then run at 0.7)")
    objective: Literal["mse", "mse+mae"] = Field(
        "mse", description="task loss over valid cells; mse+mae adds the MAE (B-MSE + B-MAE with intensity_weights)")
    intensity_weights: list[tuple[float, float]] = Field(
        default_factory=list, description="[[threshold, weight], ...] in physical units, ascending: a cell whose "
                                          "truth reaches a threshold weighs its weight in the task loss (others 1)")
    lambda_data: float = Field(1e-3, ge=0)
    lambda_model: float = Field(1e-3, ge=0)
    lambda_budget: float = Field(1.0, ge=0)
    validate_every: int = Field(100, ge=1)
    calibrate_norm: bool = Field(True, description="after training (dyna policy): BatchNorm statistics per "
                                                    "model-sparsity level, kept where they lower the validation "
                                                    "error (dyna_stream.train.calibration)")
    select: Literal["best", "last"] = Field("best", description="model.pt = lowest validation MSE, or last step")
    init_from: str | None = Field(
        None, description="a checkpoint of the same data set whose weights start this run where names and shapes "
                          "match (e.g. the dense model, so a Dyna-Pruner fine-tunes its sub-networks from it)")
    sandwich: bool = Field(
        False, description="dyna policy: every step also trains the dense path (sd = sw = 0) on the same batch, "
                           "besides the sampled point (the sandwich rule of slimmable networks; ~2x a step's cost)")
    distill_weight: float = Field(
        0.0, ge=0, description="weight of a term pulling each sampled sub-network's forecast toward a dense forecast "
                               "(in the task objective): the init_from model's (a frozen teacher), else with "
                               "sandwich the model's own dense path (in-place distillation, not back-propagated)")
    ema_decay: float | None = Field(
        None, gt=0, lt=1, description="validate, select and save an exponential moving average of the weights "
                                      "(and norm statistics) with this decay per step, e.g. 0.995; null: the raw "
                                      "weights")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; default: torch's choice")
    device: str = DEVICE_FIELD
    out_dir: str = "runs/radar_simvp"
    epochs: int | None = Field(None, ge=1, description="epoch-based training (each epoch visits the selected "
                                                        "windows once; needed by sample pruning); null: train.steps")
    validate_every_epochs: int = Field(1, ge=1)
    sample_pruning: Literal["off", "st-prune", "infobatch", "static-random"] = Field(
        "off", description="dynamic sample pruning per epoch (DESIGN §2b); off: every window every epoch")
    keep_ratio: float = Field(0.25, gt=0, le=1, description="r: share of the low-score windows kept per epoch")
    prune_quantile: float = Field(0.8, ge=0, lt=1, description="windows scoring below this quantile are low-score")
    complexity_weight: float = Field(0.5, ge=0, le=1, description="α: complexity vs loss in the st-prune score")
    anneal_fraction: float = Field(0.15, le=1, description="final share of epochs over which r rises to 1")
    sample_unit: Literal["window", "patch"] = Field(
        "window", description="what one training sample is: a window (a random crop each visit), or a "
                              "window's crop-sized patch on a fixed grid (pruning skips calm regions)")
    patch_stride: int | None = Field(None, ge=1, description="pixels between patches (whole tiles); "
                                                             "null: half of train.crop")

    @field_validator("sample_pruning", mode="before")
    @classmethod
    def _yaml_off(cls, value):
        return "off" if value is False else value      # YAML 1.1 reads a bare `off` as false

    @field_validator("anneal_fraction")
    @classmethod
    def _reaches_full_data(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f"anneal_fraction must be > 0 (got {value}): without annealing the schedule never "
                             "returns to the full data")
        return value

    @model_validator(mode="after")
    def _teacher_needs_init_from(self) -> TrainConfig:
        if self.distill_weight > 0 and self.init_from is None and not self.sandwich:
            raise ValueError("distill_weight > 0 distils a dense forecast: set train.init_from (a frozen teacher) "
                             "or train.sandwich (the model's own dense path)")
        if self.sandwich and self.policy != "dyna":
            raise ValueError(f"sandwich trains the dense path beside sampled sub-networks: it needs policy dyna, "
                             f"not {self.policy!r}")
        return self

    @model_validator(mode="after")
    def _pruning_needs_epochs(self) -> TrainConfig:
        if self.sample_pruning != "off" and self.epochs is None:
            raise ValueError(f"sample_pruning {self.sample_pruning!r} selects windows per epoch: set train.epochs")
        return self

    @field_validator("intensity_weights")
    @classmethod
    def _ascending(cls, value: list[tuple[float, float]]) -> list[tuple[float, float]]:
        thresholds = [threshold for threshold, _ in value]
        if thresholds != sorted(thresholds) or len(set(thresholds)) != len(thresholds):
            raise ValueError(f"intensity_weights thresholds must be strictly ascending, got {thresholds}")
        if any(weight <= 0 for _, weight in value):
            raise ValueError("intensity_weights weights must be > 0")
        return value

    @field_validator("sparsity_range", "model_sparsity_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0.0 <= value[0] <= value[1] < 1.0:
            raise ValueError(f"a sparsity range must satisfy 0 <= low <= high < 1, got {value}")
        return value


class RunConfig(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


def _apply_override(tree: dict, override: str) -> None:
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} must look like section.key=value")
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
    node[leaf] = yaml.safe_load(raw)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                schema: type[BaseModel] = RunConfig) -> Any:
    """Read ``path`` (YAML; None: defaults), apply ``overrides``, validate against ``schema``."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for override in overrides:
        _apply_override(tree, override)
    try:
        return schema.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration{f' in {path}' if path else ''}: {describe(exc)}") from None


def describe(error: ValidationError) -> str:
    """A pydantic error as one line: each bad field, what is wrong and the value given."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        given = f" (got {item['input']!r})" if not isinstance(item.get("input"), dict | list) else ""
        parts.append(f"{where}: {item['msg']}{given}")
    return "; ".join(parts)


class CurveConfig(_Strict):
    """CURVE keys (``dyna-stream keygen``): a binding socket needs secret_key + authorized_keys,
    a connecting one secret_key + server_key."""

    secret_key: str
    server_key: str | None = None
    authorized_keys: str | None = None


class InputConfig(_Strict):
    source: Literal["zmq", "file", "opencv"] = Field("zmq", description="where frames come from")
    uri: str | None = Field(None, description="file/opencv: a path, radar folder, camera index or RTSP/HTTP URL")
    rate_hz: float = Field(2.0, ge=0, description="file/opencv: frames per second (0: as delivered)")
    loops: int = Field(1, ge=1, description="file: replays")
    endpoint: str = "tcp://127.0.0.1:5555"
    bind: bool = Field(False, description="bind (the node listens) or connect (to an edge publisher)")
    topic: str = "frame"
    hwm: int = Field(8, ge=1)
    max_payload_mb: float = Field(256.0, gt=0)
    curve: CurveConfig | None = None
    pixel_km: float | None = Field(None, gt=0, description="the frames' pixel size, km; null: the model's. "
                                   "A whole factor finer is averaged onto the model's grid and back")
    step_minutes: float | None = Field(None, gt=0, description="minutes between the sensor's frames; null: the "
                                       "model's. A whole fraction of the model's step (1 or 2.5 min into 5) "
                                       "feeds every k-th frame back from the newest; anything else is refused")


class OutputConfig(_Strict):
    endpoint: str = "tcp://127.0.0.1:5556"
    bind: bool = True
    hwm: int = Field(8, ge=1)
    status_every: int = Field(10, ge=1, description="a status message every N forecasts")
    curve: CurveConfig | None = None


class BufferConfig(_Strict):
    grid: tuple[int, int] | None = Field(None, description="model grid (H, W); null: the first frame's")
    resize: bool = Field(False, description="resize frames on another grid (else reject them)")
    period_s: float = Field(0.0, ge=0, description="expected frame spacing; 0 disables the gap check")
    max_gap_periods: float = Field(2.5, gt=1)


class OperatingConfig(_Strict):
    data_sparsity: float | None = Field(None, ge=0, lt=1, description="share of tiles pruned; null: the model's "
                                                                       "default point (chosen on validation), else 0.7")
    model_sparsity: float | None = Field(None, ge=0, lt=1, description="share of units pruned; null: the model's "
                                                                        "default point, else 0.7")
    policy: Literal["dyna", "dense", "random", "static"] = "dyna"
    engine: Literal["auto", "sparse", "graphed", "blocks", "masked"] = Field(
        "auto", description="sparse: only kept tiles and channels run; graphed: the same at fixed sizes, one CUDA "
                            "graph per operating point; blocks: kept superblocks with halos through the dense "
                            "layers; masked: the dense graph with masks; auto: the fastest, timed per grid and point")
    device: str = DEVICE_FIELD
    threads: int | None = Field(2, ge=1)
    data_budget: Literal["topk", "threshold"] = Field(
        "topk", description="topk: a fixed share of tiles at sd; threshold: the tiles whose importance passes "
                            "the model's calibrated threshold, at most as many as top-k at sd (calm windows cost less)")
    max_data_sparsity: float = Field(0.99, ge=0, lt=1, description="threshold budget: the fewest tiles it keeps, "
                                                                   "as a sparsity")
    area_guard: bool = Field(True, description="pass forecasts through the model's echo-area guard, if it has one "
                                               "(false: the model's output as it is)")


class RecordConfig(_Strict):
    mcap: str | None = Field(None, description="MCAP file recording /forecast and /importance (ROS 2 Image)")
    snapshots: str | None = Field(None, description="folder for forecast GIFs and importance PNGs")
    snapshot_every: int = Field(10, ge=1)


class ControlConfig(_Strict):
    """The budget controller (off by default: the node then runs operating.* fixed)."""

    enabled: bool = False
    latency_budget_ms: float | None = Field(None, gt=0, description="target for the p95 inference latency")
    power_cap_w: float | None = Field(None, gt=0, description="board power cap; ignored without a power meter")
    confidence: float = Field(0.95, gt=0.5, lt=1)
    dwell_frames: int = Field(10, ge=0)
    hysteresis: float = Field(0.1, ge=0, lt=0.5)
    endpoint: str | None = Field("tcp://127.0.0.1:5557", description="REP socket for budget changes; null: none")
    profile_runs: int = Field(10, ge=3)
    profile_max_age_h: float = Field(168.0, ge=0, description="re-measure a cached profile this old, hours")
    cache_dir: str = "~/.cache/dyna_stream"
    data_root: str | None = Field(None, description="data sets folder for the profile's validation errors; "
                                                    "None: the bundled sample")


class NodeConfig(_Strict):
    model: str | None = Field(None, description="checkpoint path; null: the bundled radar model")
    input: InputConfig = Field(default_factory=InputConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    operating: OperatingConfig = Field(default_factory=OperatingConfig)
    record: RecordConfig = Field(default_factory=RecordConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    log_every_s: float = Field(10.0, gt=0)
