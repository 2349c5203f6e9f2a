"""Operating-point profiles: latency, executed MACs, power and validation error for a grid of
(sd, sw) points, measured on this machine and cached per model + machine (``dyna-stream profile``)."""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ..assets import BUNDLED_SAMPLE
from ..atomic import write_text
from ..data.registry import load_parts, load_path
from ..data.series import Series
from ..data.windows import WindowDataset
from ..errors import DynaStreamError
from ..evaluate.timing import batch1_latency
from ..model.checkpoint import Checkpoint
from ..predictor import Predictor
from .controller import OperatingPoint
from .power import PowerMeter

log = logging.getLogger(__name__)
GRID = ((0.0, 0.0), (0.3, 0.3), (0.5, 0.5), (0.7, 0.7), (0.9, 0.9), (0.5, 0.7), (0.7, 0.5))
PROFILE_VERSION = 1
MAX_AGE_H = 168.0      # a cached profile is re-measured after a week (drivers, thermal paste, co-runners change)
MAX_DRIFT = 1.0        # a profile whose first point re-times 2x slower or faster was taken under changing load
                       # (a co-runner on a 2-core machine; plain run-to-run drift here is ±30 %)


def machine_key(checkpoint_path: str | Path, predictor: Predictor) -> str:
    """Model file hash + machine + torch build + threads + device, engine and data budget: a profile
    is valid only for all of them."""
    digest = hashlib.sha256(Path(checkpoint_path).read_bytes()).hexdigest()[:16]
    device = predictor.device
    chip = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    machine = f"{platform.node()}|{platform.machine()}|{platform.processor()}|{torch.__version__}|" \
              f"{torch.get_num_threads()}|{device}|{chip}|{predictor.engine}|{predictor.timed_choice}|" \
              f"{predictor.data_budget}|{predictor.max_data_sparsity}"
    return f"v{PROFILE_VERSION}-{digest}-{hashlib.sha256(machine.encode()).hexdigest()[:12]}"


def scored_windows(checkpoint: Checkpoint, series: Series) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(frames, target, valid) of every window of ``series`` under the checkpoint's window shape;
    frames = the latest ``input_frames`` (a seasonal model's history included)."""
    windows = WindowDataset(series, t_in=checkpoint.t_in, t_out=checkpoint.t_out, normaliser=checkpoint.normaliser,
                            fallback=checkpoint.fallback, multiple=checkpoint.model.tile_size,
                            periods=checkpoint.periods)
    return [(windows.history(i, checkpoint.input_frames), w["target"], w["valid"])
            for i, w in ((i, windows.physical(i)) for i in range(len(windows)))]


def profile_inputs(checkpoint: Checkpoint, data_root: str | Path | None = None
                   ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """A live window to time and the windows to score: every part (source, region) of the data set's
    validation split under ``data_root`` when one is given, else the bundled real radar sample (which
    needs no data folder, so a node starts the same wherever it is run from)."""
    parts = []
    if data_root is not None:
        try:
            parts = load_parts(checkpoint.dataset, "val", data_root)
        except DynaStreamError as exc:
            log.warning("%s; scoring errors on the bundled sample instead", exc)
    if not parts:
        log.info("operating points scored on the bundled radar sample (give a data root for %s's validation split)",
                 checkpoint.dataset)
        parts = [load_path(BUNDLED_SAMPLE)]
    windows = [window for series in parts for window in scored_windows(checkpoint, series)]
    return parts[0].values[-checkpoint.input_frames:], windows


def _window_error(predictor: Predictor, windows: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
    squared, cells = 0.0, 0
    for frames, target, valid in windows:
        forecast = predictor(frames).forecast
        squared += float(((forecast - target) ** 2)[valid].sum())
        cells += int(valid.sum())
    return squared / max(cells, 1)


def measure(predictor: Predictor, frames: np.ndarray, windows: list, *, grid=GRID, runs: int = 15,
            warmup: int = 3, meter: PowerMeter | None = None) -> list[dict]:
    """Profile rows of ``predictor`` (its model, device and engine) for ``grid`` on one live window
    ``frames`` (T_in, C, H, W) and scored ``windows`` [(frames, target, valid)] (validation MSE in
    the data's units²). The predictor's own operating point is restored afterwards."""
    restore = predictor.data_sparsity, predictor.model_sparsity
    rows = []
    for data_sparsity, model_sparsity in grid:
        rows.append(_timed_row(predictor, frames, (data_sparsity, model_sparsity), runs, warmup, meter))
        rows[-1]["error"] = _window_error(predictor, windows)
        log.info("profiled sd=%.1f sw=%.1f: %.1f ms", data_sparsity, model_sparsity, rows[-1]["latency_ms"])
    predictor.data_sparsity, predictor.model_sparsity = restore
    return rows


def _timed_row(predictor: Predictor, frames: np.ndarray, point: tuple[float, float], runs: int, warmup: int,
               meter: PowerMeter | None) -> dict:
    """Latency (median, p95 ms), MACs and median power (W) of one operating point; leaves the
    predictor at that point. Under the threshold data budget a window's cost follows its content, at
    most top-k's at sd: the point is timed at that cap, so the controller's budget holds for a storm."""
    predictor.data_sparsity, predictor.model_sparsity = point
    budget, predictor.data_budget = predictor.data_budget, "topk"
    powers = []

    def forecast() -> float:
        macs = predictor(frames).macs
        watts = meter.read_watts() if meter is not None else None
        if watts is not None:
            powers.append(watts)
        return macs

    try:
        latency = batch1_latency(forecast, runs=runs, warmup=warmup)
    finally:
        predictor.data_budget = budget
    return {"data_sparsity": point[0], "model_sparsity": point[1], "data_budget": budget,
            "latency_ms": latency.median_ms, "latency_p95_ms": latency.p95_ms, "macs": latency.macs,
            "power_w": statistics.median(powers) if powers else None}


def load_drift(predictor: Predictor, frames: np.ndarray, rows: list[dict], *, runs: int = 15, warmup: int = 3) -> float:
    """How much the first profiled point's median latency changed since it was measured, either way
    (max(ratio, 1 / ratio) − 1: 1.0 = twice as slow or as fast): the same point timed again after the
    sweep. Large when the machine's load changed while profiling, so the points do not compare."""
    restore = predictor.data_sparsity, predictor.model_sparsity
    first = rows[0]
    again = _timed_row(predictor, frames, (first["data_sparsity"], first["model_sparsity"]), runs, warmup, None)
    predictor.data_sparsity, predictor.model_sparsity = restore
    ratio = again["latency_ms"] / first["latency_ms"]
    return max(ratio, 1.0 / ratio) - 1.0


def points(rows: list[dict]) -> list[OperatingPoint]:
    return [OperatingPoint(r["data_sparsity"], r["model_sparsity"], r["latency_ms"], r["error"], r["power_w"])
            for r in rows]


def load_or_measure(checkpoint_path: str | Path, predictor: Predictor, frames: np.ndarray, windows: list, *,
                    cache_dir: str | Path, max_age_h: float = MAX_AGE_H, max_drift: float = MAX_DRIFT,
                    clock=time.time, **options) -> list[dict]:
    """The cached profile for this model, machine, device and engine if younger than ``max_age_h``
    hours, or a fresh measurement. A measurement is cached only when the machine's load held still
    while it was taken (:func:`load_drift` ≤ ``max_drift``); otherwise it serves this run and the
    next start measures again. The controller's slowdown filter follows load changes after that."""
    path = Path(cache_dir) / f"profile-{machine_key(checkpoint_path, predictor)}.json"
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            age_h = (clock() - cached["measured_at"]) / 3600.0
            if 0 <= age_h <= max_age_h:
                return cached["rows"]
            log.info("profile cache %s is %.0f h old (limit %g h); measuring again", path, age_h, max_age_h)
        except (ValueError, KeyError, TypeError):
            log.warning("profile cache %s is unreadable or from an older version; measuring again", path)
    rows = measure(predictor, frames, windows, **options)
    drift = load_drift(predictor, frames, rows, runs=options.get("runs", 15), warmup=options.get("warmup", 3))
    if drift > max_drift:
        log.warning("the machine's load changed while profiling (sd=%.1f sw=%.1f re-timed %.0f %% off); the "
                    "profile serves this run but is not cached", rows[0]["data_sparsity"], rows[0]["model_sparsity"],
                    100 * drift)
    else:
        write_text(path, json.dumps({"key": path.stem, "measured_at": clock(), "load_drift": drift, "rows": rows},
                                    indent=2))
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'sd':>5}{'sw':>5}{'median ms':>11}{'p95 ms':>9}{'GMACs':>8}{'power W':>9}{'val MSE':>10}"]
    for r in rows:
        power = "–" if r["power_w"] is None else f"{r['power_w']:.2f}"
        lines.append(f"{r['data_sparsity']:>5.1f}{r['model_sparsity']:>5.1f}{r['latency_ms']:>11.2f}"
                     f"{r['latency_p95_ms']:>9.2f}{r['macs'] / 1e9:>8.3f}{power:>9}{r['error']:>10.2f}")
    return "\n".join(lines)

