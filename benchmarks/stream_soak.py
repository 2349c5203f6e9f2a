"""Soak: the node under a steady real-radar stream for --minutes; memory and threads must stay flat.

    python benchmarks/stream_soak.py --minutes 10

A publisher thread loops the bundled 12-frame radar sample over ZeroMQ (ipc://) at --rate frames/s into
a node running the bundled model (sparse engine, sd = sw = 0.7); a client consumes the
forecasts. Every --every seconds it samples the process's resident memory and thread count.
It reports RSS growth after the first sample period (warm-up: allocator pools, caches) and
whether the thread count changed; a leak shows as steady growth.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

from loopback import loopback_node


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
    duration = args.minutes * 60
    loops = int(duration * args.rate / 12) + 1
    with loopback_node(rate_hz=args.rate, loops=loops) as (node, client, _publisher):
        received = [0]
        consumer = threading.Thread(target=lambda: [received.__setitem__(0, received[0] + 1)
                                                    for _ in client.updates(timeout_s=5)], daemon=True)
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
    first, last = samples[0], samples[-1]
    print(f"RSS {first['rss_mib']:.1f} → {last['rss_mib']:.1f} MiB ({last['rss_mib'] - first['rss_mib']:+.1f} MiB "
          f"after the first {first['t_s']:.0f} s); threads {first['threads']} → {last['threads']}; "
          f"{last['published']} forecasts from {last['received']} frames in {last['t_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(samples, indent=2))


if __name__ == "__main__":
    main()
