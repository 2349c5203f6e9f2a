"""The controller under load: a CPU hog starts mid-run; budget violations of a fixed dense model,
a fixed sd=sw=0.7 model and the controller, measured in the same run on the same windows.

    python benchmarks/controller_load.py [--frames 200] [--hog-at 50] [--budget-ms auto]

Each frame runs the three on the same real radar window (the bundled sample, looped), timing each
full predictor call (advection fallback + model). The budget defaults to 1.4 × the unloaded dense
median, which dense meets alone and misses once the hog (one busy process per core) runs. Error =
the validation MSE of the point used, from the profile.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # as `dyna-stream serve` runs (see dyna_stream.cli)

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dyna_stream.assets import BUNDLED_MODEL  # noqa: E402
from dyna_stream.control.controlled import ControlledPredictor  # noqa: E402
from dyna_stream.control.controller import Controller  # noqa: E402
from dyna_stream.control.profile import format_table, measure, points, profile_inputs  # noqa: E402
from dyna_stream.data.registry import default_root  # noqa: E402
from dyna_stream.model.checkpoint import load_checkpoint  # noqa: E402
from dyna_stream.predictor import Predictor  # noqa: E402


def start_hog(cores: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--hog-at", type=int, default=50)
    parser.add_argument("--budget-ms", type=float, help="p95 latency budget (default: 1.4 × unloaded dense)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hog-processes", type=int, default=2, help="busy processes started mid-run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = load_checkpoint(BUNDLED_MODEL)
    frames, windows = profile_inputs(checkpoint, default_root())
    rows = measure(Predictor(checkpoint), frames, windows, runs=8)
    print(format_table(rows))
    error_of = {(r["data_sparsity"], r["model_sparsity"]): r["error"] for r in rows}
    dense_ms = next(r["latency_ms"] for r in rows if r["data_sparsity"] == 0 and r["model_sparsity"] == 0)
    budget = args.budget_ms or 1.4 * dense_ms
    runners = {
        "dense": Predictor(checkpoint, data_sparsity=0.0, model_sparsity=0.0),
        "fixed 0.7": Predictor(checkpoint, data_sparsity=0.7, model_sparsity=0.7),
        "controller": ControlledPredictor(Predictor(checkpoint), Controller(points(rows), latency_budget_ms=budget)),
    }
    latency = {name: [] for name in runners}
    errors = {name: [] for name in runners}
    hogs: list[subprocess.Popen] = []
    try:
        for frame in range(args.frames):
            if frame == args.hog_at:
                hogs = start_hog(args.hog_processes)
            for name, run in runners.items():
                started = time.perf_counter()
                run(frames)
                latency[name].append((time.perf_counter() - started) * 1e3)
                predictor = run.predictor if isinstance(run, ControlledPredictor) else run
                errors[name].append(error_of[(predictor.data_sparsity, predictor.model_sparsity)])
    finally:
        for hog in hogs:
            hog.kill()
    print(f"\nbudget {budget:.1f} ms (p95); CPU hog ({args.hog_processes} busy process(es)) from frame {args.hog_at} "
          f"of {args.frames}")
    print(f"{'runner':<12}{'violations before':>19}{'violations under load':>23}{'p95 under load ms':>19}"
          f"{'mean val MSE':>14}")
    for name in runners:
        values = np.array(latency[name])
        before, after = values[: args.hog_at], values[args.hog_at + 10:]       # 10 frames to react
        print(f"{name:<12}{100 * (before > budget).mean():>18.1f}%{100 * (after > budget).mean():>22.1f}%"
              f"{np.percentile(after, 95):>19.1f}{statistics.mean(errors[name]):>14.2f}")
    controller = runners["controller"].controller
    print(f"controller: {controller.switches} switches, slowdown estimate {controller.slowdown.mean:.2f}")


if __name__ == "__main__":
    main()
