"""Shared fixtures: the real data sets beside the repo, and tiny models for fast tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dyna_stream.config import load_config
from dyna_stream.data import registry
from dyna_stream.data.registry import DatasetSpec
from dyna_stream.data.synthetic import moving_storms
from dyna_stream.model.checkpoint import build_model
from dyna_stream.model.dynapruner import DynaPruner
from dyna_stream.model.norm import NormLevels, read_statistics

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("DYNA_STREAM_DATA", REPO.parent / "shared" / "data"))
# tests/ros needs rclpy and a private network namespace: scripts/test_ros.sh runs it in its own venv
collect_ignore = ["ros"]
TINY_BACKBONE = {"width": 4, "latent": 8, "hidden": 8, "blocks": 1, "tile_latent": 2}
# every registered backbone at test size (a new backbone must add itself: the shared tests check)
TINY_BACKBONES = {
    "simvp": {"width": 4, "latent": 8, "hidden": 8, "blocks": 2, "tile_latent": 2},
    "tau": {"width": 4, "latent": 8, "hidden": 8, "blocks": 2, "tile_latent": 2},
    "convlstm": {"width": 4, "hidden": 8, "layers": 2, "kernel": 5, "tile_latent": 2},
}
TINY_COARSE = {"factor": 4, "width": 4, "blocks": 1}
TINY_MODEL = [f"model.backbone_kwargs={TINY_BACKBONE}", "model.generator_hidden=4", f"model.coarse={TINY_COARSE}"]


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "radar_fmi").is_dir():
        pytest.skip(f"real data sets not found at {DATA_ROOT} (set DYNA_STREAM_DATA)")
    return DATA_ROOT


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(2)


def tiny_config(tmp_path: Path, *overrides: str):
    return load_config(None, [*TINY_MODEL,
                              "train.steps=4", "train.batch_size=2", "train.crop=32", "train.validate_every=2",
                              "train.warmup_steps=1", "train.device=cpu", f"train.out_dir={tmp_path / 'run'}",
                              "train.default_point_tolerance=null",   # tests/test_default_point.py turns it on
                              *overrides])


@pytest.fixture
def tiny_model():
    return build_model(load_config(None, TINY_MODEL).model, t_in=3, t_out=2, channels=1)


def tiny_dyna(backbone: str) -> DynaPruner:
    """A test-sized Dyna-Pruner on ``backbone`` for 3 → 2 single-channel frames."""
    return DynaPruner(backbone=backbone, t_in=3, t_out=2, channels=1, generator_hidden=4,
                      backbone_kwargs=TINY_BACKBONES[backbone], coarse=TINY_COARSE)


def leveled(backbone: str) -> tuple:
    """A random model with three distinct norm levels (sw = 0, 0.5, 0.9)."""
    torch.manual_seed(0)
    model = tiny_dyna(backbone).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
    channels = read_statistics(model.batchnorms()).shape[1]
    stats = torch.stack([torch.stack([torch.randn(channels) * 0.2, torch.rand(channels) + 0.5]) for _ in range(3)])
    model.set_norm_levels(NormLevels(torch.tensor([0.0, 0.5, 0.9]), stats))
    return model, stats


def _storms(folder, split: str):
    return moving_storms(frames=14, height=32, width=32, seed={"train": 0, "val": 1, "test": 2}[split])


@pytest.fixture
def storms(tmp_path, monkeypatch):
    """A synthetic data set registered like the real ones (3 → 2 frames, persistence fallback);
    returns its data root."""
    monkeypatch.setitem(registry.DATASETS, "storms",
                        DatasetSpec("storms", "storms", 3, 2, "persistence", (20.0,), _storms))
    (tmp_path / "data" / "storms").mkdir(parents=True)
    return tmp_path / "data"


KNMI_EVENT = "radar_knmi/20100826"


@pytest.fixture(scope="module")
def knmi_frames(data_root):
    """The last seven real KNMI frames: (their files, [(dBZ (H, W), valid (H, W), time)] at 1 km)."""
    from dyna_stream.data import radar_knmi

    files = radar_knmi.list_frames(data_root / KNMI_EVENT)[-7:]
    return files, [radar_knmi.read_frame(path) for path in files]


def predict_beside_knmi(tmp_path: Path, files: list[Path], frames: list, write, service: str, *,
                        atol: float = 1e-2, share: float = 1.0, options: tuple[str, ...] = ()) -> dict:
    """``predict`` on a folder of ``service`` files that ``write(folder, dbz, valid, time)`` makes from
    real KNMI ``frames`` (1 km) and on the KNMI ``files`` themselves (read at 4 km): asserts the same
    input times and forecast on the model's grid (``share`` of the cells within ``atol`` dBZ: less
    than all where the service's file rounds the frames; the model's raw output, since the echo-area
    guard may trade values between cells whose forecasts tie to within float noise); returns the
    service's forecast.npz as a dict. ``options``: more ``predict`` options (e.g. an operating point)."""
    import numpy as np

    from dyna_stream.cli import main

    for name in (service, "knmi"):
        (tmp_path / name).mkdir()
    for path, (dbz, valid, time) in zip(files, frames):
        write(tmp_path / service, dbz, valid, time)
        (tmp_path / "knmi" / path.name).symlink_to(path)
    for name in (service, "knmi"):
        assert main(["-q", "predict", "--no-area-guard", *options, "--input", str(tmp_path / name),
                     "--out", str(tmp_path / f"out_{name}")]) == 0
    with np.load(tmp_path / f"out_{service}" / "forecast.npz") as read, \
            np.load(tmp_path / "out_knmi" / "forecast.npz") as knmi:
        assert list(read["input_times"]) == list(knmi["input_times"])
        on_model_grid = read["forecast"][:, :, :764:4, :700:4]            # the KNMI frames in the corner
        both = np.isfinite(on_model_grid) & np.isfinite(knmi["forecast"])
        assert both.mean() > 0.2
        differences = np.abs(on_model_grid[both] - knmi["forecast"][both])
        assert np.quantile(differences, share) <= atol, np.quantile(differences, [0.5, 0.9, 0.99, 1.0])
        assert knmi["forecast"].shape == (6, 1, 191, 175)                     # the KNMI reader's 4 km grid
        return dict(read)


def refuse_mixed_and_hourly_folders(tmp_path: Path, frames: list, write, mixed: tuple[str, str], hourly: str) -> None:
    """Two folders ``write(folder, dbz, valid, time, product=, minutes=)`` fills from real KNMI ``frames``:
    the ``mixed`` products alternating every 5 min, and the ``hourly`` product every 60 min. Loading
    refuses the first; the second loads at its 60-min step; ``predict`` refuses both (exit 2, nothing
    written)."""
    from datetime import timedelta

    from dyna_stream.cli import main
    from dyna_stream.data.user_files import load_path
    from dyna_stream.errors import DataError

    for folder, step, products in (("mixed", 5, mixed), ("hourly", 60, (hourly,))):
        (tmp_path / folder).mkdir()
        for k, (dbz, valid, _) in enumerate(frames):
            time = frames[0][2] + timedelta(minutes=step * k)
            write(tmp_path / folder, dbz, valid, time, product=products[k % len(products)], minutes=step)
    with pytest.raises(DataError, match="frames of different grids, pixel sizes or products"):
        load_path(tmp_path / "mixed")
    assert load_path(tmp_path / "hourly").step_minutes == 60
    for folder in ("mixed", "hourly"):
        assert main(["-q", "predict", "--input", str(tmp_path / folder), "--out", str(tmp_path / f"o_{folder}")]) == 2
        assert not (tmp_path / f"o_{folder}").exists()
