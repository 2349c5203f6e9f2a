"""The streaming node: ZeroMQ frames in, forecasts and importance maps out (``dyna-stream serve``)."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import torch
import zmq

from ..assets import BUNDLED_MODEL
from ..config import CurveConfig, InputConfig, NodeConfig
from ..control.controlled import ControlledPredictor, ControlServer, profiled_controller
from ..control.power import detect_meter
from ..data.regrid import frame_stride
from ..errors import ConfigError
from ..model.checkpoint import load_checkpoint
from ..predictor import Predictor
from .file_sinks import McapRecorder, SnapshotSink
from .health import Level, summarise
from .pipeline import Pipeline
from .ring_buffer import BufferPolicy, RingBuffer
from .security import CurveKeys, stop_authenticator
from .sources import Frame, open_source, paced
from .zmq_transport import ZmqFrameSource, ZmqResultSink

log = logging.getLogger(__name__)


def curve_keys(config: CurveConfig | None) -> CurveKeys | None:
    return None if config is None else CurveKeys(config.secret_key, config.server_key, config.authorized_keys)


class FeederSource:
    """Feeds a pipeline from a frame iterator (file replay, OpenCV capture) on its own thread."""

    def __init__(self, pipeline: Pipeline, frames: Iterator[Frame]) -> None:
        self.pipeline, self.frames = pipeline, frames
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dyna_stream-feeder", daemon=True)

    def start(self) -> FeederSource:
        self._thread.start()
        return self

    def _run(self) -> None:
        for frame in self.frames:
            if self._stop.is_set():
                return
            self.pipeline.submit(frame.array, frame.stamp_ns, frame.frame_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)


def _zmq_source(pipeline: Pipeline, config: InputConfig, context: zmq.Context) -> ZmqFrameSource:
    return ZmqFrameSource(pipeline, config.endpoint, bind=config.bind, topic=config.topic, hwm=config.hwm,
                          max_payload_bytes=int(config.max_payload_mb * 2**20), keys=curve_keys(config.curve),
                          context=context)


def _feeder(pipeline: Pipeline, config: InputConfig, context: zmq.Context) -> FeederSource:
    if not config.uri:
        raise ConfigError(f"input.source {config.source!r} needs input.uri (a path, camera index or URL)")
    return FeederSource(pipeline, paced(open_source(config.source, config.uri, loops=config.loops),
                                        config.rate_hz or None))


SOURCES: dict[str, Callable[[Pipeline, InputConfig, zmq.Context], ZmqFrameSource | FeederSource]] = {
    "zmq": _zmq_source, "file": _feeder, "opencv": _feeder}


class Node:
    """Builds predictor, buffer, pipeline and transports from a :class:`NodeConfig`."""

    def __init__(self, config: NodeConfig, *, context: zmq.Context | None = None) -> None:
        self.config = config
        operating = config.operating
        if operating.threads:
            torch.set_num_threads(operating.threads)
        log.info("loading %s%s", config.model or f"the bundled model ({BUNDLED_MODEL.name})",
                 "; profiling operating points (cached after the first start)" if config.control.enabled else "")
        checkpoint = load_checkpoint(config.model or BUNDLED_MODEL)
        self.predictor = Predictor(checkpoint, data_sparsity=operating.data_sparsity,
                                   model_sparsity=operating.model_sparsity, policy=operating.policy,
                                   engine=operating.engine, device=operating.device,
                                   input_pixel_km=config.input.pixel_km, data_budget=operating.data_budget,
                                   max_data_sparsity=operating.max_data_sparsity, area_guard=operating.area_guard)
        policy = BufferPolicy(int(config.buffer.period_s * 1e9), config.buffer.max_gap_periods, config.buffer.resize,
                              self.predictor.input_limits)
        buffer = RingBuffer(checkpoint.input_frames, checkpoint.model.channels, config.buffer.grid, policy,
                            stride=frame_stride(config.input.step_minutes, checkpoint.step_minutes))
        context = context or zmq.Context.instance()
        self.sink = ZmqResultSink(config.output.endpoint, bind=config.output.bind, hwm=config.output.hwm,
                                  status_every=config.output.status_every, keys=curve_keys(config.output.curve),
                                  context=context, step_minutes=checkpoint.step_minutes)
        self.meter, self.control_server, forecaster = None, None, self.predictor
        if config.control.enabled:
            forecaster = self._controlled(config, checkpoint, context)
        self.pipeline = Pipeline(forecaster, buffer, [self.sink, *self._recorders(config, checkpoint)],
                                 units=checkpoint.normaliser.units)
        self.sink.status_source = lambda: {**self.pipeline.stats(), **getattr(forecaster, "operating_point", {})}
        self.source = SOURCES[config.input.source](self.pipeline, config.input, context)
        self.context = context
        self._stopped = threading.Event()

    def _controlled(self, config: NodeConfig, checkpoint, context: zmq.Context) -> ControlledPredictor:
        """Profile this model on this machine (cached), then let the controller pick each frame's point."""
        self.meter = detect_meter()
        controller = profiled_controller(self.predictor, config.model or BUNDLED_MODEL, config.control, self.meter)
        if config.control.endpoint:
            self.control_server = ControlServer(controller, config.control.endpoint, context=context).start()
        return ControlledPredictor(self.predictor, controller, self.meter)

    @staticmethod
    def _recorders(config: NodeConfig, checkpoint) -> list:
        record, sinks = config.record, []
        if record.mcap:
            sinks.append(McapRecorder(record.mcap))
        if record.snapshots:
            sinks.append(SnapshotSink(record.snapshots, every=record.snapshot_every,
                                      limits=(checkpoint.normaliser.low, checkpoint.normaliser.high)))
        return sinks

    def start(self) -> Node:
        self.pipeline.start()
        self.source.start()
        source = self.config.input
        log.info("node up: frames from %s, forecasts on %s, sd=%.2f sw=%.2f",
                 source.endpoint if source.source == "zmq" else f"{source.source}:{source.uri}",
                 self.config.output.endpoint, self.predictor.data_sparsity, self.predictor.model_sparsity)
        return self

    def run(self) -> None:
        """Serve until :meth:`stop` (or SIGINT/SIGTERM in the CLI), logging rates, drops and latency."""
        interval = self.config.log_every_s
        before = self.pipeline.stats()
        while not self._stopped.wait(interval):
            self.sink.publish_status()
            now = self.pipeline.stats()
            point = getattr(self.pipeline.forecaster, "operating_point", {})
            health = summarise(now, before, interval, point, point.get("latency_budget_ms"))
            log.log(logging.INFO if health.level == Level.OK else logging.WARNING, "%s: %s", health.message,
                    ", ".join(f"{key}={value}" for key, value in health.strings().items()))
            before = now

    def stop(self) -> None:
        """Close the source, finish the forecast in flight, close the sinks (once; later calls return)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.source.close()
        self.pipeline.stop()
        if self.control_server is not None:
            self.control_server.close()
        if self.meter is not None:
            self.meter.close()
        stop_authenticator(self.context)
        log.info("node stopped: %s", self.pipeline.stats())
