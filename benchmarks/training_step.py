"""Cost of BatchNorm statistics over the active elements (``model.norm_statistics: active``) per
training step, against plain BatchNorm (``all``), measured interleaved in one process.

    python benchmarks/training_step.py [--crop 64] [--batch 8] [--runs 8] [--sparsity 0.6]

One step = forward + loss + backward of the radar SimVP (configs/radar_simvp.yaml) on real radar
patches (radar-fmi training windows, ``--crop``² at stride crop/2) at sd = sw = ``--sparsity``;
prints the median and 20th percentile ms of each and the ratio active / all.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from dyna_stream.config import load_config
from dyna_stream.model.checkpoint import build_model
from dyna_stream.model.loss import LossWeights, dyna_loss
from dyna_stream.train.trainer import _batch_of, prepare_data, training_samples

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "radar_simvp.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=8, help="rounds; each times every batch with each model")
    parser.add_argument("--sparsity", type=float, default=0.6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = [f"data.root={args.data_root}"] if args.data_root else []
    config = load_config(CONFIG, ["train.sample_unit=patch", f"train.crop={args.crop}", *root])
    data = prepare_data(config, build_model(config.model, t_in=6, t_out=6, channels=1).tile_size)
    samples = training_samples(config.train, data.train)
    generator = torch.Generator().manual_seed(0)
    batches = [_batch_of(samples, np.arange(i * args.batch, (i + 1) * args.batch) % len(samples), args.crop,
                         data.train.multiple, generator) for i in range(6)]
    models = {mode: build_model(load_config(CONFIG, [f"model.norm_statistics={mode}"]).model, t_in=6, t_out=6,
                                channels=1).train() for mode in ("active", "all")}
    times: dict[str, list[float]] = {mode: [] for mode in models}
    for _ in range(args.runs):
        for mode, model in models.items():
            for batch in batches:
                started = time.perf_counter()
                prediction = model(batch["frames"], batch["fallback"], data_sparsity=args.sparsity,
                                   model_sparsity=args.sparsity)
                loss, _ = dyna_loss(prediction, batch["target"], batch["valid"], weights=LossWeights(),
                                    model_sparsity=args.sparsity, gate_mode=config.model.gate_mode)
                loss.backward()
                times[mode].append(1000 * (time.perf_counter() - started))
    medians = {}
    for mode, values in times.items():
        values = values[len(batches):]                  # the first round warms up
        medians[mode] = float(np.median(values))
        print(f"{mode:>6}: median {medians[mode]:6.1f} ms, p20 {np.percentile(values, 20):6.1f} ms per step "
              f"(batch {args.batch}, {args.crop}², sd = sw = {args.sparsity})")
    print(f"active / all: {medians['active'] / medians['all']:.3f}")


if __name__ == "__main__":
    main()
