"""The threshold data budget: the kept share follows the importance map within [top-k at
max_data_sparsity, top-k at sd], on the bundled model and the real radar sample; calibrated at the
default point; profiled at its cap; refused where no threshold was calibrated."""
from pathlib import Path

import numpy as np
import pytest

from dyna_stream.assets import BUNDLED_MODEL, BUNDLED_SAMPLE
from dyna_stream.cli import main
from dyna_stream.config import NodeConfig, load_config
from dyna_stream.control.profile import machine_key, measure
from dyna_stream.data.registry import load_path
from dyna_stream.errors import ConfigError
from dyna_stream.evaluate.default_point import tile_threshold
from dyna_stream.model.checkpoint import load_checkpoint
from dyna_stream.predictor import Predictor

LEGACY = Path(__file__).with_name("data") / "legacy_checkpoint.pt"
CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.fixture(scope="module")
def checkpoint():
    return load_checkpoint(BUNDLED_MODEL)


@pytest.fixture(scope="module")
def storm(checkpoint) -> np.ndarray:
    return load_path(BUNDLED_SAMPLE).values[-checkpoint.t_in:]


@pytest.fixture(scope="module")
def calm(storm) -> np.ndarray:
    """The same window with the echo gone but for one small cell (clear air elsewhere)."""
    quiet = np.full_like(storm, np.nanmin(storm))
    quiet[..., 100:116, 60:76] = storm[..., 100:116, 60:76]
    return quiet


def kept_share(result) -> float:
    return float(result.kept_tiles[result.coverage].mean())


def test_the_bundled_model_records_a_tile_threshold_calibrated_at_its_default_point(checkpoint):
    point = checkpoint.default_point
    assert point.tile_threshold is not None and 0.0 < point.tile_threshold < 1.0


def test_a_calm_window_costs_less_than_a_storm_and_neither_passes_the_cap(checkpoint, storm, calm):
    threshold = Predictor(checkpoint, data_sparsity=0.0, data_budget="threshold", device="cpu")
    stormy, quiet = threshold(storm), threshold(calm)
    assert kept_share(quiet) < kept_share(stormy)
    assert quiet.macs < stormy.macs
    floor = Predictor(checkpoint, data_sparsity=0.99 - 1e-9, device="cpu")(calm)
    assert kept_share(quiet) >= kept_share(floor) > 0              # never under top-k at max_data_sparsity
    capped = Predictor(checkpoint, data_sparsity=0.8, data_budget="threshold", device="cpu")
    topk = Predictor(checkpoint, data_sparsity=0.8, device="cpu")(storm)
    assert kept_share(capped(storm)) <= kept_share(topk) + 1e-6    # a storm keeps at most top-k at sd
    capped.max_data_sparsity = 0.8                                  # floor = cap: exactly top-k
    assert np.array_equal(capped(storm).kept_tiles, topk.kept_tiles)


def test_both_engines_agree_under_the_threshold_budget(checkpoint, storm):
    results = [Predictor(checkpoint, data_sparsity=0.0, engine=engine, data_budget="threshold", device="cpu",
                         area_guard=False)(storm)
               for engine in ("sparse", "masked")]
    assert np.array_equal(results[0].kept_tiles, results[1].kept_tiles)
    assert np.nanmax(np.abs(results[0].forecast - results[1].forecast)) <= 1e-3


def test_a_checkpoint_without_a_calibrated_threshold_refuses_the_budget_and_says_how_to_get_one():
    with pytest.raises(ConfigError, match="choose-point"):
        Predictor(load_checkpoint(LEGACY), data_budget="threshold", device="cpu")
    with pytest.raises(ConfigError, match="topk, threshold"):
        Predictor(load_checkpoint(BUNDLED_MODEL), data_budget="content", device="cpu")


def test_the_threshold_keeps_the_points_share_of_tiles_pooled_over_windows():
    scores = np.linspace(0.0, 1.0, 1001)
    for sparsity in (0.3, 0.5, 0.9):
        assert (scores > tile_threshold(scores, sparsity)).mean() == pytest.approx(1 - sparsity, abs=2e-3)
    assert tile_threshold(scores, 0.0) == 0.0


def test_profiles_time_the_threshold_budget_at_its_cap_and_are_kept_apart(checkpoint, storm, calm):
    topk = Predictor(checkpoint, engine="masked", device="cpu")
    threshold = Predictor(checkpoint, engine="masked", data_budget="threshold", data_sparsity=0.0, device="cpu")
    assert machine_key(BUNDLED_MODEL, topk) != machine_key(BUNDLED_MODEL, threshold)
    target = np.repeat(calm[-1:], checkpoint.t_out, axis=0)
    scored = [(calm, target, np.ones(target.shape, bool))]
    rows = [measure(p, calm, scored, grid=((0.5, 0.5),), runs=3, warmup=1)[0] for p in (topk, threshold)]
    assert [r["data_budget"] for r in rows] == ["topk", "threshold"]
    assert rows[0]["macs"] == rows[1]["macs"]          # timed at the cap: the most a window may cost
    assert threshold.data_budget == "threshold" and threshold.data_sparsity == 0.0   # restored


def test_the_node_and_predict_take_the_budget(tmp_path, capsys):
    operating = load_config(CONFIGS / "node.yaml", ["operating.data_budget=threshold"], schema=NodeConfig).operating
    assert (operating.data_budget, operating.max_data_sparsity) == ("threshold", 0.99)
    assert main(["-q", "predict", "--input", str(BUNDLED_SAMPLE), "--data-budget", "threshold", "--engine", "masked",
                 "--out", str(tmp_path)]) == 0
    npz = next(Path(p) for p in capsys.readouterr().out.split() if p.endswith(".npz"))
    assert np.load(npz)["kept_tiles"].any()
    assert main(["-q", "predict", "--input", str(BUNDLED_SAMPLE), "--checkpoint", str(LEGACY), "--data-budget",
                 "threshold", "--out", str(tmp_path / "legacy")]) == 2
