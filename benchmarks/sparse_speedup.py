"""Real wall-clock speedup of the sparse engine over the dense model (DESIGN §3, §7).

Batch 1, float32, the trained radar model at the §7 resolution (306 × 190 padded to 320 × 192),
on a real radar window. Dense = the best of eager and torch.compile (unless --no-compile);
sparse = the whole Dyna-Pruner step (mask generator + mask selection + coarse path + sparse backbone)
at sd = sw ∈ SPARSITIES and at the checkpoint's default point (marked "default");
dense = the backbone alone (no generator, no coarse path): a plain dense forecaster.
Eager dense and every sparse point are timed together in this process. The compiled dense model
is timed in a child process against eager dense again (Inductor's own OpenMP threads would
otherwise contend with the eager candidates on a 2-core machine); its latency here is eager dense
× that measured ratio.

On CUDA the compiled dense model uses ``mode="reduce-overhead"`` (CUDA graphs): at batch 1 a GPU is
launch-bound, and a graph replay is the fair dense baseline there. ``--profile FILE`` writes the
torch.profiler operator table of one sd=sw=0.7 step (where a sparse step spends its time).

    python benchmarks/sparse_speedup.py [--checkpoint M.pt] [--device cpu|cuda] [--threads 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from dyna_stream.assets import BUNDLED_MODEL, BUNDLED_SAMPLE
from dyna_stream.data.registry import get_dataset, load_path
from dyna_stream.data.windows import model_input
from dyna_stream.extrapolation import get_extrapolator
from dyna_stream.model.checkpoint import load_checkpoint
from dyna_stream.model.context import MaskContext
from dyna_stream.sparse import SparseEngine

SPARSITIES = (0.3, 0.5, 0.7, 0.9)


def point_label(sd: float, sw: float) -> str:
    return f"sd=sw={sd:g}" if sd == sw else f"sd={sd:g} sw={sw:g}"


def timed(candidates: dict, *, runs: int, warmup: int, device: torch.device, block: int = 5) -> dict[str, dict]:
    """Median and p95 latency (ms) of each ``fn()`` in ``candidates``.

    Candidates take turns in blocks of ``block`` timed calls, each block after one untimed call:
    every candidate meets the same drift of clocks and neighbours (ratios hold when absolute
    numbers wander), and each is timed in steady state, as a node running one operating point is.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    sync()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(-(-runs // block)):
        for name, fn in candidates.items():
            fn()
            sync()
            for _ in range(block):
                start = time.perf_counter()
                fn()
                sync()
                samples[name].append((time.perf_counter() - start) * 1e3)
    out = {}
    for name, values in samples.items():
        values.sort()
        out[name] = {"median_ms": statistics.median(values),
                     "p95_ms": values[min(len(values) - 1, int(0.95 * len(values)))], "runs": len(values)}
    return out


def window(checkpoint, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The latest T_in frames of the bundled real radar sample, normalised and padded."""
    series = load_path(BUNDLED_SAMPLE)
    frames = series.values[-checkpoint.t_in:]
    fallback = get_extrapolator(get_dataset(checkpoint.dataset).fallback)(frames, checkpoint.t_out,
                                                                          checkpoint.fill_value)
    tile = checkpoint.model.tile_size
    return tuple(model_input(a, checkpoint.normaliser, tile, checkpoint.fill_value)[None].to(device)
                 for a in (frames, fallback))


def write_profile(step, device: torch.device, path: Path, steps: int = 10) -> None:
    """The profiler's operator table (self time, calls) over ``steps`` calls of ``step``."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{steps} steps\n" + profiler.key_averages().table(sort_by=sort, row_limit=40))


def compiled_ratio(args: argparse.Namespace) -> dict:
    """Run this script's compiled phase in a child process: compiled / eager dense latency."""
    command = [sys.executable, __file__, "--phase", "compiled", "--checkpoint", args.checkpoint,
               "--device", args.device, "--threads", str(args.threads), "--runs", str(args.runs),
               "--warmup", str(args.warmup)]
    child = subprocess.run(command, capture_output=True, text=True)
    if child.returncode != 0:   # compile needs a C++ toolchain; the eager number still stands
        return {"error": (child.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(BUNDLED_MODEL))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile dense variant")
    parser.add_argument("--strategy", default="auto", choices=["auto", "windows", "canvas"],
                        help="sparse engine layer strategy (default: auto, per layer)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--profile", help="write the profiler table of one sd=sw=0.7 step here")
    parser.add_argument("--phase", default="main", choices=["main", "compiled"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    checkpoint = load_checkpoint(args.checkpoint, map_location=device)
    model = checkpoint.model.to(device).eval()
    frames, fallback = window(checkpoint, device)

    with torch.no_grad():
        inputs = torch.cat(model.start(frames, fallback)[1], dim=1)   # [X, base, any context]
        dense_ctx = MaskContext()
        model.backbone(inputs, dense_ctx)
        dense_macs = float(model.backbone.macs(dense_ctx, 1, device)[0])
        candidates = {"dense eager": lambda: model.backbone(inputs, dense_ctx)}
        if args.phase == "compiled":
            mode = "reduce-overhead" if device.type == "cuda" else "default"
            compiled = torch.compile(lambda x: model.backbone(x, MaskContext()), mode=mode)
            started = time.perf_counter()
            compiled(inputs)
            compile_seconds = time.perf_counter() - started
            candidates["dense compiled"] = lambda: compiled(inputs)
            latency = timed(candidates, runs=args.runs, warmup=args.warmup, device=device)
            print(json.dumps({"ratio": latency["dense compiled"]["median_ms"] / latency["dense eager"]["median_ms"],
                              "compile_seconds": compile_seconds, "raw": latency}))
            return
        candidates["mask generator"] = lambda: model.select_masks(frames, fallback, data_sparsity=0.7,
                                                                  model_sparsity=0.7)
        candidates["coarse path"] = lambda: model.base(frames, fallback)
        engine = SparseEngine(model, strategy=args.strategy)
        points = {point_label(s, s): (s, s) for s in SPARSITIES}
        default = point_label(*checkpoint.operating_point)
        points.setdefault(default, checkpoint.operating_point)
        macs = {}
        for label, (sd, sw) in sorted(points.items(), key=lambda item: item[1]):
            step = lambda sd=sd, sw=sw: engine(frames, fallback, data_sparsity=sd, model_sparsity=sw)  # noqa: E731
            macs[label] = step().accounting[0].macs
            candidates[label] = step
        latency = timed(candidates, runs=args.runs, warmup=args.warmup, device=device)
        if args.profile:
            write_profile(candidates["sd=sw=0.7"], device, Path(args.profile))

    dense = {"eager": latency["dense eager"]}
    compile_note = {} if args.no_compile else compiled_ratio(args)
    if "ratio" in compile_note:
        eager = dense["eager"]
        dense["compiled"] = {key: eager[key] * compile_note["ratio"] for key in ("median_ms", "p95_ms")}
    baseline = min(v["median_ms"] for v in dense.values())
    generator, coarse = latency["mask generator"], latency["coarse path"]
    rows = []
    for label in macs:
        point = latency[label]
        speedup, macs_ratio = baseline / point["median_ms"], dense_macs / macs[label]
        rows.append({"sd": points[label][0], "sw": points[label][1], "default": label == default, **point,
                     "macs": macs[label], "speedup": speedup, "macs_ratio": macs_ratio,
                     "efficiency": speedup / macs_ratio})

    header = f"{'point':<16}{'median ms':>10}{'p95 ms':>9}{'GMACs':>9}{'speedup':>9}{'MACs ratio':>11}{'effic.':>8}"
    chip = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device {device} ({chip}), threads {args.threads}, batch 1, float32, input {tuple(frames.shape[-2:])}, "
          f"{args.runs} runs")
    print(header)
    for name, value in dense.items():
        print(f"{'dense ' + name:<16}{value['median_ms']:>10.2f}{value['p95_ms']:>9.2f}{dense_macs / 1e9:>9.3f}"
              f"{baseline / value['median_ms']:>9.2f}{1.0:>11.1f}{'':>8}")
    if "error" in compile_note:
        print(f"dense compiled failed: {compile_note['error']}")
    elif compile_note:
        print(f"(dense compiled = eager × {compile_note['ratio']:.3f}, measured in a child process; "
              f"compile took {compile_note['compile_seconds']:.0f} s)")
    for row in rows:
        print(f"{point_label(row['sd'], row['sw']):<16}{row['median_ms']:>10.2f}{row['p95_ms']:>9.2f}"
              f"{row['macs'] / 1e9:>9.3f}{row['speedup']:>9.2f}{row['macs_ratio']:>11.1f}{row['efficiency']:>8.2f}"
              + ("  (default)" if row["default"] else ""))
    print(f"mask generator + selection: {generator['median_ms']:.2f} ms = "
          f"{100 * generator['median_ms'] / baseline:.1f}% of dense")
    print(f"coarse path (in every sparse step): {coarse['median_ms']:.2f} ms = "
          f"{100 * coarse['median_ms'] / baseline:.1f}% of dense, "
          f"{model.coarse_macs(*frames.shape[-2:]) / 1e9:.3f} GMACs")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "device": str(device), "threads": args.threads, "input": list(frames.shape[-2:]),
            "checkpoint": args.checkpoint, "dense": dense, "compile": compile_note, "dense_macs": dense_macs,
            "baseline_ms": baseline,
            "generator": generator, "coarse_path": coarse,
            "strategy": args.strategy, "sparse": rows, "torch": torch.__version__},
            indent=2))


if __name__ == "__main__":
    main()
