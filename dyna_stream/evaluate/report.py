"""The evaluation report: every forecaster scored on a data set's test split, as JSON + Markdown."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import write_text
from ..data.registry import DatasetSpec
from ..data.seasonal import Periods
from ..data.series import Series
from ..data.windows import ConcatWindows, WindowDataset
from ..model.checkpoint import Checkpoint, checkpoint_windows
from .figures import importance_figure
from .runner import SEASONAL, Operating, baseline_forecasts, model_forecasts, score

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One report row: a classical extrapolation (checkpoint None) or a model at an operating point."""

    label: str
    method: str
    checkpoint: Checkpoint | None = None
    operating: Operating = Operating()


def standard_entries(dyna: Checkpoint, *, dense: Checkpoint | None = None, mp: Checkpoint | None = None,
                     sparsities: tuple[float, ...] = (0.5, 0.7, 0.9), budget: float = 0.7,
                     engine: str = "auto", device: str = "auto", periods: Periods = (),
                     area_guard: bool = True) -> list[Entry]:
    """Persistence, advection, the seasonal copies (one per period of the data set: the same time
    a day or a week before), dense, MP, random and Dyna-Pruner rows (DESIGN §2 baselines)."""
    entries = [Entry("persistence", "persistence"), Entry("optical-flow advection", "advection"),
               *(Entry(f"seasonal copy (a {name} before)", f"{SEASONAL}{name}") for name, _ in periods)]
    run = {"engine": engine, "device": device, "area_guard": area_guard}
    if dense is not None:
        entries.append(Entry("dense SimVP", "model", dense, Operating("dense", **run)))
    if mp is not None:
        entries.append(Entry(f"MP (L1 filter pruning, fine-tuned) @ budget of sd=sw={budget:g}", "model", mp,
                             Operating("static", **run)))
    entries += [Entry(f"random pruning sd=sw={s:g}", "model", dyna, Operating("random", s, s, **run))
                for s in sparsities]
    entries += [Entry(f"Dyna-Pruner sd=sw={s:g}", "model", dyna, Operating("dyna", s, s, **run))
                for s in sparsities]
    point = dyna.default_point
    if point is not None and point.tile_threshold is not None:
        label = f"Dyna-Pruner threshold budget (tiles S > {point.tile_threshold:.3g}) sw={point.model_sparsity:g}"
        entries.append(Entry(label, "model", dyna,
                             Operating("dyna", 0.0, point.model_sparsity, data_budget="threshold", **run)))
    return entries


def as_parts(series: Series | list[Series]) -> list[Series]:
    return list(series) if isinstance(series, list | tuple) else [series]


def cached_windows(spec: DatasetSpec, series: Series | list[Series], checkpoint: Checkpoint,
                   cache: dict) -> WindowDataset | ConcatWindows:
    """The windows of ``series`` (one, or the parts of a multi-source split) as ``checkpoint`` sees
    them (its normalisation and tile padding), built once per normalisation, tile size and series."""
    parts = as_parts(series)
    key = (json.dumps(checkpoint.normaliser.to_dict(), sort_keys=True), checkpoint.model.tile_size,
           checkpoint.seasonal_inputs, checkpoint.fallback, tuple(id(part) for part in parts))
    if key not in cache:
        cache[key] = checkpoint_windows(checkpoint, parts, spec)
    return cache[key]


def evaluate_entries(spec: DatasetSpec, series: Series | list[Series], entries: list[Entry]) -> list[dict]:
    """Score every entry on every window of ``series``; returns one row dict per entry."""
    cache: dict[str, WindowDataset] = {}
    reference = next((e.checkpoint for e in entries if e.checkpoint is not None), None)
    rows = []
    for entry in entries:
        started = time.perf_counter()
        if entry.checkpoint is None:
            if reference is None:
                raise ValueError("a report needs at least one model checkpoint")
            windows = cached_windows(spec, series, reference, cache)
            forecasts = baseline_forecasts(windows, entry.method)
        else:
            windows = cached_windows(spec, series, entry.checkpoint, cache)
            forecasts = model_forecasts(entry.checkpoint, windows, entry.operating)
        metrics = score(windows, forecasts, thresholds=spec.csi_thresholds, data_range=windows.normaliser.data_range)
        rows.append({"label": entry.label, "method": entry.method, "policy": entry.operating.policy,
                     "engine": entry.operating.engine if entry.checkpoint is not None else None,
                     "data_sparsity": entry.operating.data_sparsity,
                     "model_sparsity": entry.operating.model_sparsity, "metrics": metrics})
        log.info("%-55s MSE %.2f  MAE %.3f  (%.1f s)", entry.label, metrics["mse_mean"], metrics["mae_mean"],
                 time.perf_counter() - started)
    return rows


def importance_panel(spec: DatasetSpec, series: Series | list[Series], checkpoint: Checkpoint, sparsity: float,
                     path: Path) -> int:
    """Fig. 3 analogue for the test window with the largest future change (of the first part of a
    multi-source split); returns its index."""
    series = as_parts(series)[0]
    windows = checkpoint_windows(checkpoint, [series], spec)
    changes = []
    for index in range(len(windows)):
        window = windows.physical(index)
        change = np.abs(window["target"] - window["frames"][-1:]).mean(axis=0)[0]
        changes.append(np.where(window["valid"].all(axis=0)[0], change, 0.0))
    best = int(np.argmax([c.sum() for c in changes]))
    item = next(model_forecasts(checkpoint, windows, Operating("dyna", sparsity, sparsity), indices=[best]))
    importance_figure(windows.physical(best)["frames"][-1, 0], item.importance, changes[best], item.kept_tiles,
                      path, units=series.units,
                      title=f"{series.name}, window {best} (last input "
                            f"{series.times[windows.start(best) + spec.t_in - 1]} UTC), "
                            f"sd=sw={sparsity:g}")
    return best


def build_report(spec: DatasetSpec, series: Series | list[Series], rows: list[dict], *,
                 checkpoints: dict[str, Checkpoint], figure: str | None, figure_window: int | None,
                 engine: str = "sparse", device: str = "cpu", area_guard: bool = True) -> dict:
    dense = next((r for r in rows if r["method"] == "model" and r["policy"] == "dense"), None)
    for row in rows:
        m = row["metrics"]
        row["gmacs"] = m["macs"] / 1e9
        if dense is not None:
            row["mse_vs_dense_pct"] = 100.0 * (m["mse_mean"] / dense["metrics"]["mse_mean"] - 1.0)
            is_model = row["method"] == "model"
            row["macs_vs_dense_pct"] = 100.0 * m["macs"] / dense["metrics"]["macs"] if is_model else None
    return {
        "dataset": spec.name,
        "test_data": "; ".join(f"{part.name}: {len(part)} frames "
                               + ("(times unknown)" if np.isnat(part.times[0]) else
                                  f"{part.times[0]} – {part.times[-1]} UTC")
                               for part in as_parts(series)),
        "window": f"{spec.t_in} → {spec.t_out} frames",
        "engine": engine,
        "device": device,
        "area_guard": {name: c.config.model.area_guard.model_dump() if area_guard and c.config.model.area_guard
                       else None for name, c in checkpoints.items()},
        "units": as_parts(series)[0].units,
        "protocol": ("scores over cells where the truth and all input frames are valid; MSE/MAE pooled over "
                     "those cells per lead; SSIM mean over windows (range = training min–max); CSI from "
                     "hits/misses/false alarms summed over all windows, BIAS = (hits + false alarms) / "
                     "(hits + misses) from the same counts (< 1: too little painted); GMACs = backbone "
                     "multiply-accumulates per window executed for the kept tiles and channels (mask "
                     "generator excluded); events kept = share of the cells at or above the first CSI "
                     "threshold inside the kept tiles; "
                     "kept tiles outside coverage = share of kept tiles without one measured cell"),
        "rows": rows,
        "checkpoints": {name: {"version": c.version, "step": c.step,
                               "train_seconds": c.metrics.get("train_seconds"),
                               "config": c.config.model_dump(mode="json")} for name, c in checkpoints.items()},
        "figure": figure,
        "figure_window": figure_window,
        "dyna_stream_version": __version__,
    }


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _guards(guards: dict[str, dict | None], units: str) -> str:
    """"Dyna-Pruner: at least 0.85 of the last observation's area at every intensity ≥ 10 dBZ; dense: off"
    from the report's ``area_guard``."""
    return "; ".join(f"{name}: " + ("off" if guard is None else
                                    f"at least {guard['ratio']:g} of the last observation's area at every "
                                    f"intensity ≥ {guard['floor']:g} {units}")
                     for name, guard in guards.items()) or "off"


def render_markdown(report: dict) -> str:
    units = report["units"]
    rows = report["rows"]
    csi_keys = sorted({k for r in rows for k in r["metrics"] if k.startswith("csi@") and k.endswith("_mean")},
                      key=lambda k: float(k[4:-5]))
    bias_keys = ["bias" + k[3:] for k in csi_keys[:1]]        # frequency bias at the first threshold
    header = ["forecaster", f"MSE [{units}²]", f"MAE [{units}]", "SSIM", *[k[:-5].upper() for k in csi_keys],
              *[k[:-5].upper() for k in bias_keys],
              "GMACs", "MACs % dense", "ΔMSE vs dense", "events kept %", "kept tiles outside coverage %"]
    lines = [f"# Evaluation: {report['dataset']}", "",
             f"- Test data: {report['test_data']}", f"- Window: {report['window']}",
             f"- Scoring: {report['protocol']}.",
             f"- Models executed by the {report['engine']} engine on {report.get('device', 'cpu')} (batch 1); "
             f"dyna_stream {report['dyna_stream_version']}",
             f"- Echo-area guard (dyna_stream.area_guard): {_guards(report.get('area_guard', {}), units)}", "",
             "## Mean over lead times", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        m = r["metrics"]
        cells = [r["label"], _fmt(m["mse_mean"], 2), _fmt(m["mae_mean"], 3), _fmt(m["ssim_mean"], 3),
                 *[_fmt(m[k], 3) for k in csi_keys], *[_fmt(m.get(k), 2) for k in bias_keys],
                 _fmt(r["gmacs"], 3) if r["method"] == "model" else "–",
                 _fmt(r.get("macs_vs_dense_pct"), 1),
                 (f"{r['mse_vs_dense_pct']:+.1f}%" if r.get("mse_vs_dense_pct") is not None else "–"),
                 _fmt(m.get("kept_event_share") and 100 * m["kept_event_share"], 1),
                 _fmt(None if "kept_outside_coverage" not in m else 100 * m["kept_outside_coverage"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    leads = len(rows[0]["metrics"]["mse"])
    for key, title in [("mse", f"MSE [{units}²]"), *[(k[:-5], k[:-5].upper()) for k in csi_keys[:1] + bias_keys]]:
        lines += ["", f"## {title} per lead time", "",
                  "| forecaster | " + " | ".join(f"+{i + 1}" for i in range(leads)) + " |",
                  "|---|" + "---|" * leads]
        lines += ["| " + r["label"] + " | " + " | ".join(_fmt(v, 3) for v in r["metrics"].get(key, [None] * leads))
                  + " |" for r in rows]
    if report.get("figure"):
        lines += ["", "## Importance map", "",
                  f"Test window {report['figure_window']}: input, importance S, the mean |future change| "
                  "over the forecast leads, and the tiles kept.", "", f"![importance]({report['figure']})"]
    lines += ["", "## Checkpoints", ""]
    for name, info in report["checkpoints"].items():
        seconds = info.get("train_seconds")
        lines.append(f"- {name}: step {info['step']}, trained {_fmt(seconds and seconds / 60, 1)} min, "
                     f"dyna_stream {info['version']}")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    write_text(json_path, json.dumps(report, indent=2, default=str))
    write_text(md_path, render_markdown(report))
    return json_path, md_path
