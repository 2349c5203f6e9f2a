"""The default operating point: chosen on validation after training, recorded in the checkpoint,
used by the Predictor unless told otherwise; older checkpoints run at 0.7."""
from pathlib import Path

import numpy as np
import pytest
from test_training import synthetic_data

from dyna_stream.cli import main
from dyna_stream.config import NodeConfig, load_config
from dyna_stream.model.checkpoint import load_checkpoint, save_checkpoint
from dyna_stream.model.operating_point import FALLBACK_POINT, DefaultPoint
from dyna_stream.predictor import Predictor
from dyna_stream.train.trainer import train

from conftest import tiny_config

LEGACY = Path(__file__).with_name("data") / "legacy_checkpoint.pt"
CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("point")
    config = tiny_config(tmp_path, "train.steps=6", "train.default_point_tolerance=0.05")
    return load_checkpoint(train(config, progress=False, data=synthetic_data(config)))


def test_training_records_the_most_pruned_point_within_the_tolerance(trained):
    point = trained.default_point
    assert point is not None and point.tolerance == 0.05
    sparsities = [s for s, _ in point.validation]
    assert sparsities == [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9]
    best = min(mse for _, mse in point.validation)
    within = [s for s, mse in point.validation if mse <= best * 1.05]
    assert point.data_sparsity == point.model_sparsity == max(within)
    assert trained.operating_point == (point.data_sparsity, point.model_sparsity)


def test_the_predictor_runs_at_the_recorded_point_unless_told_otherwise(trained, tmp_path):
    trained.default_point = DefaultPoint(0.8, 0.6, [[0.0, 1.0]])
    save_checkpoint(tmp_path / "m.pt", trained)
    checkpoint = load_checkpoint(tmp_path / "m.pt")
    assert checkpoint.default_point == DefaultPoint(0.8, 0.6, [[0.0, 1.0]])
    predictor = Predictor(checkpoint, device="cpu")
    assert (predictor.data_sparsity, predictor.model_sparsity) == (0.8, 0.6)
    told = Predictor(checkpoint, data_sparsity=0.3, device="cpu")
    assert (told.data_sparsity, told.model_sparsity) == (0.3, 0.6)
    frames = np.random.default_rng(0).uniform(0, 40, (checkpoint.t_in, 1, 32, 32)).astype(np.float32)
    kept = predictor(frames).kept_tiles.mean()
    assert kept == pytest.approx(0.25, abs=0.02)            # 16 tiles of 8 px, 4 kept at sd = 0.8


def test_a_checkpoint_without_a_point_runs_at_0_7_and_training_can_skip_choosing(tmp_path):
    legacy = load_checkpoint(LEGACY)
    assert legacy.default_point is None and legacy.operating_point == FALLBACK_POINT == (0.7, 0.7)
    predictor = Predictor(legacy, device="cpu")
    assert (predictor.data_sparsity, predictor.model_sparsity) == (0.7, 0.7)
    config = tiny_config(tmp_path, "train.default_point_tolerance=null")
    assert load_checkpoint(train(config, progress=False, data=synthetic_data(config))).default_point is None


def test_the_node_config_runs_at_the_models_point_unless_set():
    shipped = load_config(CONFIGS / "node.yaml", schema=NodeConfig).operating
    assert shipped.data_sparsity is None and shipped.model_sparsity is None
    overridden = load_config(CONFIGS / "node.yaml", ["operating.data_sparsity=0.5"], schema=NodeConfig).operating
    assert (overridden.data_sparsity, overridden.model_sparsity) == (0.5, None)


def test_choose_point_from_the_cli_records_it_in_the_checkpoint(tmp_path, storms, capsys):
    config = tiny_config(tmp_path, "data.name=storms", f"data.root={storms}", "train.default_point_tolerance=null",
                         "train.calibrate_norm=false")
    source, out = train(config, progress=False), tmp_path / "pointed.pt"
    assert load_checkpoint(source).default_point is None
    assert main(["-q", "choose-point", "--checkpoint", str(source), "--out", str(out), "--tolerance", "1e6"]) == 0
    printed = capsys.readouterr().out
    assert "<- default" in printed and printed.strip().endswith(str(out))
    point = load_checkpoint(out).default_point
    assert point.data_sparsity == point.model_sparsity == 0.9 and point.tolerance == 1e6   # everything is within
    assert main(["-q", "choose-point", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
