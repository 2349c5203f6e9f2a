"""Fuzz the wire-protocol decoder far beyond the CI budget: mutated valid messages and random bytes.

    python benchmarks/fuzz_decoder.py --cases 200000

Every case must either decode or raise ProtocolError; anything else is a bug (printed, exit 1).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from dyna_stream.stream.protocol import Message, ProtocolError, decode, encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    seeds = [[bytes(f) for f in encode("frame", Message("frame", 3, 10**18, "radar", array, "dBZ", {"k": [1, 2]}))]
             for array in (np.zeros((4, 5), np.float32), np.ones((1, 2, 3), np.uint16), np.arange(6, dtype="f8"))]
    outcomes = {"decoded": 0, "refused": 0}
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
            decode([bytes(f) for f in frames])
            outcomes["decoded"] += 1
        except ProtocolError:
            outcomes["refused"] += 1
        except Exception as exc:  # the finding this script exists for
            print(f"case {case}: {type(exc).__name__}: {exc}\n{frames!r}")
            sys.exit(1)
    print(f"{args.cases} cases in {time.perf_counter() - started:.1f} s: {outcomes}; only ProtocolError raised")


if __name__ == "__main__":
    main()
