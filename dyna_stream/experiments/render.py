"""Results of a suite as Markdown (tables, goals, wall time) and accuracy-vs-latency Pareto plots."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..atomic import write_with  # noqa: E402
from ..data.registry import get_dataset  # noqa: E402
from ..evaluate.runner import SEASONAL  # noqa: E402

ERROR_BUDGET_PCT = 2.0     # Dyna-Pruner within +2 % of dense (issue goal)
SPEEDUP_GOAL = 2.5
MACS_SHARE_GOAL_PCT = 25.0  # the default point executes at most this share of dense MACs (coarse path included)
MARKERS = {"dense": "s", "MP": "^", "random": "x", "dyna": "o"}


def _pct(value: float, reference: float) -> float:
    return 100.0 * (value / reference - 1.0)


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return [_row(header), "|" + "---|" * len(header), *(_row(r) for r in rows), ""]


def main_lines(results: dict) -> list[str]:
    lines = ["## Table I — backbones × data sets at the default point", "",
             f"Test split of each data set (DESIGN §7), MSE/MAE in the data's units pooled over valid cells and "
             f"leads; GMACs = MACs executed per window (backbone on the kept tiles and channels plus the coarse "
             f"path; mask generator excluded); Dyna-Pruner, random and MP at the Dyna-Pruner checkpoint's "
             f"default point (the most pruned sd = sw within 2 % of its most accurate point on validation); "
             f"latency = batch-1 median over "
             f"{results['latency_runs']} runs (mask generator + backbone, sparse engine, 2 threads); "
             f"speed-up = dense latency / latency, measured in the same run.", ""]
    rows = []
    for combo in results["table1"]:
        dense = next(r for r in combo["rows"] if r["kind"] == "dense")
        for r in combo["rows"]:
            rows.append([get_dataset(combo["dataset"]).name, combo["backbone"], r["label"], f"{r['mse']:.4g}",
                         f"{r['mae']:.4g}", f"{r['gmacs']:.4f}", f"{r['latency_ms']:.2f}",
                         f"{dense['latency_ms'] / r['latency_ms']:.2f}×",
                         "–" if r is dense else f"{_pct(r['mse'], dense['mse']):+.1f}%"])
        rows += [[get_dataset(combo["dataset"]).name, combo["backbone"], b["label"], f"{b['mse']:.4g}",
                  f"{b['mae']:.4g}", "–", "–", "–", f"{_pct(b['mse'], dense['mse']):+.1f}%"]
                 for b in combo.get("baselines", [])]
    return lines + _table(["data set", "backbone", "forecaster", "MSE", "MAE", "GMACs", "latency ms", "speed-up",
                           "ΔMSE vs dense"], rows)


def robustness_lines(results: dict) -> list[str]:
    if not results["table2"]:
        return []
    first = results["table2"][0]["rows"][0]
    noise, failure = list(first["noise"]), list(results["table2"][0]["rows"][-1]["mask_failure"])
    header = ["data set", "backbone", "forecaster", "clean", *(f"noise σ={s}" for s in noise),
              *(f"mask failure {float(f):.0%}" for f in failure)]
    rows = []
    for combo in results["table2"]:
        for r in combo["rows"]:
            def cell(value: float | None, clean: float = r["clean"]) -> str:
                return "–" if value is None else f"{value:.4g} ({_pct(value, clean):+.1f}%)"
            rows.append([combo["dataset"], combo["backbone"], r["kind"], f"{r['clean']:.4g}",
                         *(cell(r["noise"][s]) for s in noise), *(cell(r["mask_failure"].get(f)) for f in failure)])
    return ["## Table II — robustness (test MSE, change vs clean)", "",
            "Noise: Gaussian, added to the normalised input and fallback frames. Mask failure: that share of the "
            "kept tiles flipped to pruned at random (they take the coarse forecast). Random and Dyna-Pruner at "
            "each combination's Table I point.", ""] + _table(header, rows)


def sensitivity_lines(results: dict) -> list[str]:
    table = results.get("table3")
    if not table:
        return []
    rows = [[f"({r['data_sparsity']:g}, {r['model_sparsity']:g})", f"{r['any']['mse']:.4g}",
             f"{r['fixed']['mse']:.4g}", f"{_pct(r['any']['mse'], r['fixed']['mse']):+.1f}%",
             f"{r['any']['gmacs']:.4f}", f"{r['any']['latency_ms']:.2f}", f"{r['fixed']['latency_ms']:.2f}"]
            for r in table["rows"]]
    return [f"## Table III — sensitivity over (sd, sw): {table['dataset']} / {table['backbone']}", "",
            "One any-sparsity checkpoint (sd, sw drawn per batch) against checkpoints trained at one fixed point "
            "with the same budget; the difference is the cost of serving every point from one model.", ""] + _table(
        ["(sd, sw)", "MSE any-sparsity", "MSE fixed-point", "any vs fixed", "GMACs", "latency ms (any)",
         "latency ms (fixed)"], rows)


def ablation_lines(results: dict) -> list[str]:
    table = results.get("table4")
    if not table:
        return []
    dense = table["rows"][0]
    rows = [[r["label"], f"({r['data_sparsity']:g}, {r['model_sparsity']:g})", f"{r['mse']:.4g}", f"{r['mae']:.4g}",
             f"{r['gmacs']:.4f}", f"{r['latency_ms']:.2f}", f"{_pct(r['mse'], dense['mse']):+.1f}%"]
            for r in table["rows"]]
    return [f"## Table IV — ablation: {table['dataset']} / {table['backbone']}", "",
            "Every variant trained with the same budget; scored at its masks' point.", ""] + _table(
        ["variant", "(sd, sw)", "MSE", "MAE", "GMACs", "latency ms", "ΔMSE vs dense"], rows)


def goals(results: dict) -> list[dict]:
    """Each issue goal per combination: met or not, and by how much."""
    checks = []
    for combo in results["table1"]:
        rows = {r["kind"]: r for r in combo["rows"]}
        dyna, dense = rows["dyna"], rows["dense"]
        name = f"{combo['dataset']}/{combo['backbone']}"
        delta = _pct(dyna["mse"], dense["mse"])
        checks.append({"combo": name, "goal": f"error within +{ERROR_BUDGET_PCT:g}% of dense",
                       "met": delta <= ERROR_BUDGET_PCT, "value": f"{delta:+.1f}%"})
        share = 100.0 * dyna["gmacs"] / dense["gmacs"]
        checks.append({"combo": name, "goal": f"executed MACs ≤ {MACS_SHARE_GOAL_PCT:g}% of dense",
                       "met": share <= MACS_SHARE_GOAL_PCT, "value": f"{share:.1f}% (sd=sw={combo.get('point', '?')})"})
        for other in ("MP", "random"):
            margin = _pct(dyna["mse"], rows[other]["mse"])
            checks.append({"combo": name, "goal": f"beats {other} at the same MACs", "met": margin < 0,
                           "value": f"{margin:+.1f}% vs {other}"})
        seasonal = [b for b in combo.get("baselines", []) if b["method"].startswith(SEASONAL)]
        if seasonal:
            best = min(seasonal, key=lambda b: b["mse"])
            margin = _pct(dense["mse"], best["mse"])
            checks.append({"combo": name, "goal": "dense beats the best seasonal copy", "met": margin < 0,
                           "value": f"{margin:+.1f}% vs {best['label']}"})
        speedup = dense["latency_ms"] / dyna["latency_ms"]
        checks.append({"combo": name, "goal": f"real speed-up ≥ {SPEEDUP_GOAL}×", "met": speedup >= SPEEDUP_GOAL,
                       "value": f"{speedup:.2f}×"})
    table = results.get("table4")
    if table:
        by_label = {r["label"]: r for r in table["rows"]}
        full, independent = by_label["full Dyna-Pruner"], by_label["independent DP+MP (no shared S)"]
        margin = _pct(full["mse"], independent["mse"])
        checks.append({"combo": f"{table['dataset']}/{table['backbone']}", "goal": "shared S beats independent masks",
                       "met": margin < 0, "value": f"{margin:+.1f}%"})
    return checks


def markdown(results: dict, figures: dict[str, str]) -> str:
    checks = goals(results)
    met = sum(c["met"] for c in checks)
    lines = [f"# Experiments: suite `{results['suite']}`", "",
             f"Run {results['started']} on {results['machine']}, torch {results['torch']}: wall time "
             f"{results['wall_seconds'] / 60:.1f} min; the checkpoints it scored took "
             f"{results['train_seconds'] / 60:.1f} min to train (checkpoints reused from an earlier run included). "
             f"Command: `{results['command']}`.", "",
             f"## Goals: {met} of {len(checks)} met", ""]
    lines += _table(["combination", "goal", "met", "measured"],
                    [[c["combo"], c["goal"], "yes" if c["met"] else "**no**", c["value"]] for c in checks])
    lines += main_lines(results) + robustness_lines(results) + sensitivity_lines(results) + ablation_lines(results)
    if figures:
        lines += ["## Accuracy vs latency", ""]
        lines += [f"![{dataset}]({path})" for dataset, path in figures.items()] + [""]
    return "\n".join(lines)


def pareto_figure(results: dict, dataset: str, path: Path) -> None:
    """Test MSE against batch-1 latency for every forecaster of every backbone on ``dataset``."""
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for i, combo in enumerate(c for c in results["table1"] if c["dataset"] == dataset):
        colour = f"C{i}"
        for r in combo["rows"]:
            axes.scatter(r["latency_ms"], r["mse"], marker=MARKERS[r["kind"]], color=colour, s=40)
        curve = sorted([r for r in combo["rows"] if r["kind"] == "dyna"] + combo["pareto"],
                       key=lambda r: r["latency_ms"])
        axes.plot([r["latency_ms"] for r in curve], [r["mse"] for r in curve], "-o", color=colour, ms=4,
                  label=f"{combo['backbone']} (Dyna-Pruner sd=sw sweep)")
    for kind, marker in MARKERS.items():
        axes.scatter([], [], marker=marker, color="grey", label=kind)
    axes.set_xlabel("batch-1 latency [ms]")
    axes.set_ylabel(f"test MSE [{results['units'].get(dataset, '')}²]")
    axes.set_title(f"{dataset}: accuracy vs latency")
    axes.legend(fontsize=7)
    figure.tight_layout()
    write_with(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
    plt.close(figure)
