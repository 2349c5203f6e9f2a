"""``dyna-stream eval``: load checkpoints, score every forecaster, write the report and figure."""
from __future__ import annotations

from pathlib import Path

from ..data.registry import DATASETS, DatasetSpec, get_dataset, load_parts, register_file_dataset
from ..data.user_files import FileSource
from ..errors import DataError
from ..model.checkpoint import load_checkpoint
from ..predictor import on_model_grid, resolve_device, resolve_engine
from .report import build_report, evaluate_entries, importance_panel, standard_entries, write_report

FIGURE_NAME = "importance.png"


def run_evaluation(checkpoint: str | Path, *, dense: str | Path | None = None, mp: str | Path | None = None,
                   sparsities: tuple[float, ...] = (0.5, 0.7, 0.9), split: str = "test",
                   data_root: str | Path | None = None, out_dir: str | Path, engine: str = "auto",
                   device: str = "auto", dataset: str | None = None, variable: str | None = None,
                   layout: str = "auto", splits: tuple[float, float] = (0.7, 0.15),
                   area_guard: bool = True) -> Path:
    """Returns the path of the Markdown report (JSON and PNG beside it). ``dataset``: score on this
    data set's split instead of the checkpoint's own (same units and window; e.g. a radar model on
    radar from another service), or on a user's file or radar folder (``variable``, ``layout``;
    split in time by ``splits``, see :class:`~dyna_stream.data.user_files.FileSource`). A file whose
    pixels are a whole factor finer than the model's is block-averaged onto its grid
    (:func:`~dyna_stream.predictor.on_model_grid`); a finer step is put on the model's; a much coarser
    step or another pixel size is refused. ``area_guard`` False scores the models' output without their
    echo-area guard."""
    resolved = resolve_device(device)
    engine, device = resolve_engine(engine, resolved), str(resolved)
    dyna = load_checkpoint(checkpoint)
    loaded = {"Dyna-Pruner": dyna}
    if dense:
        loaded["dense"] = load_checkpoint(dense)
    if mp:
        loaded["MP"] = load_checkpoint(mp)
    for name, ckpt in loaded.items():
        if ckpt.dataset != dyna.dataset:
            raise ValueError(f"{name} checkpoint is for {ckpt.dataset}, the Dyna-Pruner one for {dyna.dataset}")
    spec = (user_file_dataset(dataset, dyna, variable=variable, layout=layout, splits=splits)
            if dataset is not None and Path(dataset).exists() else get_dataset(dataset or dyna.dataset))
    if (spec.t_in, spec.t_out) != (dyna.t_in, dyna.t_out):
        raise DataError(f"{spec.name} forecasts {spec.t_in} → {spec.t_out} frames; the checkpoint "
                        f"{dyna.t_in} → {dyna.t_out}")
    series = [on_model_grid(part, dyna) for part in
              load_parts(spec.name, split, data_root if data_root is not None else dyna.config.data.root)]
    if series[0].units != dyna.normaliser.units:
        raise DataError(f"{spec.name} is in {series[0].units}; the checkpoint was trained on {dyna.normaliser.units}")
    entries = standard_entries(dyna, dense=loaded.get("dense"), mp=loaded.get("MP"), sparsities=sparsities,
                               budget=0.7 if 0.7 in sparsities else sparsities[len(sparsities) // 2], engine=engine,
                               device=device, periods=spec.periods, area_guard=area_guard)
    rows = evaluate_entries(spec, series, entries)
    out_dir = Path(out_dir)
    middle = sparsities[len(sparsities) // 2]
    window = importance_panel(spec, series, dyna, middle, out_dir / FIGURE_NAME)
    report = build_report(spec, series, rows, checkpoints=loaded, figure=FIGURE_NAME, figure_window=window,
                          engine=engine, device=device, area_guard=area_guard)
    return write_report(report, out_dir)[1]


def user_file_dataset(path: str | Path, checkpoint, *, variable: str | None, layout: str,
                      splits: tuple[float, float]) -> DatasetSpec:
    """A user's file scored like the checkpoint's own data set: its window, units, fill value,
    fallback, thresholds, value range and grid (the file's values are taken in the model's units)."""
    like = DATASETS.get(checkpoint.dataset)
    source = FileSource(str(path), variable, layout, checkpoint.normaliser.units, checkpoint.fill_value, splits)
    return register_file_dataset(
        Path(path).name, source, t_in=checkpoint.t_in, t_out=checkpoint.t_out,
        fallback=like.fallback if like else "persistence", csi_thresholds=like.csi_thresholds if like else (),
        value_range=like.value_range if like else (None, None), pixel_km=checkpoint.pixel_km,
        step_minutes=checkpoint.step_minutes)
