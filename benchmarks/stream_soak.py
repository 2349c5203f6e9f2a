"""Soak: the node under a steady real-radar stream for --minutes; memory and threads must stay flat.

    python benchmarks/stream_soak.py --minutes 10

A publisher thread loops the bundled radar sample over ZeroMQ (ipc://) at --rate frames/s into
a node running the bundled model (sparse engine, sd = sw = 0.7); a client consumes the
forecasts. Every --every seconds it samples the process's resident memory and thread count.
It reports RSS growth after the first sample period (warm-up: allocator pools, caches) and
whether the thread count changed; a leak shows as steady growth.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import zmq

from dyna_stream.assets import BUNDLED_SAMPLE
from dyna_stream.config import NodeConfig, load_config
from dyna_stream.data.registry import load_path
from dyna_stream.stream.client import ForecastClient
from dyna_stream.stream.node import Node
from dyna_stream.stream.publisher import replay


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--json", help="write the samples here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        frames_in, out = f"ipc://{directory}/in", f"ipc://{directory}/out"
        config = load_config(None, [f"input.endpoint={frames_in}", "input.bind=true", f"output.endpoint={out}"],
                             schema=NodeConfig)
        context = zmq.Context()
        node = Node(config, context=context).start()
        client = ForecastClient(out, context=context)
        series = load_path(BUNDLED_SAMPLE)
        duration = args.minutes * 60
        loops = int(duration * args.rate / len(series)) + 1
        publisher = threading.Thread(target=replay, args=(series, frames_in), daemon=True,
                                     kwargs={"rate_hz": args.rate, "loops": loops, "bind": False, "context": context})
        received = [0]
        consumer = threading.Thread(target=lambda: [received.__setitem__(0, received[0] + 1)
                                                    for _ in client.updates(timeout_s=5)], daemon=True)
        publisher.start()
        consumer.start()
        samples, started = [], time.monotonic()
        while time.monotonic() - started < duration:
            time.sleep(min(args.every, max(0.0, duration - (time.monotonic() - started))))
            stats = node.pipeline.stats()
            samples.append({"t_s": round(time.monotonic() - started, 1), "rss_mib": round(rss_mib(), 1),
                            "threads": threading.active_count(), "received": stats.get("received", 0),
                            "published": stats.get("published", 0), "client": received[0],
                            "p99_ms": round(stats.get("latency_p99_ms", float("nan")), 1)})
            print(samples[-1], flush=True)
        node.stop()
        consumer.join(10)         # ends when no forecast came for 5 s
        client.close()
    first, last = samples[0], samples[-1]
    print(f"RSS {first['rss_mib']:.1f} → {last['rss_mib']:.1f} MiB ({last['rss_mib'] - first['rss_mib']:+.1f} MiB "
          f"after the first {first['t_s']:.0f} s); threads {first['threads']} → {last['threads']}; "
          f"{last['published']} forecasts from {last['received']} frames in {last['t_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(samples, indent=2))


if __name__ == "__main__":
    main()
