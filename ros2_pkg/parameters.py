"""The node's parameters, declared from one table: name, default, description, range, and whether
it may change while the node runs (``live``). Everything else is read-only after start-up."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import IntegerRange, ParameterDescriptor

RELIABILITY = ("best_effort", "reliable")


@dataclass(frozen=True)
class Spec:
    name: str
    default: Any
    description: str
    bounds: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()
    live: bool = False

    def descriptor(self) -> ParameterDescriptor:
        """Float parameters are dynamically typed, so `ros2 param set … latency_budget_ms 40` (an
        INTEGER) is taken; :func:`check_value` then checks type and range and says why it refuses
        (their range is stated in ``additional_constraints``, not a FloatingPointRange, which rclpy
        would enforce with a traceback at start-up)."""
        constraints = f"one of {', '.join(self.choices)}" if self.choices else ""
        number = isinstance(self.default, float)
        if number and self.bounds is not None:
            constraints = f"a number within [{self.bounds[0]:g}, {self.bounds[1]:g}]"
        descriptor = ParameterDescriptor(name=self.name, description=self.description,
                                         additional_constraints=constraints, read_only=not self.live,
                                         dynamic_typing=number)
        if self.bounds is not None and isinstance(self.default, int) and not isinstance(self.default, bool):
            descriptor.integer_range = [IntegerRange(from_value=int(self.bounds[0]), to_value=int(self.bounds[1]),
                                                     step=1)]
        return descriptor


SPARSITY = (0.0, 0.99)
PARAMETERS: tuple[Spec, ...] = (
    Spec("model_path", "", "Dyna-Pruner checkpoint (.pt); empty: the bundled radar model"),
    Spec("input_topic", "frames", "sensor_msgs/Image input (mono8, 8UC1, mono16, 16UC1, 32FC1)"),
    Spec("input_scale", 1.0, "physical = raw * input_scale + input_offset (FMI radar mono8: 0.5)", (-1e6, 1e6)),
    Spec("input_offset", 0.0, "physical = raw * input_scale + input_offset (FMI radar mono8: -32)", (-1e6, 1e6)),
    Spec("input_pixel_km", 0.0, "the input images' pixel size, km; 0: the model's. A whole factor finer is "
         "averaged onto the model's grid and back; anything else is refused", (0.0, 1000.0)),
    Spec("input_step_minutes", 0.0, "minutes between the input images; 0: the model's. A whole fraction of the "
         "model's step feeds every k-th image back from the newest; anything else is refused", (0.0, 1440.0)),
    Spec("input_reliability", "best_effort", "input QoS reliability (sensor-data profile otherwise)",
         choices=RELIABILITY),
    Spec("input_depth", 5, "input QoS history depth", (1, 1000)),
    Spec("output_reliability", "reliable", "QoS reliability of /forecast and /importance", choices=RELIABILITY),
    Spec("output_depth", 2, "QoS history depth of /forecast and /importance", (1, 1000)),
    Spec("frame_period_s", 0.0, "expected frame spacing, s; 0 disables the gap check", (0.0, 86400.0)),
    Spec("max_gap_periods", 2.5, "a jump over this many periods restarts the window", (1.01, 1000.0)),
    Spec("grid_height", 0, "model grid rows; 0: the first frame's", (0, 16384)),
    Spec("grid_width", 0, "model grid columns; 0: the first frame's", (0, 16384)),
    Spec("resize", False, "resize frames on another grid (else reject them)"),
    Spec("policy", "dyna", "mask policy", choices=("dyna", "dense", "random", "static")),
    Spec("data_budget", "topk", "topk: a fixed share of tiles at the controller's sd; threshold: the tiles whose "
         "importance passes the model's calibrated threshold, at most top-k at sd and at least top-k at sd_max",
         choices=("topk", "threshold")),
    Spec("area_guard", True, "pass forecasts through the model's echo-area guard, if it has one (the bundled radar "
         "model: at least 85 % of the observed echo area at every intensity from 10 dBZ); false: the raw output"),
    Spec("engine", "auto", "sparse: real sparse execution; graphed: the same at fixed sizes, one CUDA graph per "
         "operating point; blocks: kept superblocks with halos through the dense layers; masked: the dense graph "
         "with masks; auto: the fastest (timed per grid and point)",
         choices=("auto", "sparse", "graphed", "blocks", "masked")),
    Spec("device", "auto", "where the model runs: auto (the GPU if torch sees one), cpu, cuda",
         choices=("auto", "cpu", "cuda")),
    Spec("threads", 2, "torch CPU threads for inference", (1, 256)),
    Spec("latency_budget_ms", 0.0, "p95 inference latency target, ms; 0: none", (0.0, 600000.0), live=True),
    Spec("power_cap_w", 0.0, "board power cap, W; 0: none (ignored without a power meter)", (0.0, 10000.0),
         live=True),
    Spec("sd_min", 0.0, "lowest data sparsity the controller may choose", SPARSITY, live=True),
    Spec("sd_max", 0.99, "highest data sparsity the controller may choose", SPARSITY, live=True),
    Spec("sw_min", 0.0, "lowest model sparsity the controller may choose", SPARSITY, live=True),
    Spec("sw_max", 0.99, "highest model sparsity the controller may choose", SPARSITY, live=True),
    Spec("confidence", 0.95, "latency quantile the budget applies to", (0.51, 0.999)),
    Spec("dwell_frames", 10, "minimum frames between voluntary operating-point switches", (0, 100000)),
    Spec("hysteresis", 0.1, "a point is entered under (1 - hysteresis) of the budget", (0.0, 0.49)),
    Spec("profile_runs", 10, "timed runs per operating point when profiling", (3, 10000)),
    Spec("profile_max_age_h", 168.0, "re-measure a cached profile this old, hours (0: always)", (0.0, 1e6)),
    Spec("profile_cache_dir", "~/.cache/dyna_stream", "where operating-point profiles are cached"),
    Spec("data_root", "", "data sets for the profile's validation errors; empty: the bundled sample"),
    Spec("diagnostics_period_s", 1.0, "/diagnostics interval, s", (0.05, 3600.0)),
    Spec("zmq_endpoint", "", "optional ZeroMQ frame input (protocol v1), e.g. tcp://127.0.0.1:5555; empty: off"),
    Spec("zmq_bind", False, "bind the ZeroMQ input (else connect to an edge publisher)"),
    Spec("autostart", True, "configure and activate at start (no lifecycle manager needed)"),
)
SPECS = {spec.name: spec for spec in PARAMETERS}
LIVE = frozenset(spec.name for spec in PARAMETERS if spec.live)


def check_value(name: str, value: Any) -> str | None:
    """Why ``value`` is not allowed for ``name`` (None: it is): a number (integers too) within its
    range for float parameters, one of the choices for string ones."""
    spec = SPECS[name]
    if isinstance(spec.default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{name} must be a number, got {value!r}"
        if spec.bounds is not None and not spec.bounds[0] <= value <= spec.bounds[1]:
            return f"{name} must be within [{spec.bounds[0]:g}, {spec.bounds[1]:g}], got {value!r}"
    return check_choice(name, value)


def check_choice(name: str, value: Any) -> str | None:
    """Why ``value`` is not allowed for ``name`` (None: it is)."""
    spec = SPECS[name]
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}, got {value!r}"
    return None
