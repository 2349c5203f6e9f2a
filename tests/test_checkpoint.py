"""Checkpoints round-trip through torch.load(weights_only=True) and refuse what does not fit."""
import pickle

import pytest
import torch

from dyna_stream.config import load_config
from dyna_stream.data.normalise import Normaliser
from dyna_stream.errors import CheckpointError
from dyna_stream.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

from conftest import TINY_MODEL


@pytest.fixture
def checkpoint(tiny_model):
    with torch.no_grad():
        for parameter in tiny_model.parameters():
            parameter.normal_(0, 0.2)
    config = load_config(None, TINY_MODEL)
    return Checkpoint(tiny_model, config, Normaliser((-25.0,), (12.0,), "dBZ", -32.0, 60.0), "radar-fmi",
                      3, 2, -32.0, {"val": {"mse_mean": 1.5}}, step=7)


def test_round_trip_gives_identical_forecasts(tmp_path, checkpoint):
    save_checkpoint(tmp_path / "m.pt", checkpoint)
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert (loaded.dataset, loaded.t_in, loaded.t_out, loaded.step) == ("radar-fmi", 3, 2, 7)
    assert loaded.normaliser == checkpoint.normaliser and loaded.metrics["val"]["mse_mean"] == 1.5
    assert loaded.config == checkpoint.config and loaded.fill_value == -32.0
    checkpoint.model.eval()
    frames, fallback = torch.randn(1, 3, 1, 32, 32), torch.randn(1, 2, 1, 32, 32)
    expected = checkpoint.model(frames, fallback, data_sparsity=0.5, model_sparsity=0.5).forecast
    actual = loaded.model(frames, fallback, data_sparsity=0.5, model_sparsity=0.5).forecast
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_refuses_missing_corrupt_foreign_and_mismatched_files(tmp_path, checkpoint):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a dyna_stream checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"format": Evil()}))
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")

    save_checkpoint(tmp_path / "m.pt", checkpoint)
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["config"]["model"]["backbone_kwargs"]["width"] = 6
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="does not match this code"):
        load_checkpoint(tmp_path / "mismatch.pt")
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format 99 is not supported"):
        load_checkpoint(tmp_path / "future.pt")


def test_a_failed_save_leaves_the_old_file_intact(tmp_path, checkpoint, monkeypatch):
    save_checkpoint(tmp_path / "m.pt", checkpoint)
    before = (tmp_path / "m.pt").read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "m.pt", checkpoint)
    assert (tmp_path / "m.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_checkpoints_older_than_norm_statistics_load_as_plain_batchnorm(tmp_path, checkpoint):
    """A checkpoint written before ``model.norm_statistics`` and ``train.calibrate_norm`` existed was
    trained with plain BatchNorm and not calibrated."""
    path = tmp_path / "old.pt"
    save_checkpoint(path, checkpoint)
    assert load_checkpoint(path).model.norm_statistics == "active"
    payload = torch.load(path, weights_only=True)
    del payload["config"]["model"]["norm_statistics"], payload["config"]["train"]["calibrate_norm"]
    torch.save(payload, path)
    old = load_checkpoint(path)
    assert old.config.model.norm_statistics == "all" and old.model.norm_statistics == "all"
    assert old.config.train.calibrate_norm is False
