"""Training efficiency of dynamic sample pruning (DESIGN §2b): full data, ST-Prune, loss-only
(InfoBatch-style) and a static random subset of ST-Prune's mean epoch size, trained with the same
model, seed and number of epochs, one after another in this process — plus full data for fewer
epochs (as many samples seen as ST-Prune), the cheapest way to spend the same compute.

    python benchmarks/training_efficiency.py [--datasets radar-fmi radar-multi taxi-nyc] [--seeds 3]
                                             [--epochs taxi-nyc=240] [--set train.sample_unit=patch …]
                                             [--out docs/benchmarks/…]
    python benchmarks/training_efficiency.py --merge A.json B.json --out C     # seeds run apart, one record

Reports per variant: training wall time (optimisation + sample selection, validation excluded),
samples trained on, test MSE/MAE of the selected model (lowest validation MSE) and of the final
epoch's model, and the ratios to full data (each run also records its selected epoch and the share
of the test event's echo its final data mask keeps, ``final_kept_event_share``); with ``--seeds K``
every variant trains K times (seeds S … S+K−1, S = ``--first-seed``, default 0, so a later run can
train further seeds): times and scores are means, test MSE carries its standard deviation over
seeds, and "paired Δ" is the mean ± std of each seed's change against full data with the same
seed; writes <out>.json, <out>.md and <out>.png
(validation MSE against training time, first seed) after every seed, so an interrupted run keeps
what it measured. ``--set train.device=cuda`` trains on the GPU (the record names the device).
radar-fmi trains the product's Dyna-Pruner SimVP (configs/radar_simvp.yaml; scored at sd=sw=0.7)
on every window's 64² patches at stride 32 (``train.sample_unit: patch``; 765 samples, 12 epochs);
``--set train.sample_unit=window --set train.crop=128 --epochs radar-fmi=150`` is the whole-window
protocol of the earlier records;
radar-multi trains the bundled model's recipe (configs/radar_multi_simvp.yaml: FMI + KNMI + MRMS,
coverage input, B-MSE + B-MAE) on the 3208 64² patches (stride 32) of its 84 training windows, 6
epochs, pruning quantile 0.85; its test split is FMI 2017-05-09 + KNMI's last hours + the held-out MRMS region;
taxi-nyc's 16 × 12 grid is a single 16-pixel tile, so it trains the same SimVP dense.
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dyna_stream.config import load_config  # noqa: E402
from dyna_stream.data.registry import get_dataset, load_parts  # noqa: E402
from dyna_stream.model.checkpoint import build_model, load_checkpoint  # noqa: E402
from dyna_stream.predictor import resolve_device  # noqa: E402
from dyna_stream.train.sample_pruning import mean_kept_fraction  # noqa: E402
from dyna_stream.train.trainer import (  # noqa: E402
    prepare_data,
    train,
    training_samples,
    validate,
    validation_point,
)

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("off", "st-prune", "infobatch", "static-random", "fewer-epochs")
PROTOCOL = ("windows", "samples", "sample_unit", "crop", "epochs", "units", "device", "settings")
LABELS = {"off": "full data", "st-prune": "ST-Prune", "infobatch": "loss only (InfoBatch-style)",
          "static-random": "static random subset", "fewer-epochs": "full data, fewer epochs (same windows seen)"}


@dataclass(frozen=True)
class Setup:
    overrides: tuple[str, ...]
    config: str = "radar_simvp.yaml"      # under configs/


SETUPS = {
    # samples: the 64² patches (stride 32) of the 17 windows, 765 in all (DESIGN §2b on a data set this small)
    "radar-fmi": Setup(("train.sample_unit=patch", "train.crop=64", "train.patch_stride=32", "train.epochs=12",
                        "train.validate_every_epochs=2", "train.warmup_steps=20", "train.calibrate_norm=false")),
    # the bundled model's recipe on FMI + KNMI + MRMS: 3208 patches of 64² (stride 32) of 84 windows
    # from three climates; 6 epochs (19 k samples seen, twice radar-fmi's 12 epochs of 765 patches);
    # quantile 0.85: pruned epochs keep 36 % of the patches (47 % over the run, budgeted for ≥ 2×;
    # at 0.8, 50 % gave 1.95×), within +1 % of full data on validation (docs/results.md)
    "radar-multi": Setup(("train.sample_unit=patch", "train.crop=64", "train.patch_stride=32", "train.epochs=6",
                          "train.validate_every_epochs=1", "train.warmup_steps=20", "train.calibrate_norm=false",
                          "train.prune_quantile=0.85"),
                         "radar_multi_simvp.yaml"),
    "taxi-nyc": Setup(("data.name=taxi-nyc", "train.policy=dense", "train.batch_size=32", "train.crop=16",
                       "train.epochs=120", "train.validate_every_epochs=10", "train.warmup_steps=20")),
}


def run_dataset(name: str, variants: tuple[str, ...], data_root: str | None, work: Path,
                extra: list[str], seeds: range = range(1)) -> Iterator[dict]:
    """Train every variant per seed; after each seed, the result over the seeds done so far."""
    base = [*SETUPS[name].overrides, "train.threads=2", *extra] + ([f"data.root={data_root}"] if data_root else [])
    config_path = REPO / "configs" / SETUPS[name].config
    config = load_config(config_path, base)
    spec = get_dataset(config.data.name)
    train_parts = load_parts(spec.name, "train", config.data.root)     # one series per source or region
    channels = train_parts[0].shape[1]
    tile = build_model(config.model, t_in=spec.t_in, t_out=spec.t_out, channels=channels).tile_size
    data = prepare_data(config, tile, train_series=train_parts)
    test = prepare_data(config, tile, train_series=train_parts,
                        val_series=load_parts(spec.name, "test", config.data.root))
    runs = {variant: [] for variant in variants}
    for seed in seeds:                            # seed-major: drift of the machine spreads over variants
        for variant in variants:
            run = load_config(config_path, [
                *base, *_variant(variant, config.train), f"train.seed={seed}",
                f"train.out_dir={work / name / variant / str(seed)}"])
            checkpoint = load_checkpoint(train(run, data=data, progress=False))
            history = checkpoint.metrics["history"]
            scores = validate(checkpoint, test, validation_point(run))
            selected = next(h["epoch"] for h in history if h["step"] == checkpoint.metrics["selected_step"])
            final = scores if selected == run.train.epochs else validate(
                load_checkpoint(Path(run.train.out_dir) / "last.pt"), test, validation_point(run))
            runs[variant].append({
                "seed": seed, "train_seconds": checkpoint.metrics["train_seconds"],
                "samples": checkpoint.metrics["samples"], "selection_seconds": checkpoint.metrics["selection_seconds"],
                "epochs": run.train.epochs, "steps": history[-1]["step"], "test_mse": scores["mse_mean"],
                "test_mae": scores["mae_mean"],
                "final_test_mse": final["mse_mean"], "final_test_mae": final["mae_mean"],
                "final_kept_event_share": final.get("kept_event_share"),
                "selected_epoch": selected,
                "curve": [(h["train_seconds"], h["val_mse"]) for h in history]})
            print(f"{name} seed {seed} {variant:>14}: {runs[variant][-1]['train_seconds']:7.1f} s, "
                  f"{runs[variant][-1]['samples']:7d} samples, test MSE {scores['mse_mean']:.3f} "
                  f"(final epoch {final['mse_mean']:.3f}), MAE {scores['mae_mean']:.3f}", flush=True)
        yield _result(data, config, runs, seeds[:seeds.index(seed) + 1])


def _result(data, config, runs: dict, seeds: range) -> dict:
    rows = _rows(runs)
    return {"windows": len(data.train), "samples": len(training_samples(config.train, data.train)),
            "sample_unit": config.train.sample_unit, "crop": config.train.crop,
            "epochs": config.train.epochs, "units": data.normaliser.units,
            "seeds": list(seeds), "device": _device_name(config.train.device),
            "settings": {k: getattr(config.train, k) for k in ("keep_ratio", "prune_quantile", "complexity_weight",
                                                                "anneal_fraction", "batch_size", "policy")},
            "rows": rows}


def _rows(runs: dict[str, list[dict]]) -> dict:
    return {variant: _summary(per_seed, runs.get("off")) for variant, per_seed in runs.items()}


def merge(parts: list[dict]) -> dict:
    """One result per data set from runs of the same protocol with other seeds (say, two sessions)."""
    merged = {}
    for name in dict.fromkeys(name for part in parts for name in part):
        results = [part[name] for part in parts if name in part]
        protocol = {key: results[0].get(key) for key in PROTOCOL}
        for result in results[1:]:
            differs = [key for key in PROTOCOL if result.get(key) != protocol[key]]
            if differs:
                raise SystemExit(f"{name}: cannot merge runs that differ in {differs}")
        variants = dict.fromkeys(variant for result in results for variant in result["rows"])
        runs = {variant: sorted((run for result in results if variant in result["rows"]
                                 for run in result["rows"][variant]["per_seed"]), key=lambda run: run["seed"])
                for variant in variants}
        for variant, per_seed in runs.items():
            seeds = [run["seed"] for run in per_seed]
            if len(set(seeds)) != len(seeds):
                raise SystemExit(f"{name}: {variant} trained seed(s) twice: "
                                 f"{sorted({s for s in seeds if seeds.count(s) > 1})}")
        merged[name] = {**results[0], "seeds": sorted({run["seed"] for per_seed in runs.values() for run in per_seed}),
                        "rows": _rows(runs)}
    return merged


def _device_name(name: str) -> str:
    device = resolve_device(name)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"


def _summary(per_seed: list[dict], full: list[dict] | None) -> dict:
    """Means over seeds (the first seed's validation curve); test MSE std; paired change vs full
    data (%) for the selected model and, where recorded, the final epoch's model ("final_")."""
    mean = lambda key: float(np.mean([run[key] for run in per_seed]))  # noqa: E731
    scored = [prefix for prefix in ("", "final_") if all(f"{prefix}test_mse" in run for run in per_seed)]
    row = {key: mean(key) for key in ("train_seconds", "samples", "selection_seconds", "steps")}
    for prefix in scored:
        row.update({f"{prefix}test_mse": mean(f"{prefix}test_mse"), f"{prefix}test_mae": mean(f"{prefix}test_mae"),
                    f"{prefix}test_mse_std": float(np.std([run[f"{prefix}test_mse"] for run in per_seed]))})
    row.update(epochs=per_seed[0]["epochs"], curve=per_seed[0]["curve"], per_seed=per_seed)
    if full is not None:
        base = {run["seed"]: run for run in full}
        shared = [run for run in per_seed if run["seed"] in base]
        over = lambda key, runs: float(np.mean([run[key] for run in runs]))  # noqa: E731
        full_shared = [base[run["seed"]] for run in shared]
        row["speed_up"] = over("train_seconds", full_shared) / over("train_seconds", shared)
        for prefix in (p for p in scored if all(f"{p}test_mse" in run for run in full_shared)):
            key = f"{prefix}test_mse"
            paired = [100 * (run[key] / base[run["seed"]][key] - 1) for run in shared]
            row.update({f"{prefix}paired_delta_pct": float(np.mean(paired)),
                        f"{prefix}paired_delta_pct_std": float(np.std(paired)),
                        f"{prefix}vs_full_pct": 100 * (over(key, shared) / over(key, full_shared) - 1)})
    return row


def _variant(variant: str, train_config) -> list[str]:
    """Config overrides of a variant; "fewer-epochs" trains on full data for as many epochs as
    ST-Prune's mean kept share of the epoch budget (the same number of windows seen)."""
    if variant != "fewer-epochs":
        return [f"train.sample_pruning={variant}"]
    epochs = max(1, round(train_config.epochs * mean_kept_fraction(train_config, train_config.epochs)))
    return ["train.sample_pruning=off", f"train.epochs={epochs}"]


def table(results: dict) -> str:
    """Markdown: one table per data set; final-epoch columns where every variant recorded them."""
    lines = []
    for name, result in results.items():
        seeds = result.get("seeds", [0])
        unit = (f"{result['windows']} training windows" if result.get("sample_unit", "window") == "window" else
                f"{result['windows']} training windows = {result['samples']} patches of {result['crop']}²")
        device = f", {result['device']}" if "device" in result else ""
        prefixes = ("", "final_") if all("final_test_mse" in row for row in result["rows"].values()) else ("",)
        scores = " | ".join(f"{label}test MSE | vs full | paired Δ | test MAE"
                            for label in ("", "final-epoch ")[:len(prefixes)])
        lines += [f"### {name} ({unit}, {result['epochs']} epochs{device}, "
                  f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}, MSE in ({result['units']})²)",
                  *_settings_line(result.get("settings")),
                  "", f"| variant | train time s | speed-up | pruner overhead | samples seen | {scores} |",
                  "|---" * (5 + 4 * len(prefixes)) + "|"]
        for variant, row in result["rows"].items():
            speed = f"{row['speed_up']:.2f}×" if "speed_up" in row else "–"          # over the same seeds
            overhead = f"{100 * row['selection_seconds'] / row['train_seconds']:.2f} %"
            label = LABELS[variant] + (f", {row['epochs']} epochs" if row["epochs"] != result["epochs"] else "") \
                + (f", {len(row['per_seed'])} seeds" if len(row["per_seed"]) != len(seeds) else "")
            lines.append(f"| {label} | {row['train_seconds']:.1f} | {speed} | {overhead} | {row['samples']:.0f} | "
                         + " | ".join(_scores(row, prefix) for prefix in prefixes) + " |")
        lines += ["", *(_versus(result["rows"], "st-prune", "static-random", prefix) for prefix in prefixes), ""]
    return "\n".join(line for line in lines if line is not None)


def _settings_line(settings: dict | None) -> list[str]:
    """The pruning settings the record ran with, as one line (none for records without them)."""
    if not settings:
        return []
    return ["", f"Sample pruning: keep ratio r = {settings['keep_ratio']:g}, quantile {settings['prune_quantile']:g}, "
                f"complexity weight α = {settings['complexity_weight']:g}, anneal {settings['anneal_fraction']:g}, "
                f"batch {settings['batch_size']}, policy {settings['policy']}."]


def _versus(rows: dict, variant: str, other: str, prefix: str) -> str | None:
    """One line: ``variant`` − ``other`` test MSE in % paired by seed (mean ± standard error), and
    on how many seeds ``variant`` is better; None unless both ran."""
    if variant not in rows or other not in rows:
        return None
    theirs = {run["seed"]: run[f"{prefix}test_mse"] for run in rows[other]["per_seed"]}
    change = np.array([100 * (run[f"{prefix}test_mse"] / theirs[run["seed"]] - 1)
                       for run in rows[variant]["per_seed"] if run["seed"] in theirs])
    if len(change) == 0:
        return None
    error = f" ± {change.std(ddof=1) / np.sqrt(len(change)):.2f} % (s.e.)" if len(change) > 1 else " %"
    return (f"{LABELS[variant]} − {LABELS[other]}, {'final-epoch' if prefix else 'selected'} test MSE paired by "
            f"seed: {change.mean():+.2f}{error}, better on {int((change < 0).sum())} of {len(change)}.")


def _scores(row: dict, prefix: str) -> str:
    """Test MSE ± std, change vs full data over the same seeds, paired change, test MAE."""
    delta = f"{row[prefix + 'vs_full_pct']:+.1f} %" if prefix + "vs_full_pct" in row else "–"
    paired = (f"{row[prefix + 'paired_delta_pct']:+.1f} ± {row[prefix + 'paired_delta_pct_std']:.1f} %"
              if prefix + "paired_delta_pct" in row else "–")
    return (f"{row[prefix + 'test_mse']:.3f} ± {row[prefix + 'test_mse_std']:.3f} | {delta} | {paired} | "
            f"{row[prefix + 'test_mae']:.3f}")


def plot(results: dict, path: Path) -> None:
    figure, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for axis, (name, result) in zip(axes[0], results.items()):
        for variant, row in result["rows"].items():
            seconds, mse = zip(*row["curve"])
            axis.plot(seconds, mse, marker="o", markersize=3, label=LABELS[variant])
        axis.set(title=name, xlabel="training time, s (validation excluded)",
                 ylabel=f"validation MSE ({result['units']})²")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--set", action="append", default=[], help="extra config override, e.g. train.keep_ratio=0.3")
    parser.add_argument("--seeds", type=int, default=1, help="train every variant with K seeds")
    parser.add_argument("--first-seed", type=int, default=0, help="the first of the K seeds (default 0)")
    parser.add_argument("--epochs", action="append", default=[], metavar="DATASET=N",
                        help="epoch budget of one data set, e.g. taxi-nyc=240 (default: its setup's)")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                        help="train nothing: merge these records (same protocol, other seeds) into --out")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "training_efficiency")
    args = parser.parse_args()
    epochs = dict(item.split("=", 1) for item in args.epochs)
    unknown = set(epochs) - set(args.datasets)
    if unknown:
        parser.error(f"--epochs names data sets not run: {sorted(unknown)}")
    logging.basicConfig(level=logging.WARNING)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.merge:
        results = merge([json.loads(path.read_text()) for path in args.merge])
        write(results, args.out)
        print(table(results))
        return
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as work:
        for name in args.datasets:
            overrides = [*args.set, *([f"train.epochs={epochs[name]}"] if name in epochs else [])]
            for result in run_dataset(name, tuple(args.variants), args.data_root, Path(work), overrides,
                                      range(args.first_seed, args.first_seed + args.seeds)):
                results[name] = result
                write(results, args.out)          # after every seed: an interrupted run keeps what it measured
    print(table(results))


def write(results: dict, out: Path) -> None:
    """<out>.json, <out>.md and <out>.png."""
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(table(results))
    plot(results, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
