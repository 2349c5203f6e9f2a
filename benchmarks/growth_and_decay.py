"""Does a radar model assume storms decay? Each source's validation split scored as recorded and
played backwards (issue 17).

Every radar event we train on happens to be decaying (afternoon or evening storms); FMI 2017-05-09
is a midday event whose showers grow. Played backwards, a validation event becomes a growing one
with the same cells and the opposite motion, so scoring a checkpoint on both directions measures
how much it leans on a learned decay without touching any test split. Per checkpoint, split and
direction: optical flow (the baseline and the model's fallback), the dense path, the checkpoint's
default point and sd = sw = 0.7 — MSE over the six leads, CSI@20 and the frequency bias at 20 dBZ
at +30 min (< 1: too little painted).

    python benchmarks/growth_and_decay.py --data-root ../shared/data [--checkpoint A.pt B.pt] [--split val]
                                          [--json out.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dyna_stream.assets import BUNDLED_MODEL
from dyna_stream.data.registry import get_dataset, load_parts
from dyna_stream.evaluate.runner import Operating, baseline_forecasts, model_forecasts, score
from dyna_stream.model.checkpoint import Checkpoint, checkpoint_windows, load_checkpoint

SOURCES = ("radar-fmi", "radar-knmi", "radar-mrms")
THRESHOLD = 20.0    # dBZ


def forecasters(checkpoint: Checkpoint) -> dict[str, Operating | None]:
    """Label → how the checkpoint runs (None: optical flow, no model)."""
    sd, sw = checkpoint.operating_point
    return {"optical flow": None, "dense path": Operating("dyna", 0.0, 0.0, device="cpu"),
            f"default {sd:g}/{sw:g}": Operating("dyna", sd, sw, device="cpu"),
            "0.7/0.7": Operating("dyna", 0.7, 0.7, device="cpu")}


def summary(scores: dict) -> dict[str, float]:
    return {"mse": scores["mse_mean"], "csi20": scores[f"csi@{THRESHOLD:g}_mean"],
            "bias20_30min": scores[f"bias@{THRESHOLD:g}"][-1]}


def run_split(checkpoint: Checkpoint, dataset: str, split: str, data_root: str, reverse: bool) -> dict[str, dict]:
    spec = get_dataset(dataset)
    parts = load_parts(dataset, split, data_root)
    parts = [part.time_reversed() for part in parts] if reverse else parts
    windows = checkpoint_windows(checkpoint, parts, spec)
    rows = {}
    for label, operating in forecasters(checkpoint).items():
        forecasts = (baseline_forecasts(windows, "advection") if operating is None
                     else model_forecasts(checkpoint, windows, operating))
        rows[label] = summary(score(windows, forecasts, thresholds=(THRESHOLD,),
                                    data_range=windows.normaliser.data_range))
    return rows


def render(results: dict) -> str:
    lines = ["| checkpoint | split | direction | forecaster | MSE [dBZ²] | CSI@20 | bias@20 +30 min |",
             "|---|---|---|---|---|---|---|"]
    for name, by_split in results.items():
        for split, by_direction in by_split.items():
            for direction, rows in by_direction.items():
                for label, row in rows.items():
                    lines.append(f"| {name} | {split} | {direction} | {label} | {row['mse']:.2f} | "
                                 f"{row['csi20']:.3f} | {row['bias20_30min']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", nargs="+", default=[str(BUNDLED_MODEL)])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for path in args.checkpoint:
        checkpoint = load_checkpoint(path)
        results["bundled" if path == str(BUNDLED_MODEL) else path] = {
            f"{dataset} {args.split}": {direction: run_split(checkpoint, dataset, args.split, args.data_root,
                                                              reverse=direction == "backwards")
                                         for direction in ("as recorded", "backwards")}
            for dataset in args.sources}
    table = render(results)
    print(table)
    if args.json:
        args.json.write_text(json.dumps({"split": args.split, "threshold_dbz": THRESHOLD, "results": results},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
