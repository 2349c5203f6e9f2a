"""BatchNorm statistics per model-sparsity level: switching at inference, both engines, calibration."""
import pytest
import torch

from dyna_stream.cli import main
from dyna_stream.config import load_config
from dyna_stream.data.normalise import Normaliser
from dyna_stream.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from dyna_stream.model.norm import NormLevels, read_statistics
from dyna_stream.sparse import SparseEngine
from dyna_stream.train.trainer import train

from conftest import TINY_BACKBONES, TINY_COARSE, leveled, tiny_config, tiny_dyna

SPARSITIES = [0.0, 0.3, 0.5, 0.7, 0.9]


def test_nearest_level_and_payload_checks():
    levels = NormLevels(torch.tensor([0.0, 0.5, 0.9]), torch.zeros(3, 2, 4))
    assert [levels.nearest(s) for s in (0.0, 0.2, 0.3, 0.7, 0.95)] == [0, 0, 1, 1, 2]
    assert torch.equal(NormLevels.from_payload(levels.to_payload()).stats, levels.stats)
    with pytest.raises(ValueError, match="do not fit"):
        NormLevels.from_payload({"levels": torch.zeros(3), "stats": torch.zeros(2, 2, 4)})


@pytest.mark.parametrize("backbone", sorted(TINY_BACKBONES))
def test_inference_uses_the_level_nearest_to_sw_in_both_engines(backbone):
    model, stats = leveled(backbone)
    frames, fallback = torch.randn(1, 3, 1, 32, 48), torch.randn(1, 2, 1, 32, 48)
    engine = SparseEngine(model)
    outputs = {}
    for sparsity in SPARSITIES:
        with torch.no_grad():
            masked = model(frames, fallback, data_sparsity=sparsity, model_sparsity=sparsity).forecast
        level = model.norm_levels.nearest(sparsity)
        assert model.loaded_norm_level == level
        torch.testing.assert_close(read_statistics(model.batchnorms()), stats[level])
        sparse = engine(frames, fallback, data_sparsity=sparsity, model_sparsity=sparsity).forecast
        torch.testing.assert_close(sparse, masked, atol=1e-4, rtol=1e-4)
        outputs[sparsity] = masked
    with torch.no_grad():                         # the dense policy keeps every channel: level sw = 0
        model(frames, fallback, policy="dense", model_sparsity=0.9)
    assert model.loaded_norm_level == 0
    without = tiny_dyna(backbone).eval()               # same weights, the statistics of level 0 only
    without.load_state_dict(model.state_dict())
    with torch.no_grad():
        plain = without(frames, fallback, data_sparsity=0.9, model_sparsity=0.9).forecast
    assert not torch.allclose(plain, outputs[0.9])


def test_training_mode_leaves_the_statistics_alone():
    model, stats = leveled("simvp")
    model.train()
    before = read_statistics(model.batchnorms()).clone()
    model.use_norm_level(0.0)
    assert model.loaded_norm_level is None
    torch.testing.assert_close(read_statistics(model.batchnorms()), before)


def test_levels_survive_a_checkpoint_round_trip(tmp_path):
    model, stats = leveled("simvp")
    config = load_config(None, [f"model.backbone_kwargs={TINY_BACKBONES['simvp']}", "model.generator_hidden=4",
                                f"model.coarse={TINY_COARSE}"])
    path = tmp_path / "leveled.pt"
    save_checkpoint(path, Checkpoint(model, config, Normaliser((0.0,), (1.0,), "dBZ", -32.0, 60.0), "radar-fmi",
                                     3, 2, -32.0))
    loaded = load_checkpoint(path).model
    torch.testing.assert_close(loaded.norm_levels.stats, stats)
    frames, fallback = torch.randn(1, 3, 1, 32, 48), torch.randn(1, 2, 1, 32, 48)
    for sparsity in (0.0, 0.9):
        point = {"data_sparsity": sparsity, "model_sparsity": sparsity}
        with torch.no_grad():
            expected = model(frames, fallback, **point).forecast
            torch.testing.assert_close(loaded(frames, fallback, **point).forecast, expected)


def _trained(tmp_path, storms, *overrides):
    config = tiny_config(tmp_path, "data.name=storms", f"data.root={storms}", "model.backbone_kwargs="
                         '{"width": 4, "latent": 8, "hidden": 8, "blocks": 1, "tile_latent": 1}', *overrides)
    return load_checkpoint(train(config, progress=False))


def test_training_ends_with_calibrated_levels_kept_only_where_they_help(tmp_path, storms):
    checkpoint = _trained(tmp_path, storms)
    rows = checkpoint.metrics["norm_calibration"]
    assert [row["model_sparsity"] for row in rows] == pytest.approx([0.1 * i for i in range(10)])
    levels = checkpoint.model.norm_levels
    trained = read_statistics(checkpoint.model.batchnorms())      # the state dict keeps the training statistics
    for row, level_stats in zip(rows, levels.stats):
        assert row["kept"] == (row["val_mse_calibrated"] < row["val_mse_trained"])
        assert row["kept"] != torch.equal(level_stats, trained)
    assert checkpoint.metrics["norm_calibration_seconds"] > 0


def test_calibration_can_be_switched_off_and_run_later_from_the_cli(tmp_path, storms, capsys):
    checkpoint = _trained(tmp_path, storms, "train.calibrate_norm=false")
    assert checkpoint.model.norm_levels is None and "norm_calibration" not in checkpoint.metrics
    source, out = tmp_path / "run" / "model.pt", tmp_path / "calibrated.pt"
    assert main(["-q", "calibrate", "--checkpoint", str(source), "--out", str(out), "--windows", "4"]) == 0
    assert "val MSE trained" in capsys.readouterr().out
    calibrated = load_checkpoint(out)
    assert len(calibrated.model.norm_levels.levels) == 10 and len(calibrated.metrics["norm_calibration"]) == 10
