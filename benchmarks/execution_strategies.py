"""Execution strategies at two grid sizes: dense eager / graphed, sparse dynamic / static / graphed, blocks.

Batch 1, float32, the bundled radar model, on real radar with its coverage:

- ``bundled``: the bundled sample at the model's grid (306 × 190 → 320 × 192);
- ``full``: the FMI composite at its native 1 km (1226 × 760 → 1232 × 768) from
  ``DATA_ROOT/radar_fmi/20170509`` (the model runs there untrained for its scale: a timing, not a
  forecast).

Per candidate: median and p95 latency (``sparse_speedup.timed``: candidates take turns), executed
MACs, and per step from ``torch.profiler`` (``dyna_stream.sparse.profiling``) the leaf operator
calls (≈ kernel launches on a GPU), the device kernels (CUDA only) and the host syncs. Dense =
the backbone alone, as in ``sparse_speedup.py``; every sparse candidate is the whole Dyna-Pruner
step (mask generator, selection, coarse path, backbone). On CUDA the dense backbone is also
replayed from a CUDA graph and the sparse step from one graph per operating point
(``GraphedSteps``); on a CPU the graphed step would only be the static one again and is left out.

Last, an **estimate** for an NVIDIA Jetson AGX Orin, labelled as one: the measured MACs and
operator/kernel counts priced with assumed rates (``--orin-*``): 2 FLOP per MAC at a share of the
GPU's FP32 peak, plus a host cost per eagerly launched operator, or a device cost per kernel of
a replayed graph. No Orin was measured.

    python benchmarks/execution_strategies.py [--sizes bundled full] [--device cpu|cuda] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from sparse_speedup import timed  # noqa: E402  (the shared turn-taking timer)

from dyna_stream.assets import BUNDLED_MODEL, BUNDLED_SAMPLE  # noqa: E402
from dyna_stream.data.radar_fmi import load_event  # noqa: E402
from dyna_stream.data.registry import get_dataset, load_path  # noqa: E402
from dyna_stream.data.windows import model_input, pad_to_multiple  # noqa: E402
from dyna_stream.extrapolation import get_extrapolator  # noqa: E402
from dyna_stream.model.checkpoint import load_checkpoint  # noqa: E402
from dyna_stream.model.context import MaskContext  # noqa: E402
from dyna_stream.sparse import SparseEngine  # noqa: E402
from dyna_stream.sparse.blocks import BlockEngine  # noqa: E402
from dyna_stream.sparse.graphs import GraphedSteps  # noqa: E402
from dyna_stream.sparse.profiling import step_counts  # noqa: E402

# Jetson AGX Orin 64 GB, assumed rates (see --help): FP32 peak = 2048 CUDA cores × 2 FLOP × 1.3 GHz
ORIN_FP32_TFLOPS = 2048 * 2 * 1.3e9 / 1e12
ORIN_EFFICIENCY = 0.4          # share of that peak small batch-1 convolutions reach (assumed)
ORIN_EAGER_OP_US = 50.0        # host cost per eagerly launched operator on its Cortex-A78AE (assumed)
ORIN_GRAPH_KERNEL_US = 2.0     # device cost per kernel node of a replayed graph (assumed)


def radar_window(series, checkpoint, device: torch.device) -> dict[str, torch.Tensor]:
    """The last T_in frames of ``series`` as the model's normalised, padded inputs, with coverage."""
    frames = series.values[-checkpoint.t_in:]
    fallback = get_extrapolator(get_dataset(checkpoint.dataset).fallback)(frames, checkpoint.t_out,
                                                                          checkpoint.fill_value)
    tile = checkpoint.model.tile_size
    coverage = pad_to_multiple(series.valid[-checkpoint.t_in:].all(axis=0).any(axis=0, keepdims=True), tile, False)
    return {"frames": model_input(frames, checkpoint.normaliser, tile, checkpoint.fill_value)[None].to(device),
            "fallback": model_input(fallback, checkpoint.normaliser, tile, checkpoint.fill_value)[None].to(device),
            "coverage": torch.from_numpy(np.ascontiguousarray(coverage))[None].float().to(device)}


def windows(sizes: list[str], checkpoint, data_root: Path, device: torch.device) -> dict[str, dict]:
    loaders = {"bundled": lambda: load_path(BUNDLED_SAMPLE),
               "full": lambda: load_event(data_root / "radar_fmi" / "20170509", downsample_factor=1)}
    return {size: radar_window(loaders[size](), checkpoint, device) for size in sizes}


def graphed_dense(backbone, inputs: torch.Tensor):
    """The dense backbone replayed from one CUDA graph (warm-up on a side stream, then capture)."""
    static = inputs.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            backbone(static, MaskContext())
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        backbone(static, MaskContext())
    return graph.replay


def candidates_for(model, window: dict, points: list[float], device: torch.device) -> tuple[dict, dict]:
    """name → step, name → executed MACs."""
    frames, fallback, coverage = window["frames"], window["fallback"], window["coverage"]
    inputs = torch.cat(model.start(frames, fallback)[1], dim=1)   # [X, base, any context]
    dense_ctx = MaskContext()
    model.backbone(inputs, dense_ctx)
    dense_macs = float(model.backbone.macs(dense_ctx, 1, device)[0])
    steps = {"dense eager": lambda: model.backbone(inputs, MaskContext())}
    macs = {"dense eager": dense_macs}
    if device.type == "cuda":
        steps["dense graph"], macs["dense graph"] = graphed_dense(model.backbone, inputs), dense_macs
    engines = {"sparse dynamic": SparseEngine(model), "sparse static": SparseEngine(model, shapes="static"),
               "blocks": BlockEngine(model)}
    if device.type == "cuda":
        engines["sparse graphed"] = GraphedSteps(model)
    for point in points:
        for name, engine in engines.items():
            label = f"{name} {point:g}"
            steps[label] = (lambda e=engine, s=point: e(frames, fallback, data_sparsity=s, model_sparsity=s,
                                                       coverage=coverage))
            macs[label] = float(steps[label]().accounting[0].macs)
    return steps, macs


def orin_estimate_ms(macs: float, operators: float, kernels: float, graphed: bool, args) -> float:
    """The estimate's price of one step (see the module doc), ms: launched eagerly, or replayed from
    a graph (the kernels measured on a GPU, else the operator count as their stand-in)."""
    compute = 2 * macs / (args.orin_tflops * 1e12 * args.orin_efficiency)
    launches = (kernels or operators) * args.orin_graph_kernel_us if graphed else operators * args.orin_eager_op_us
    return (compute + launches * 1e-6) * 1e3


def orin_estimates(macs: float, count, args) -> dict[str, float | None]:
    """Eager and graphed estimates; a step with host syncs cannot be captured (graphed: None)."""
    return {"orin_eager_ms": orin_estimate_ms(macs, count.operators, count.kernels, False, args),
            "orin_graphed_ms": None if count.host_syncs else orin_estimate_ms(macs, count.operators, count.kernels,
                                                                               True, args)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["bundled", "full"], choices=["bundled", "full"])
    parser.add_argument("--points", nargs="+", type=float, default=[0.5, 0.7, 0.9], help="sd = sw points")
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--orin-tflops", type=float, default=ORIN_FP32_TFLOPS, help="Orin FP32 peak, TFLOPS")
    parser.add_argument("--orin-efficiency", type=float, default=ORIN_EFFICIENCY, help="share of the peak reached")
    parser.add_argument("--orin-eager-op-us", type=float, default=ORIN_EAGER_OP_US, help="host µs per eager op")
    parser.add_argument("--orin-graph-kernel-us", type=float, default=ORIN_GRAPH_KERNEL_US,
                        help="device µs per kernel of a replayed graph")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    checkpoint = load_checkpoint(BUNDLED_MODEL, map_location=device)
    model = checkpoint.model.to(device).eval()
    chip = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    record = {"device": str(device), "chip": chip, "threads": args.threads, "torch": torch.__version__,
              "checkpoint": str(BUNDLED_MODEL), "runs": args.runs, "sizes": {},
              "orin_estimate": {"label": "ESTIMATE, not a measurement", "fp32_tflops": args.orin_tflops,
                                "efficiency": args.orin_efficiency, "eager_op_us": args.orin_eager_op_us,
                                "graph_kernel_us": args.orin_graph_kernel_us}}
    print(f"device {device} ({chip}), threads {args.threads}, batch 1, float32, {args.runs} runs")
    for size, window in windows(args.sizes, checkpoint, Path(args.data_root), device).items():
        with torch.no_grad():
            steps, macs = candidates_for(model, window, args.points, device)
            latency = timed(steps, runs=args.runs, warmup=args.warmup, device=device)
            counts = {name: step_counts(step, device) for name, step in steps.items()}
        baseline = min(latency[name]["median_ms"] for name in ("dense eager", "dense graph") if name in latency)
        rows = {}
        grid = tuple(window["frames"].shape[-2:])
        print(f"\n{size} grid {grid[0]} × {grid[1]} (coverage {window['coverage'].mean():.0%}); speedup vs the "
              f"fastest dense ({baseline:.2f} ms)")
        print(f"{'candidate':<22}{'median ms':>10}{'p95 ms':>9}{'speedup':>9}{'GMACs':>8}{'ops':>7}{'kernels':>8}"
              f"{'syncs':>7}{'Orin eager':>11}{'Orin graph':>11}")
        for name in steps:
            count = counts[name]
            estimate = orin_estimates(macs[name], count, args)
            rows[name] = {**latency[name], "speedup": baseline / latency[name]["median_ms"], "macs": macs[name],
                          **count.as_dict(), **estimate}
            graphed = "–" if estimate["orin_graphed_ms"] is None else f"{estimate['orin_graphed_ms']:.2f}"
            print(f"{name:<22}{latency[name]['median_ms']:>10.2f}{latency[name]['p95_ms']:>9.2f}"
                  f"{rows[name]['speedup']:>9.2f}{macs[name] / 1e9:>8.3f}{count.operators:>7.0f}{count.kernels:>8.0f}"
                  f"{count.host_syncs:>7.0f}{estimate['orin_eager_ms']:>11.2f}{graphed:>11}")
        record["sizes"][size] = {"grid": list(grid), "coverage": float(window["coverage"].mean()),
                                 "baseline_ms": baseline, "candidates": rows}
    print("\nOrin columns: an ESTIMATE from the counts above (see --help), not a measurement; graph: the step\n"
          "replayed from a CUDA graph (only steps without host syncs can be captured).")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
