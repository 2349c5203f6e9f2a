"""Transport + buffer overhead per frame and ingest rate of the streaming node, without inference,
then end-to-end latency with the model (DESIGN §4).

    python benchmarks/stream_throughput.py [--frames 3000] [--size 256]

Overhead: a frame's send time (its stamp) → decoded, validated and pushed into the ring buffer
with the window copied for inference, over a real ZeroMQ socket on loopback (ipc://), sent at a
paced rate. Ingest: frames per second received and buffered when sent as fast as possible.
End to end: bundled radar sample → node (sparse model, sd = sw = 0.7) → subscriber, receive of
the newest frame → forecast published.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import zmq
from loopback import loopback_node

from dyna_stream.stream.pipeline import Pipeline
from dyna_stream.stream.protocol import Message, encode
from dyna_stream.stream.ring_buffer import RingBuffer
from dyna_stream.stream.zmq_transport import ZmqFrameSource


class TimedPipeline(Pipeline):
    """Records send → buffered for every frame (the stamp carries the send time)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.overheads_ms: list[float] = []

    def submit(self, frame, stamp_ns, frame_id="", received_ns=None):
        outcome = super().submit(frame, stamp_ns, frame_id, received_ns)
        self.overheads_ms.append((time.time_ns() - stamp_ns) / 1e6)
        return outcome


def transport(frames: int, size: int, rate_hz: float | None, directory: str) -> TimedPipeline:
    endpoint = f"ipc://{directory}/bench-{rate_hz}"
    context = zmq.Context()
    pipeline = TimedPipeline(lambda w: SimpleNamespace(forecast=w[-1:], importance=w[-1, 0], macs=0),
                             RingBuffer(6, 1, (size, size)), [])
    source = ZmqFrameSource(pipeline, endpoint, bind=True, hwm=100_000, context=context).start()
    sender = context.socket(zmq.PUB)
    sender.setsockopt(zmq.SNDHWM, 100_000)
    sender.connect(endpoint)
    time.sleep(0.5)
    frame = np.random.default_rng(0).normal(size=(size, size)).astype(np.float32)
    started = time.perf_counter()
    for seq in range(frames):
        sender.send_multipart(encode("frame", Message("frame", seq, time.time_ns(), "bench", frame)), copy=False)
        if rate_hz:
            time.sleep(1.0 / rate_hz)
    deadline = time.monotonic() + 30
    while len(pipeline.overheads_ms) < frames and time.monotonic() < deadline:
        time.sleep(0.01)
    pipeline.elapsed_s = time.perf_counter() - started
    source.close()
    sender.close(0)
    pipeline.stop()
    context.term()
    return pipeline


def end_to_end(updates: int) -> list[float]:
    with loopback_node(rate_hz=2.0, loops=-(-updates // 7) + 1) as (_, client, _publisher):
        return [u.latency_ms for u in client.wait_for(updates, timeout_s=120)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--updates", type=int, default=20, help="forecasts for the end-to-end latency")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        paced = transport(min(args.frames, 1000), args.size, 500.0, directory)
        flood = transport(args.frames, args.size, None, directory)
    latencies = end_to_end(args.updates)
    overhead = np.array(paced.overheads_ms)
    print(f"{args.size}×{args.size} float32 frames over ZeroMQ ipc://, no inference")
    print(f"  overhead send → buffered (paced 500/s, {overhead.size} frames): "
          f"p50 {np.percentile(overhead, 50):.3f} ms, p99 {np.percentile(overhead, 99):.3f} ms")
    print(f"  ingest as fast as possible: {len(flood.overheads_ms)} frames in {flood.elapsed_s:.2f} s = "
          f"{len(flood.overheads_ms) / flood.elapsed_s:.0f} frames/s; dropped: {args.frames - len(flood.overheads_ms)}")
    if latencies:
        print(f"end to end with the bundled model (sd=sw=0.7, {len(latencies)} forecasts): receive → publish "
              f"p50 {np.percentile(latencies, 50):.1f} ms, p99 {np.percentile(latencies, 99):.1f} ms")


if __name__ == "__main__":
    main()
