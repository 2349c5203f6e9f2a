"""Operating-point profiles: latency, executed MACs, power and validation error for a grid of
(sd, sw) points, measured on this machine and cached per model + machine (``dyna-stream profile``)."""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import statistics
from pathlib import Path

import numpy as np
import torch

from ..assets import BUNDLED_SAMPLE
from ..atomic import write_text
from ..data.registry import DATASETS, load_parts, load_path
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


def machine_key(checkpoint_path: str | Path, predictor: Predictor) -> str:
    """Model file hash + machine + torch build + threads + device and engine: a profile is valid
    only for all of them."""
    digest = hashlib.sha256(Path(checkpoint_path).read_bytes()).hexdigest()[:16]
    device = predictor.device
    chip = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    machine = f"{platform.node()}|{platform.machine()}|{platform.processor()}|{torch.__version__}|" \
              f"{torch.get_num_threads()}|{device}|{chip}|{predictor.engine}"
    return f"v{PROFILE_VERSION}-{digest}-{hashlib.sha256(machine.encode()).hexdigest()[:12]}"


def scored_windows(checkpoint: Checkpoint, series: Series) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(frames, target, valid) of every window of ``series`` under the checkpoint's window shape."""
    spec = DATASETS.get(checkpoint.dataset)
    windows = WindowDataset(series, t_in=checkpoint.t_in, t_out=checkpoint.t_out, normaliser=checkpoint.normaliser,
                            fallback=spec.fallback if spec else "persistence", multiple=checkpoint.model.tile_size)
    return [(w["frames"], w["target"], w["valid"]) for w in map(windows.physical, range(len(windows)))]


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
    return parts[0].values[-checkpoint.t_in:], windows


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
        predictor.data_sparsity, predictor.model_sparsity = data_sparsity, model_sparsity
        powers = []

        def forecast(samples: list = powers) -> float:
            macs = predictor(frames).macs
            watts = meter.read_watts() if meter is not None else None
            if watts is not None:
                samples.append(watts)
            return macs

        latency = batch1_latency(forecast, runs=runs, warmup=warmup)
        rows.append({"data_sparsity": data_sparsity, "model_sparsity": model_sparsity,
                     "latency_ms": latency.median_ms, "latency_p95_ms": latency.p95_ms,
                     "macs": latency.macs, "power_w": statistics.median(powers) if powers else None,
                     "error": _window_error(predictor, windows)})
        log.info("profiled sd=%.1f sw=%.1f: %.1f ms", data_sparsity, model_sparsity, rows[-1]["latency_ms"])
    predictor.data_sparsity, predictor.model_sparsity = restore
    return rows


def points(rows: list[dict]) -> list[OperatingPoint]:
    return [OperatingPoint(r["data_sparsity"], r["model_sparsity"], r["latency_ms"], r["error"], r["power_w"])
            for r in rows]


def load_or_measure(checkpoint_path: str | Path, predictor: Predictor, frames: np.ndarray, windows: list, *,
                    cache_dir: str | Path, **options) -> list[dict]:
    """The cached profile for this model, machine, device and engine, or a fresh measurement (then cached)."""
    path = Path(cache_dir) / f"profile-{machine_key(checkpoint_path, predictor)}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())["rows"]
        except (ValueError, KeyError):
            log.warning("profile cache %s is unreadable; measuring again", path)
    rows = measure(predictor, frames, windows, **options)
    write_text(path, json.dumps({"key": path.stem, "rows": rows}, indent=2))
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'sd':>5}{'sw':>5}{'median ms':>11}{'p95 ms':>9}{'GMACs':>8}{'power W':>9}{'val MSE':>10}"]
    for r in rows:
        power = "–" if r["power_w"] is None else f"{r['power_w']:.2f}"
        lines.append(f"{r['data_sparsity']:>5.1f}{r['model_sparsity']:>5.1f}{r['latency_ms']:>11.2f}"
                     f"{r['latency_p95_ms']:>9.2f}{r['macs'] / 1e9:>8.3f}{power:>9}{r['error']:>10.2f}")
    return "\n".join(lines)

