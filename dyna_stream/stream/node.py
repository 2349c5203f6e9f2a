"""The streaming node: ZeroMQ frames in, forecasts and importance maps out (``dyna-stream serve``)."""
from __future__ import annotations

import logging
import threading

import torch
import zmq

from ..assets import BUNDLED_MODEL
from ..config import NodeConfig
from ..model.checkpoint import load_checkpoint
from ..predictor import Predictor
from .pipeline import Pipeline
from .ring_buffer import BufferPolicy, RingBuffer
from .zmq_transport import ZmqFrameSource, ZmqResultSink

log = logging.getLogger(__name__)


class Node:
    """Builds predictor, buffer, pipeline and transports from a :class:`NodeConfig`."""

    def __init__(self, config: NodeConfig, *, context: zmq.Context | None = None) -> None:
        self.config = config
        operating = config.operating
        if operating.threads:
            torch.set_num_threads(operating.threads)
        checkpoint = load_checkpoint(config.model or BUNDLED_MODEL)
        self.predictor = Predictor(checkpoint, data_sparsity=operating.data_sparsity,
                                   model_sparsity=operating.model_sparsity, policy=operating.policy,
                                   engine=operating.engine)
        policy = BufferPolicy(int(config.buffer.period_s * 1e9), config.buffer.max_gap_periods, config.buffer.resize)
        buffer = RingBuffer(checkpoint.t_in, checkpoint.model.channels, config.buffer.grid, policy)
        context = context or zmq.Context.instance()
        self.sink = ZmqResultSink(config.output.endpoint, bind=config.output.bind, hwm=config.output.hwm,
                                  status_every=config.output.status_every, context=context)
        self.pipeline = Pipeline(self.predictor, buffer, [self.sink], units=checkpoint.normaliser.units)
        self.sink.status_source = self.pipeline.stats
        self.source = ZmqFrameSource(self.pipeline, config.input.endpoint, bind=config.input.bind,
                                     topic=config.input.topic, hwm=config.input.hwm,
                                     max_payload_bytes=int(config.input.max_payload_mb * 2**20), context=context)
        self._stopped = threading.Event()

    def start(self) -> Node:
        self.pipeline.start()
        self.source.start()
        log.info("node up: frames from %s, forecasts on %s, sd=%.2f sw=%.2f",
                 self.config.input.endpoint, self.config.output.endpoint, self.predictor.data_sparsity,
                 self.predictor.model_sparsity)
        return self

    def run(self) -> None:
        """Serve until :meth:`stop` (or SIGINT/SIGTERM in the CLI), logging rates and latency."""
        while not self._stopped.wait(self.config.log_every_s):
            log.info("stats %s", self.pipeline.stats())

    def stop(self) -> None:
        """Close the source, finish the forecast in flight, close the sinks."""
        self._stopped.set()
        self.source.close()
        self.pipeline.stop()
        log.info("node stopped: %s", self.pipeline.stats())
