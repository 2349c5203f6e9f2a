"""Fuzz the wire-protocol decoder far beyond the CI budget: mutated valid messages and random bytes,
seeded with the hard cases (values beyond float32, ±1e6, inf, stamps near 2^63, near-miss topics).

    python benchmarks/fuzz_decoder.py --cases 200000

Every case must either decode or raise ProtocolError, and what decodes on the exact topic goes
into a ring buffer with the bundled radar model's value limits, as in the node: the window must
only ever hold finite in-range values (or NaN) and stamps in [0, 2^63). Anything else is a bug
(printed, exit 1).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from dyna_stream.stream.pipeline import Pipeline
from dyna_stream.stream.protocol import Message, ProtocolError, decode, encode
from dyna_stream.stream.ring_buffer import BufferPolicy, RingBuffer

LIMITS = (-95.5, 158.5)                 # the bundled radar model's Predictor.input_limits, dBZ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    arrays = (np.zeros((4, 5), np.float32), np.ones((1, 4, 5), np.uint16), np.arange(20, dtype="f8").reshape(4, 5),
              np.full((4, 5), 1e300), np.full((4, 5), 3e38, np.float32), np.full((4, 5), -1e6, np.float32),
              np.full((4, 5), np.inf, np.float32), np.full((4, 5), np.nan, np.float32))
    seeds = [[bytes(f) for f in encode(topic, Message("frame", 3, stamp, "radar", array, "dBZ", {"k": [1, 2]}))]
             for array in arrays for stamp in (10**18, 2**63 - 1) for topic in ("frame", "framex")]
    buffer = RingBuffer(3, 1, (4, 5), BufferPolicy(10**9, 2.5, False, LIMITS))
    pipeline = Pipeline(lambda frames: None, buffer, [])
    outcomes = {"decoded": 0, "refused": 0, "into the buffer": 0}
    started = time.perf_counter()
    for case in range(args.cases):
        frames = [bytearray(f) for f in seeds[case % len(seeds)]]
        for _ in range(int(rng.integers(1, 6))):
            target = frames[int(rng.integers(0, len(frames)))]
            action = rng.integers(0, 3)
            if action == 0 and target:
                target[int(rng.integers(0, len(target)))] = int(rng.integers(0, 256))
            elif action == 1:
                del target[int(rng.integers(0, len(target) + 1)):]
            else:
                target.extend(rng.bytes(int(rng.integers(1, 16))))
        if rng.random() < 0.05:
            frames = frames[: int(rng.integers(0, 4))]
        try:
            topic, message = decode([bytes(f) for f in frames])
            outcomes["decoded"] += 1
            if topic == "frame" and message.array is not None:
                outcomes["into the buffer"] += pipeline.submit(message.array, message.stamp_ns) is not None
                check_window(buffer)
        except ProtocolError:
            outcomes["refused"] += 1
        except Exception as exc:  # the finding this script exists for
            print(f"case {case}: {type(exc).__name__}: {exc}\n{frames!r}")
            sys.exit(1)
    print(f"{args.cases} cases in {time.perf_counter() - started:.1f} s: {outcomes}; only ProtocolError raised, "
          "the window held only in-range values")


def check_window(buffer: RingBuffer) -> None:
    frames, stamps = buffer.window()
    measured = frames[~np.isnan(frames)]
    if not (np.isfinite(measured).all() and (measured >= LIMITS[0]).all() and (measured <= LIMITS[1]).all()):
        raise AssertionError(f"the window holds values outside {LIMITS}: {measured.min()} … {measured.max()}")
    if not ((stamps >= 0) & (stamps < 2**63)).all():
        raise AssertionError(f"the window holds stamps outside [0, 2^63): {stamps}")


if __name__ == "__main__":
    main()
