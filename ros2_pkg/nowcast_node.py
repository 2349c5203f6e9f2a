"""``nowcast_node``: a ROS 2 lifecycle node over the streaming pipeline.

sensor_msgs/Image frames in (``input_topic``, sensor-data QoS), ``/forecast`` and ``/importance``
(32FC1 Images, layout in :mod:`dyna_stream.stream.ros_messages`) and ``/diagnostics`` out.
configure loads the model, profiles it (cached) and builds the controller; activate starts
inference and publishing. Inference runs on the pipeline's worker thread, never on the executor.
Budgets and sparsity bounds change live (``ros2 param set``); bad values are rejected with a reason.
"""
from __future__ import annotations

import logging
import os
import platform
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image

from dyna_stream.assets import BUNDLED_MODEL
from dyna_stream.config import ControlConfig
from dyna_stream.control.controlled import ControlledPredictor, profiled_controller
from dyna_stream.control.controller import Controller
from dyna_stream.control.power import PowerMeter, detect_meter
from dyna_stream.data.regrid import frame_stride
from dyna_stream.errors import DataError, DynaStreamError
from dyna_stream.model.checkpoint import load_checkpoint
from dyna_stream.predictor import Predictor
from dyna_stream.stream.health import Level, summarise
from dyna_stream.stream.pipeline import Pipeline, StreamResult
from dyna_stream.stream.ring_buffer import BufferPolicy, Push, RingBuffer
from dyna_stream.stream.ros_messages import InputScaling
from dyna_stream.stream.zmq_transport import ZmqFrameSource

from .messages import diagnostics, frame_from_image, image_from_array
from .parameters import LIVE, PARAMETERS, RELIABILITY, SPECS, check_value

RELIABILITY_POLICIES = dict(zip(RELIABILITY, (ReliabilityPolicy.BEST_EFFORT, ReliabilityPolicy.RELIABLE)))
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class RosLogHandler(logging.Handler):
    """Forwards the pipeline's Python log records to the node's ROS logger. rclpy ties a severity
    to each call site, hence one call site per level."""

    def __init__(self, logger) -> None:
        super().__init__()
        self.methods = {
            logging.DEBUG: lambda message: logger.debug(message),
            logging.INFO: lambda message: logger.info(message),
            logging.WARNING: lambda message: logger.warning(message),
            logging.ERROR: lambda message: logger.error(message),
            logging.CRITICAL: lambda message: logger.fatal(message),
        }

    def emit(self, record: logging.LogRecord) -> None:
        level = max(level for level in self.methods if level <= max(record.levelno, logging.DEBUG))
        self.methods[level](self.format(record))


@dataclass
class Runtime:
    """What configure builds and cleanup drops."""

    forecaster: ControlledPredictor
    controller: Controller
    buffer: RingBuffer
    scaling: InputScaling
    units: str
    meter: PowerMeter | None


class RosSink:
    """Publishes each forecast and importance map (called on the pipeline's worker thread)."""

    def __init__(self, forecast_pub, importance_pub) -> None:
        self.forecast_pub, self.importance_pub = forecast_pub, importance_pub

    def publish(self, result: StreamResult) -> None:
        self.forecast_pub.publish(image_from_array(result.forecast, result.stamp_ns, result.frame_id))
        self.importance_pub.publish(image_from_array(result.importance, result.stamp_ns, result.frame_id))

    def close(self) -> None:
        pass


class NowcastNode(LifecycleNode):
    def __init__(self, node_name: str = "nowcast_node", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.log_handler = RosLogHandler(self.get_logger())
        logging.getLogger("dyna_stream").addHandler(self.log_handler)
        logging.getLogger("dyna_stream").setLevel(logging.INFO)
        self.runtime: Runtime | None = None
        self.pipeline: Pipeline | None = None
        self.zmq_source: ZmqFrameSource | None = None
        self.inactive_frames = 0
        self._entities: list = []
        self._before, self._before_time = {}, time.monotonic()
        self.configure_error: str | None = None          # why the last configure failed: an ERROR status
        self.shut_down = False                          # lifecycle shutdown reached: main() then returns
        # /diagnostics for the node's whole life, so a node that failed to configure still says why
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        period = self.param("diagnostics_period_s")       # a bad value is configure's error to report
        if check_value("diagnostics_period_s", period) is not None:
            period = SPECS["diagnostics_period_s"].default
        self.diagnostics_timer = self.create_timer(period, self._publish_diagnostics)
        if self.param("autostart") and self.trigger_configure() == SUCCESS:
            self.trigger_activate()

    def param(self, name: str):
        value = self.get_parameter(name).value
        return float(value) if isinstance(SPECS[name].default, float) and isinstance(value, int) else value

    # --- lifecycle -------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load and profile the model, build the controller and buffer, create the topics."""
        reasons = (check_value(name, self.get_parameter(name).value) for name in SPECS)
        self.configure_error = next((reason for reason in reasons if reason is not None), None)
        if self.configure_error is None:
            try:
                self.runtime = self._build_runtime()
            except (DynaStreamError, ValueError, OSError) as exc:
                self.configure_error = str(exc)
        if self.configure_error is not None:
            self.get_logger().error(f"configure failed: {self.configure_error}")
            return FAILURE
        output_qos = QoSProfile(depth=self.param("output_depth"), history=HistoryPolicy.KEEP_LAST,
                                reliability=RELIABILITY_POLICIES[self.param("output_reliability")])
        input_qos = QoSProfile(depth=self.param("input_depth"), history=HistoryPolicy.KEEP_LAST,
                               reliability=RELIABILITY_POLICIES[self.param("input_reliability")],
                               durability=qos_profile_sensor_data.durability)
        self.forecast_pub = self.create_lifecycle_publisher(Image, "forecast", output_qos)
        self.importance_pub = self.create_lifecycle_publisher(Image, "importance", output_qos)
        self.subscription = self.create_subscription(Image, self.param("input_topic"), self._on_image, input_qos)
        self._entities = [(self.destroy_lifecycle_publisher, self.forecast_pub),
                          (self.destroy_lifecycle_publisher, self.importance_pub),
                          (self.destroy_subscription, self.subscription)]
        self.get_logger().info(f"configured: frames on {self.subscription.topic_name}, forecasts on "
                               f"{self.forecast_pub.topic_name} and {self.importance_pub.topic_name}")
        return SUCCESS

    def _build_runtime(self) -> Runtime:
        model_path = self.param("model_path") or str(BUNDLED_MODEL)
        if not Path(model_path).expanduser().is_file():
            raise DataError(f"model file not found: {model_path} (set model_path, or leave it empty for the "
                            "bundled radar model)")
        torch.set_num_threads(self.param("threads"))
        checkpoint = load_checkpoint(Path(model_path).expanduser())
        stride = frame_stride(self.param("input_step_minutes") or None, checkpoint.step_minutes)
        predictor = Predictor(checkpoint, policy=self.param("policy"), engine=self.param("engine"),
                              device=self.param("device"), input_pixel_km=self.param("input_pixel_km") or None,
                              data_budget=self.param("data_budget"), max_data_sparsity=self.param("sd_max"),
                              area_guard=self.param("area_guard"))
        meter = detect_meter()
        control = ControlConfig(latency_budget_ms=self.param("latency_budget_ms") or None,
                                power_cap_w=self.param("power_cap_w") or None, confidence=self.param("confidence"),
                                dwell_frames=self.param("dwell_frames"), hysteresis=self.param("hysteresis"),
                                endpoint=None, profile_runs=self.param("profile_runs"),
                                profile_max_age_h=self.param("profile_max_age_h"),
                                cache_dir=self.param("profile_cache_dir"), data_root=self.param("data_root") or None)
        controller = profiled_controller(predictor, Path(model_path).expanduser(), control, meter)
        controller.set_bounds((self.param("sd_min"), self.param("sd_max")), (self.param("sw_min"),
                                                                               self.param("sw_max")))
        grid = (self.param("grid_height"), self.param("grid_width"))
        policy = BufferPolicy(int(self.param("frame_period_s") * 1e9), self.param("max_gap_periods"),
                              self.param("resize"), predictor.input_limits)
        buffer = RingBuffer(checkpoint.input_frames, checkpoint.model.channels, grid if all(grid) else None, policy,
                            stride=stride)
        return Runtime(ControlledPredictor(predictor, controller, meter), controller, buffer,
                       InputScaling(self.param("input_scale"), self.param("input_offset")),
                       checkpoint.normaliser.units, meter)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start inference; the lifecycle publishers go live."""
        runtime = self.runtime
        runtime.buffer.clear()
        self.pipeline = Pipeline(runtime.forecaster, runtime.buffer, [RosSink(self.forecast_pub, self.importance_pub)],
                                 units=runtime.units).start()
        if endpoint := self.param("zmq_endpoint"):
            try:
                self.zmq_source = ZmqFrameSource(self.pipeline, endpoint, bind=self.param("zmq_bind")).start()
            except Exception as exc:  # a bad endpoint must not take the ROS input down with it
                self.get_logger().error(f"ZeroMQ input {endpoint!r} not opened: {exc}")
        allowed = [(p.data_sparsity, p.model_sparsity) for p in runtime.controller.allowed]
        self.get_logger().info(f"active: operating points (sd, sw) allowed {allowed}, most accurate first")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inference()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything; the process then exits (a finalized node has nothing left to do)."""
        self._release()
        self.shut_down = True
        return SUCCESS

    def _stop_inference(self) -> None:
        """Stop the ZeroMQ input, then finish the forecast in flight."""
        if self.zmq_source is not None:
            self.zmq_source.close()
            self.zmq_source = None
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is not None:
            pipeline.stop()
            if self.context.ok():  # after SIGINT/SIGTERM the ROS logger can no longer reach /rosout
                self.get_logger().info(f"inference stopped: {pipeline.stats()}")

    def _release(self) -> None:
        self._stop_inference()
        for destroy, entity in self._entities:
            destroy(entity)
        self._entities = []
        if self.runtime is not None and self.runtime.meter is not None:
            self.runtime.meter.close()
        self.runtime = None

    # --- data path -------------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        """Executor thread: decode and hand the frame to the pipeline (inference runs elsewhere)."""
        pipeline, runtime = self.pipeline, self.runtime
        if pipeline is None or runtime is None:
            self.inactive_frames += 1
            return
        try:
            pixels, stamp_ns, frame_id = frame_from_image(msg, runtime.scaling)
        except DataError as exc:
            pipeline.count_malformed("image")
            self.get_logger().warning(f"image dropped: {exc}", throttle_duration_sec=5.0)
            return
        outcome = pipeline.submit(pixels, stamp_ns, frame_id)
        if outcome is Push.OUT_OF_ORDER:
            self.get_logger().warning(f"image dropped: stamp {stamp_ns} ns is older than the newest frame "
                                      f"{runtime.buffer.newest_stamp} ns", throttle_duration_sec=5.0)

    def _publish_diagnostics(self) -> None:
        pipeline, runtime = self.pipeline, self.runtime
        now_time = time.monotonic()
        stats = pipeline.stats() if pipeline is not None else {}
        stats["inactive"] = self.inactive_frames
        point = runtime.forecaster.operating_point if runtime is not None else {}
        health = summarise(stats, self._before, max(now_time - self._before_time, 1e-6), point,
                           point.get("latency_budget_ms"))
        if pipeline is None:
            health.message = f"inactive ({self._state_machine.current_state[1]}): {health.message}"
        if runtime is None and self.configure_error is not None:
            health.level, health.message = Level.ERROR, f"configure failed: {self.configure_error}"
        self._before, self._before_time = stats, now_time
        # named as diagnostic_updater names a task: "<node, namespace included>: <task>", one per node
        name = f"{self.get_fully_qualified_name().lstrip('/')}: dyna_stream"
        self.diagnostics_pub.publish(diagnostics(health, name=name,
                                                 hardware_id=platform.node(), stamp=self.get_clock().now().to_msg()))

    # --- parameters ------------------------------------------------------------------------------
    def _proposed(self, changes: list) -> dict:
        values = {name: self.param(name) for name in LIVE}
        values.update({p.name: p.value for p in changes if p.name in LIVE})
        return values

    def _check_parameters(self, changes: list) -> SetParametersResult:
        """Reject a value of the wrong type or out of range, or a change that leaves no operating point."""
        for change in changes:
            if change.name in SPECS and (reason := check_value(change.name, change.value)) is not None:
                return SetParametersResult(successful=False, reason=reason)
        values = self._proposed(changes)
        for axis in ("sd", "sw"):
            if values[f"{axis}_min"] > values[f"{axis}_max"]:
                return SetParametersResult(successful=False, reason=f"{axis}_min {values[f'{axis}_min']} > "
                                                                    f"{axis}_max {values[f'{axis}_max']}")
        if self.runtime is not None:
            try:
                self.runtime.controller.points_within((values["sd_min"], values["sd_max"]),
                                                      (values["sw_min"], values["sw_max"]))
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, changes: list) -> None:
        if self.runtime is None or not any(p.name in LIVE for p in changes):
            return
        values, controller = self._proposed([]), self.runtime.controller
        controller.set_bounds((values["sd_min"], values["sd_max"]), (values["sw_min"], values["sw_max"]))
        self.runtime.forecaster.predictor.max_data_sparsity = values["sd_max"]   # the threshold budget's floor
        controller.set_budget(latency_ms=values["latency_budget_ms"] or None, power_w=values["power_cap_w"] or None)
        self.get_logger().info(f"budgets: latency {controller.latency_budget_ms} ms, power {controller.power_cap_w} W; "
                               f"sd [{values['sd_min']}, {values['sd_max']}], sw [{values['sw_min']}, "
                               f"{values['sw_max']}]")

    def destroy_node(self) -> None:
        self._release()
        logging.getLogger("dyna_stream").removeHandler(self.log_handler)
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Spin until SIGINT/SIGTERM, lifecycle shutdown, or the end of the process that started the
    node (``ros2 launch`` killed with SIGTERM/SIGKILL leaves its nodes behind otherwise); the forecast
    in flight is finished before exit.

    The signal handlers only set a flag that the spin loop checks every 0.1 s: rclpy's own
    handlers raise KeyboardInterrupt wherever the main thread happens to be, which can leave an
    executor lock held and hang the cleanup. KeyboardInterrupt and ExternalShutdownException (the
    context shut down from elsewhere) still end the node cleanly."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    node = None
    try:
        parent = os.getppid()
        node = NowcastNode()
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok() and not node.shut_down:
            executor.spin_once(timeout_sec=0.1)
            if os.getppid() != parent:          # re-parented: ros2 launch (or whoever started us) is gone
                node.get_logger().warning(f"parent process {parent} ended; stopping")
                break
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
