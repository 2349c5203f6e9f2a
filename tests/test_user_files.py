"""A user's own file as the data set: train on it from the command line, load the checkpoint in a
fresh registry, score a model on it with `eval`."""
import logging

import numpy as np
import pytest

from dyna_stream.assets import BUNDLED_MODEL
from dyna_stream.cli import main
from dyna_stream.data import registry
from dyna_stream.data.normalise import Normaliser
from dyna_stream.data.series import from_array
from dyna_stream.data.synthetic import moving_storms
from dyna_stream.data.user_files import FileSource
from dyna_stream.errors import DataError
from dyna_stream.model.checkpoint import load_checkpoint
from dyna_stream.predictor import Predictor

from conftest import TINY_BACKBONE


@pytest.fixture
def storms_file(tmp_path):
    """30 frames of drifting storms (dBZ), channel-last, as a named variable in an .npz."""
    series = moving_storms(frames=30, height=48, width=48, seed=3)
    values = np.where(series.valid, series.values, np.float32(np.nan))
    path = tmp_path / "my_radar.npz"
    np.savez(path, dbz=np.moveaxis(values, 1, -1), other=np.zeros(3))
    return path, values


def test_splits_are_contiguous_in_time_and_too_short_ones_say_so(storms_file):
    path, values = storms_file
    source = FileSource(str(path), "dbz", "THWC", "dBZ", splits=(0.5, 0.25))
    parts = [source.split(split, min_frames=5) for split in ("train", "val", "test")]
    assert [len(part) for part in parts] == [15, 7, 8]
    np.testing.assert_array_equal(np.concatenate([p.values for p in parts]),
                                  np.where(np.isnan(values), 0, values))
    with pytest.raises(DataError, match="the test split holds 8 of 30 frames .* one window needs 12"):
        source.split("test", min_frames=12)


def test_train_on_your_own_file_and_the_checkpoint_remembers_how(storms_file, tmp_path, monkeypatch):
    path, _ = storms_file
    out = tmp_path / "run"
    config = tmp_path / "mine.yaml"
    config.write_text(f"""
data:
  name: my-radar
  file: {{path: {path}, variable: dbz, layout: THWC, units: dBZ, fill_value: -32, t_in: 3, t_out: 2,
         fallback: advection, value_range: [-32, 95], splits: [0.5, 0.25]}}
model: {{backbone_kwargs: {TINY_BACKBONE}, generator_hidden: 4}}
train: {{steps: 2, batch_size: 2, crop: 32, validate_every: 2, warmup_steps: 1, device: cpu, out_dir: {out}}}
""")
    assert main(["-q", "train", "--config", str(config)]) == 0
    monkeypatch.delitem(registry.DATASETS, "my-radar")                      # as in a fresh process
    checkpoint = load_checkpoint(out / "model.pt")
    spec = registry.get_dataset(checkpoint.dataset)
    assert (checkpoint.dataset, spec.fallback, spec.value_range) == ("my-radar", "advection", (-32.0, 95.0))
    assert checkpoint.normaliser.units == "dBZ" and (checkpoint.t_in, checkpoint.t_out) == (3, 2)
    frames = registry.load_split("my-radar", "test").values[-3:]
    forecast = Predictor(checkpoint, device="cpu")(frames).forecast
    assert forecast.shape == (2, 1, 48, 48) and np.nanmin(forecast) >= -32


def test_a_built_in_name_is_not_taken_by_a_file(storms_file):
    with pytest.raises(DataError, match="'taxi-nyc' is a built-in data set"):
        registry.register_file_dataset("taxi-nyc", FileSource(str(storms_file[0])), t_in=3, t_out=2)


def test_eval_scores_a_model_on_your_own_file(storms_file, tmp_path):
    path, _ = storms_file
    report = tmp_path / "report"
    assert main(["-q", "eval", "--checkpoint", str(BUNDLED_MODEL), "--dataset", str(path), "--variable", "dbz",
                 "--layout", "THWC", "--splits", "0.3", "0.3", "--sparsities", "0.7", "--out", str(report)]) == 0
    text = (report / "report.md").read_text()
    assert "my_radar.npz: 12 frames (times unknown)" in text
    assert "| optical-flow advection |" in text and "| Dyna-Pruner sd=sw=0.7 |" in text
    assert main(["-q", "eval", "--checkpoint", str(BUNDLED_MODEL), "--dataset", str(path), "--variable", "dbz",
                 "--layout", "THWC", "--out", str(tmp_path / "short")]) == 2    # 15 % of 30 frames < one window
    assert registry.get_dataset("my_radar.npz").fallback == "advection"      # scored like the model's own data


def test_data_unlike_the_training_data_is_said_but_calm_radar_is_not():
    counts = np.random.default_rng(0).gamma(2.0, 60.0, (40, 1, 16, 12)).astype(np.float32)   # taxi-like trips
    trained = Normaliser.fit(from_array(counts, units="trips", name="taxi"))
    assert trained.unlike(from_array(counts[:10] * 1.1, units="trips", name="taxi, later")) is None
    fewer = trained.unlike(from_array(counts * 0.2, units="trips", name="bikes"))       # a city 5× quieter
    assert fewer is not None and "training data's" in fewer
    radar = Normaliser.fit(moving_storms(frames=12, seed=1))
    calm = from_array(np.full((6, 64, 48), -32.0, np.float32), units="dBZ", name="calm hour")
    assert radar.unlike(calm) is None


def test_predict_warns_on_a_quieter_city_and_refits_the_normalisation_when_asked(tmp_path, caplog):
    rng = np.random.default_rng(1)
    trips = rng.gamma(2.0, 60.0, (40, 16, 16)).astype(np.float32)
    np.save(tmp_path / "taxi.npy", trips)
    np.save(tmp_path / "bikes.npy", trips[:8] * 0.2)                            # the same city, 5× quieter
    config = tmp_path / "trips.yaml"
    config.write_text(f"""
data: {{name: my-trips, file: {{path: {tmp_path / 'taxi.npy'}, units: trips, t_in: 4, t_out: 2}}}}
model: {{backbone_kwargs: {TINY_BACKBONE}, generator_hidden: 4}}
train: {{steps: 2, batch_size: 2, crop: 16, validate_every: 2, warmup_steps: 1, device: cpu,
        out_dir: {tmp_path / 'run'}}}
""")
    assert main(["-q", "train", "--config", str(config)]) == 0
    predict = ["predict", "--checkpoint", str(tmp_path / "run" / "model.pt"), "--input", str(tmp_path / "bikes.npy")]
    with caplog.at_level(logging.INFO):
        assert main([*predict, "--out", str(tmp_path / "plain")]) == 0
        assert "bikes.npy is unlike this model's training data" in caplog.text
        caplog.clear()
        assert main([*predict, "--refit-norm", "--out", str(tmp_path / "refit")]) == 0
    assert "normalisation re-fitted on bikes.npy's 8 frames" in caplog.text and "is unlike" not in caplog.text
    with np.load(tmp_path / "plain" / "forecast.npz") as plain, np.load(tmp_path / "refit" / "forecast.npz") as refit:
        assert not np.allclose(plain["forecast"], refit["forecast"])
