"""Threshold data budget against fixed top-k on real radar (issue 18 item 2).

For the radar validation split and each source's test split, one run scores the checkpoint at its
default point under top-k (the baseline) and under the threshold budget (the checkpoint's
calibrated tile threshold; cap sd = 0, i.e. content alone decides, and cap sd = the default point),
and prints MSE, CSI@20, mean executed GMACs and the spread of the kept share of the covered area
over the windows, with ratios to the top-k baseline of the same run.

    python benchmarks/data_budget.py --data-root ../shared/data [--checkpoint M.pt] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Iterator

import numpy as np
import torch

from dyna_stream.assets import BUNDLED_MODEL
from dyna_stream.data.registry import get_dataset, load_parts
from dyna_stream.evaluate.runner import Operating, WindowForecast, model_forecasts, score
from dyna_stream.model.checkpoint import Checkpoint, checkpoint_windows, load_checkpoint

SPLITS = (("radar-multi", "val"), ("radar-fmi", "test"), ("radar-knmi", "test"), ("radar-mrms", "test"))


def operatings(checkpoint: Checkpoint) -> dict[str, Operating]:
    sd, sw = checkpoint.operating_point
    return {f"top-k sd={sd:g}": Operating("dyna", sd, sw, device="cpu"),
            "threshold, cap sd=0": Operating("dyna", 0.0, sw, device="cpu", data_budget="threshold"),
            f"threshold, cap sd={sd:g}": Operating("dyna", sd, sw, device="cpu", data_budget="threshold")}


def tracked(forecasts: Iterator[WindowForecast], shares: list[float], macs: list[float]) -> Iterator[WindowForecast]:
    """Pass the forecasts through, noting each window's kept share of covered cells and its MACs."""
    for forecast in forecasts:
        covered = forecast.coverage
        shares.append(float(forecast.kept_tiles[covered].mean()) if covered.any() else 0.0)
        macs.append(forecast.macs)
        yield forecast


def run_split(checkpoint: Checkpoint, dataset: str, split: str, data_root: str) -> dict[str, dict]:
    spec = get_dataset(dataset)
    windows = checkpoint_windows(checkpoint, load_parts(dataset, split, data_root), spec)
    rows = {}
    for label, operating in operatings(checkpoint).items():
        shares, macs = [], []
        scores = score(windows, tracked(model_forecasts(checkpoint, windows, operating), shares, macs),
                       thresholds=(20.0,), data_range=windows.normaliser.data_range)
        rows[label] = {"mse": scores["mse_mean"], "csi20": scores["csi@20_mean"], "gmacs": float(np.mean(macs)) / 1e9,
                       "kept_share": [min(shares), float(np.mean(shares)), max(shares)]}
    baseline = next(iter(rows.values()))
    for row in rows.values():
        row["mse_vs_topk"] = row["mse"] / baseline["mse"] - 1.0
        row["gmacs_vs_topk"] = row["gmacs"] / baseline["gmacs"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(BUNDLED_MODEL))
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the record here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = load_checkpoint(args.checkpoint)
    point = checkpoint.default_point
    if point is None or point.tile_threshold is None:
        raise SystemExit(f"{args.checkpoint} has no calibrated tile threshold; run dyna-stream choose-point first")
    record = {"checkpoint": args.checkpoint, "default_point": [point.data_sparsity, point.model_sparsity],
              "tile_threshold": point.tile_threshold, "splits": {}}
    print(f"{'split':<18}{'budget':<22}{'MSE':>8}{'vs top-k':>10}{'CSI@20':>8}{'GMACs':>8}{'x top-k':>9}"
          f"{'kept share min/mean/max':>26}")
    for dataset, split in SPLITS:
        rows = run_split(checkpoint, dataset, split, args.data_root)
        record["splits"][f"{dataset}/{split}"] = rows
        for label, row in rows.items():
            low, mean, high = row["kept_share"]
            print(f"{dataset + '/' + split:<18}{label:<22}{row['mse']:>8.2f}{100 * row['mse_vs_topk']:>+9.1f}%"
                  f"{row['csi20']:>8.3f}{row['gmacs']:>8.3f}{row['gmacs_vs_topk']:>9.2f}"
                  f"{low:>10.2f} {mean:>6.2f} {high:>6.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(record, out, indent=2)


if __name__ == "__main__":
    main()
