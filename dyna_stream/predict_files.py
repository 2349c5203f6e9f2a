"""``dyna-stream predict``: forecast from the latest frames of a file and write npz + PNGs."""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .atomic import write_with
from .data.normalise import Normaliser
from .data.registry import load_path
from .errors import DataError
from .evaluate.figures import forecast_strip, importance_figure
from .model.checkpoint import load_checkpoint
from .predictor import Predictor, on_model_step

log = logging.getLogger(__name__)


def predict_file(checkpoint: str | Path, input_path: str | Path, *, out_dir: str | Path,
                 variable: str | None = None, data_sparsity: float | None = None,
                 model_sparsity: float | None = None,
                 policy: str = "dyna", engine: str = "auto", device: str = "auto", pixel_km: float | None = None,
                 step_minutes: float | None = None, layout: str = "auto", refit_norm: bool = False,
                 data_budget: str = "topk", input_units: str | None = None, area_guard: bool = True) -> list[Path]:
    """Forecast from the last T_in frames of ``input_path``; returns the files written.

    ``data_sparsity`` / ``model_sparsity``: sd, sw (None: the model's default point, chosen on
    validation). ``pixel_km`` / ``step_minutes``: the input's grid and step (default: what the file says, else
    the model's); see :class:`~dyna_stream.predictor.Predictor`; a finer step is put on the model's first
    (:func:`~dyna_stream.predictor.on_model_step`). ``layout``: an array file's axes ("auto", "THW",
    "TCHW", "THWC"). ``input_units``: an array's units when not the model's ("mm/h" rain rate for the
    radar model, see :data:`~dyna_stream.data.reflectivity.TO_DBZ`). ``refit_norm``: normalise with
    statistics of the whole input file (the user's history) instead of the training data's, for data
    of the same kind on another scale. ``area_guard`` False: the model's output without its echo-area guard.

    Writes ``forecast.npz`` (forecast (T_out, C, H, W)
    and fallback in physical units, NaN where the input had no measurement; importance (H, W),
    kept_tiles (H, W), coverage (H, W) bool, input_times ("NaT" when the input has none), units),
    ``forecast.png`` and ``importance.png``.
    """
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise DataError(f"--out {out_dir} is a file; name a folder (it is created if missing)")
    ckpt = load_checkpoint(checkpoint)
    series = load_path(input_path, variable, units=ckpt.normaliser.units, fill_value=ckpt.fill_value, layout=layout,
                       input_units=input_units)
    if step_minutes is not None:
        series = replace(series, step_minutes=step_minutes)
    read, read_step = len(series), series.step_minutes
    series = on_model_step(series, ckpt)
    if len(series) < ckpt.input_frames:
        resampled = "" if len(series) == read else \
            f" (from {read} frames every {read_step:g} min on the model's step)"
        raise DataError(f"{input_path}: {len(series)} frames{resampled}, the model needs the latest "
                        f"{ckpt.input_frames}")
    try:
        ckpt.normaliser.check_channels(series.shape[1])
    except DataError as exc:
        if layout == "auto" and series.shape[-1] == len(ckpt.normaliser.mean):
            raise DataError(f"{exc} (read as (T, C, H, W) = {series.shape}; a channel-last (T, H, W, C) array "
                            "needs --layout THWC)") from None
        raise
    if refit_norm:
        ckpt.normaliser = Normaliser.fit(series)
        statistics = (", ".join(f"{value:.4g}" for value in values) for values in (ckpt.normaliser.mean,
                                                                                     ckpt.normaliser.std))
        log.info("normalisation re-fitted on %s's %d frames: mean %s, std %s", Path(input_path).name, len(series),
                 *statistics)
    elif (reason := ckpt.normaliser.unlike(series)) is not None:
        log.warning("%s is unlike this model's training data (%s): expect biased forecasts; --refit-norm "
                    "normalises with your file's statistics, training on your history (data.file) does better",
                    Path(input_path).name, reason)
    pixel_km = pixel_km if pixel_km is not None else series.pixel_km
    if pixel_km is None and ckpt.pixel_km is not None:
        log.warning("%s does not say its pixel size: taken as the model's %g km (pass --pixel-km if not)",
                    Path(input_path).name, ckpt.pixel_km)
    predictor = Predictor(ckpt, data_sparsity=data_sparsity, model_sparsity=model_sparsity, policy=policy,
                          engine=engine, device=device, input_pixel_km=pixel_km, data_budget=data_budget,
                          input_step_minutes=series.step_minutes, area_guard=area_guard)
    data_sparsity, model_sparsity = predictor.data_sparsity, predictor.model_sparsity   # None: the model's point
    history = series.slice(len(series) - ckpt.input_frames, len(series))   # a seasonal model reads one period back
    window = series.slice(len(series) - ckpt.t_in, len(series))
    last_time = "time unknown" if np.isnat(window.times[-1]) else f"{window.times[-1]} UTC"
    started = time.perf_counter()
    result = predictor(history.values, history.valid)
    elapsed_ms = (time.perf_counter() - started) * 1e3
    covered = result.coverage.any() and result.kept_tiles[result.coverage].mean()
    step = f" × {ckpt.step_minutes:g} min" if ckpt.step_minutes else ""
    timed = " incl. timing both engines once (engine auto)" if predictor.engine_choices else ""
    log.info("forecast: %d leads%s after %s; kept %.0f %% of the covered area at sd=%g sw=%g, %.0f ms%s (%s, %s)",
             ckpt.t_out, step, last_time, 100 * covered, data_sparsity, model_sparsity, elapsed_ms, timed,
             predictor.last_engine, predictor.device)
    out_dir = Path(out_dir)
    npz_path, strip_path = out_dir / "forecast.npz", out_dir / "forecast.png"
    importance_path = out_dir / "importance.png"
    write_with(npz_path, lambda tmp: np.savez_compressed(
        tmp, forecast=result.forecast, fallback=result.fallback, importance=result.importance,
        kept_tiles=result.kept_tiles, coverage=result.coverage,
        input_times=window.times.astype("datetime64[m]").astype(str),
        units=np.array(ckpt.normaliser.units)))
    measured = np.where(window.valid, window.values, np.float32(np.nan))
    forecast_strip(measured[:, 0], result.forecast[:, 0], strip_path, units=ckpt.normaliser.units,
                   step_minutes=ckpt.step_minutes, last_time=window.times[-1],
                   limits=(ckpt.normaliser.low, ckpt.normaliser.high))
    importance_figure(measured[-1, 0], result.importance, None, result.kept_tiles, importance_path,
                      units=ckpt.normaliser.units,
                      title=f"{series.name}: last input {last_time}, "
                            f"sd={data_sparsity:g} sw={model_sparsity:g}")
    return [npz_path, strip_path, importance_path]
