"""Seasonal history for periodic data: splits carry the history before them, windows read the frames
one period before each target, seasonal copies are baselines, and a seasonal model reads them as
inputs in training, evaluation and live prediction alike."""
import numpy as np
import pytest
import torch

from dyna_stream.data import registry
from dyna_stream.data.normalise import Normaliser
from dyna_stream.data.registry import DatasetSpec, get_dataset, load_parts
from dyna_stream.data.seasonal import seasonal_frames, with_history
from dyna_stream.data.series import Series
from dyna_stream.data.windows import WindowDataset, window_set
from dyna_stream.errors import ConfigError, DataError
from dyna_stream.evaluate.report import standard_entries
from dyna_stream.evaluate.runner import Operating, baseline_forecasts, model_forecasts, score
from dyna_stream.experiments.render import goals
from dyna_stream.model.checkpoint import load_checkpoint, split_windows
from dyna_stream.predictor import Predictor
from dyna_stream.sparse import SparseEngine
from dyna_stream.train.trainer import train

from conftest import tiny_config

CYCLE = 6                       # frames a period
SPLIT_FRAMES = {"train": (0, 60), "val": (60, 84), "test": (84, 108)}


def cycling(frames: int = 108, seed: int = 0) -> Series:
    """A 16 × 16 field that repeats every CYCLE frames (a blob going round), with a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:16, :16]
    values = np.empty((frames, 1, 16, 16), np.float32)
    for t in range(frames):
        angle = 2 * np.pi * (t % CYCLE) / CYCLE
        cy, cx = 8 + 5 * np.sin(angle), 8 + 5 * np.cos(angle)
        values[t, 0] = 40 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8) + rng.normal(0, 0.5, (16, 16))
    times = np.datetime64("2026-01-01T00:00", "m") + np.arange(frames) * np.timedelta64(10, "m")
    return Series(values, np.ones_like(values, bool), times, "units", 0.0, "cycling blob")


def _cycling_split(folder, split: str) -> Series:
    return cycling().slice(*SPLIT_FRAMES[split])


@pytest.fixture
def seasons(tmp_path, monkeypatch):
    """A periodic data set registered like taxi-nyc (3 → 2 frames, persistence, one period); its root."""
    monkeypatch.setitem(registry.DATASETS, "seasons", DatasetSpec("seasons", "seasons", 3, 2, "persistence", (),
                                                                  _cycling_split, periods=(("cycle", CYCLE),)))
    (tmp_path / "data" / "seasons").mkdir(parents=True)
    return tmp_path / "data"


def test_splits_after_the_first_carry_the_longest_period_of_history(seasons):
    train, val, test = (load_parts("seasons", split, seasons)[0] for split in ("train", "val", "test"))
    assert (train.context_frames, val.context_frames, test.context_frames) == (0, CYCLE, CYCLE)
    assert np.array_equal(test.values[:CYCLE], cycling().values[84 - CYCLE:84])
    assert test.slice(2, 10).context_frames == CYCLE - 2 and test.slice(CYCLE, 10).context_frames == 0
    gap = cycling().slice(90, 100)
    with pytest.raises(DataError, match="gap"):
        with_history(gap, [cycling().slice(0, 60)], CYCLE)


def test_windows_read_the_frames_one_period_before_each_target(seasons):
    spec = get_dataset("seasons")
    test = load_parts("seasons", "test", seasons)[0]
    norm = Normaliser.fit(test)
    plain = WindowDataset(test, t_in=3, t_out=2, normaliser=norm, fallback="persistence", multiple=4)
    seasonal = WindowDataset(test, t_in=3, t_out=2, normaliser=norm, fallback="persistence", multiple=4,
                             periods=spec.periods, seasonal_inputs=True)
    assert len(plain) == len(seasonal) == 24 - 3 - 2 + 1              # the split's own windows, history aside
    window = seasonal.physical(0)
    first_target = CYCLE + 3
    assert np.array_equal(window["seasonal"][0], test.values[first_target - CYCLE:first_target - CYCLE + 2])
    assert np.array_equal(window["frames"], plain.physical(0)["frames"])     # recent frames: after the history
    item = seasonal[0]
    assert item["frames"].shape[0] == 3 + 2 and torch.equal(item["frames"][:3], plain[0]["frames"])
    assert torch.allclose(item["frames"][3:], torch.from_numpy(norm.forward(window["seasonal"][0])))
    first = WindowDataset(cycling().slice(0, 60), t_in=3, t_out=2, normaliser=norm, fallback="persistence",
                          multiple=4, periods=spec.periods)
    assert first.start(0) == CYCLE - 3                     # no history before the first split: wait for it
    with pytest.raises(DataError, match="at least the 2 forecast frames"):
        WindowDataset(test, t_in=3, t_out=2, normaliser=norm, fallback="persistence", multiple=4,
                      periods=(("short", 1),))
    with pytest.raises(DataError, match="outside"):
        seasonal_frames(test.values[:4], 4, 2, spec.periods)


def test_the_seasonal_copy_is_a_baseline_and_wins_on_periodic_data(seasons, data_root):
    test = load_parts("seasons", "test", seasons)
    windows = window_set(test, t_in=3, t_out=2, normaliser=Normaliser.fit(test[0]), fallback="persistence",
                         multiple=4, periods=get_dataset("seasons").periods)
    mse = {m: score(windows, baseline_forecasts(windows, m), thresholds=(), data_range=1.0)["mse_mean"]
           for m in ("persistence", "seasonal:cycle")}
    assert mse["seasonal:cycle"] < 0.1 * mse["persistence"]
    with pytest.raises(DataError, match="no period 'week'"):
        next(baseline_forecasts(windows, "seasonal:week"))
    # real taxi flow: the same half-hour a week before beats persistence 3× on the test split
    spec = get_dataset("taxi-nyc")
    taxi = load_parts("taxi-nyc", "test", data_root)
    windows = window_set(taxi, t_in=4, t_out=4, normaliser=Normaliser.fit(taxi[0]), fallback="persistence",
                         multiple=4, periods=spec.periods)
    mse = {m: score(windows, baseline_forecasts(windows, m), thresholds=(), data_range=1.0)["mse_mean"]
           for m in ("persistence", "seasonal:day", "seasonal:week")}
    assert mse["persistence"] == pytest.approx(1003.3, rel=1e-3) and mse["seasonal:week"] == pytest.approx(331.86,
                                                                                                            rel=1e-3)


@pytest.fixture
def seasonal_model(seasons, tmp_path):
    config = tiny_config(tmp_path, "data.name=seasons", f"data.root={seasons}", "model.seasonal=true",
                         "train.steps=30", "train.crop=16", "train.lr=0.01", "train.validate_every=30")
    return load_checkpoint(train(config, progress=False))


def test_a_seasonal_model_trains_records_its_periods_and_reads_one_period_back(seasonal_model, seasons):
    checkpoint = seasonal_model
    assert checkpoint.periods == (("cycle", CYCLE),) and checkpoint.seasonal_inputs
    assert checkpoint.model.input_frames == 3 + 2 and checkpoint.input_frames == CYCLE
    windows = split_windows(checkpoint, "test", seasons)
    dense = score(windows, model_forecasts(checkpoint, windows, Operating("dense")), thresholds=(),
                  data_range=1.0)["mse_mean"]
    persistence = score(windows, baseline_forecasts(windows, "persistence"), thresholds=(), data_range=1.0)["mse_mean"]
    assert dense < persistence                        # it learnt something from the period
    # live: the latest CYCLE frames give the same forecast as the evaluation's window
    series = windows.series
    index = 5
    history = series.values[windows.start(index) + 3 - CYCLE:windows.start(index) + 3]
    live = Predictor(checkpoint, data_sparsity=0.5, model_sparsity=0.5, engine="masked", device="cpu")
    scored = next(model_forecasts(checkpoint, windows, Operating("dyna", 0.5, 0.5, engine="masked", device="cpu"),
                                  indices=[index]))
    assert np.allclose(live(history).forecast, scored.forecast, atol=1e-4)
    with pytest.raises(DataError, match=f"latest {CYCLE} frames"):
        live(history[-3:])


def test_a_seasonal_model_runs_the_same_in_both_engines(seasonal_model, seasons):
    model = seasonal_model.model
    item = split_windows(seasonal_model, "val", seasons)[0]
    frames, fallback = item["frames"][None], item["fallback"][None]
    with torch.no_grad():
        masked = model(frames, fallback, data_sparsity=0.5, model_sparsity=0.5)
    sparse = SparseEngine(model)(frames, fallback, data_sparsity=0.5, model_sparsity=0.5)
    assert (sparse.forecast - masked.forecast).abs().max() <= 1e-4


def test_reports_and_table_one_score_the_seasonal_copies(seasonal_model):
    labels = [e.label for e in standard_entries(seasonal_model, periods=(("day", 48), ("week", 336)))]
    assert labels[:4] == ["persistence", "optical-flow advection", "seasonal copy (a day before)",
                          "seasonal copy (a week before)"]
    rows = [{"kind": k, "mse": m, "gmacs": 1.0, "latency_ms": 1.0} for k, m in
            (("dense", 300.0), ("dyna", 300.0), ("MP", 310.0), ("random", 320.0))]
    combo = {"dataset": "taxi-nyc", "backbone": "simvp", "point": 0.7, "rows": rows,
             "baselines": [{"method": "seasonal:day", "label": "day", "mse": 1100.0},
                           {"method": "seasonal:week", "label": "week", "mse": 330.0}]}
    (check,) = [g for g in goals({"table1": [combo]}) if g["goal"] == "dense beats the best seasonal copy"]
    assert check["met"] and "week" in check["value"]
    combo["rows"][0]["mse"] = 340.0
    (check,) = [g for g in goals({"table1": [combo]}) if g["goal"] == "dense beats the best seasonal copy"]
    assert not check["met"]


def test_pruned_tiles_can_start_from_the_seasonal_copy(seasons, tmp_path):
    config = tiny_config(tmp_path, "data.name=seasons", f"data.root={seasons}", "model.seasonal=true",
                         "model.fallback=seasonal:cycle", "train.steps=2", "train.crop=16")
    checkpoint = load_checkpoint(train(config, progress=False))
    assert checkpoint.fallback == "seasonal:cycle"
    windows = split_windows(checkpoint, "test", seasons)
    window = windows.physical(3)
    assert np.array_equal(window["fallback"], window["seasonal"][0])       # the copy one cycle back
    history = windows.series.values[windows.start(3) + 3 - CYCLE:windows.start(3) + 3]
    live = Predictor(checkpoint, data_sparsity=0.5, model_sparsity=0.5, engine="masked", device="cpu")(history)
    scored = next(model_forecasts(checkpoint, windows, Operating("dyna", 0.5, 0.5, engine="masked", device="cpu"),
                                  indices=[3]))
    assert np.allclose(live.forecast, scored.forecast, atol=1e-4)
    for wrong, reason in ((["model.seasonal=false"], "set model.seasonal=true"),
                          (["model.fallback=seasonal:week"], "periods are")):
        with pytest.raises(ConfigError, match=reason):
            train(tiny_config(tmp_path, "data.name=seasons", f"data.root={seasons}", "model.seasonal=true",
                              "model.fallback=seasonal:cycle", *wrong), progress=False)
