"""The front door: `dyna-stream predict` on the bundled model and sample, and clear errors."""
import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from dyna_stream.assets import BUNDLED_MODEL, BUNDLED_SAMPLE
from dyna_stream.cli import main
from dyna_stream.model.checkpoint import load_checkpoint

from conftest import REPO


def test_bundled_assets_are_small_and_present():
    assert BUNDLED_MODEL.stat().st_size <= 10 * 2**20
    sample = sorted(BUNDLED_SAMPLE.glob("*.pgm.gz"))
    assert len(sample) == 12 and sum(p.stat().st_size for p in sample) <= 5 * 2**20


def test_predict_on_the_bundled_sample_writes_forecast_and_importance(tmp_path):
    assert main(["-q", "predict", "--out", str(tmp_path)]) == 0
    with np.load(tmp_path / "forecast.npz") as result:
        assert result["forecast"].shape == (6, 1, 306, 190)
        assert result["importance"].shape == (306, 190)
        coverage, kept = result["coverage"], result["kept_tiles"] > 0
        assert 0.6 < coverage.mean() < 0.9                          # FMI: ~24 % of the grid has no radar
        assert not (kept & ~coverage).any() or _tiles_touch(kept & ~coverage, coverage)
        covered_tiles = _tile_any(coverage).sum()
        sd, _ = load_checkpoint(BUNDLED_MODEL).operating_point       # predict runs at the model's default point
        assert abs(_tile_any(kept).sum() / covered_tiles - (1 - sd)) < 0.05   # 1 − sd of the covered tiles
        assert str(result["units"]) == "dBZ" and len(result["input_times"]) == 6
        forecast = result["forecast"]
        assert np.isnan(forecast[:, 0][:, ~coverage]).all()          # no radar: NaN, never "no rain"
        assert np.isfinite(forecast[:, 0][:, coverage]).all()
        assert np.nanmin(forecast) >= -32.0 and np.nanmax(forecast) <= 95.0   # the dBZ scale
    for name in ("forecast.png", "importance.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    # the model's own output, without its echo-area guard: lower nowhere, damped at 20 dBZ
    assert main(["-q", "predict", "--no-area-guard", "--out", str(tmp_path / "raw")]) == 0
    with np.load(tmp_path / "raw" / "forecast.npz") as raw:
        assert (raw["forecast"][:, 0][:, coverage] <= forecast[:, 0][:, coverage]).all()
        assert (raw["forecast"][-1, 0][coverage] >= 20).sum() < 0.5 * (forecast[-1, 0][coverage] >= 20).sum()


def _tile_any(mask, tile=16):            # the bundled model's tile
    rows, cols = -(-mask.shape[0] // tile), -(-mask.shape[1] // tile)
    padded = np.zeros((rows * tile, cols * tile), bool)
    padded[:mask.shape[0], :mask.shape[1]] = mask
    return padded.reshape(rows, tile, cols, tile).any(axis=(1, 3))


def _tiles_touch(outside, coverage):
    """Kept pixels outside coverage lie only in tiles that also hold covered cells."""
    return not (_tile_any(outside) & ~_tile_any(coverage)).any()


def test_predict_reads_generic_array_files(tmp_path):
    frames = np.full((7, 40, 30), -32.0, np.float32)
    frames[:, 10:20, 5:15] = 35.0
    np.save(tmp_path / "frames.npy", frames)
    assert main(["-q", "predict", "--input", str(tmp_path / "frames.npy"), "--out", str(tmp_path / "o")]) == 0
    with np.load(tmp_path / "o" / "forecast.npz") as result:
        assert result["forecast"].shape == (6, 1, 40, 30)
        planar = result["forecast"]
    np.save(tmp_path / "last.npy", frames[..., None])                       # the same frames, channel-last
    assert main(["-q", "predict", "--input", str(tmp_path / "last.npy"), "--out", str(tmp_path / "c")]) == 2
    assert main(["-q", "predict", "--input", str(tmp_path / "last.npy"), "--layout", "THWC",
                 "--out", str(tmp_path / "c")]) == 0
    with np.load(tmp_path / "c" / "forecast.npz") as result:
        np.testing.assert_allclose(result["forecast"], planar, atol=1e-3)   # engine auto may time either engine


def test_layout_and_variable_mistakes_say_what_to_do(tmp_path):
    np.save(tmp_path / "last.npy", np.zeros((7, 40, 30, 1), np.float32))
    last = _predict_error(tmp_path, "--input", str(tmp_path / "last.npy"))
    assert "40 channels" in last and "channel-last (T, H, W, C) array needs --layout THWC" in last
    np.save(tmp_path / "frames.npy", np.zeros((7, 40, 30), np.float32))
    named = _predict_error(tmp_path, "--input", str(tmp_path / "frames.npy"), "--variable", "dbz")
    assert "a .npy file holds one unnamed array, so --variable 'dbz' cannot apply" in named
    wrong = _predict_error(tmp_path, "--input", str(tmp_path / "frames.npy"), "--layout", "TCHW")
    assert "expected a (T, C, H, W) array (layout TCHW), got shape (7, 40, 30)" in wrong


def _predict_error(tmp_path, *args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "dyna_stream.cli", "-q", "predict", *args, "--out",
                          str(tmp_path / "o")], capture_output=True, text=True)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    return run.stderr


def test_predict_at_1km_forecasts_on_the_model_grid_and_back(tmp_path):
    """The bundled 4 km sample repeated onto 1 km pixels: told its pixel size, predict block-averages
    it back onto the model's grid, so the forecast equals the 4 km forecast repeated; array inputs
    without times say so instead of inventing 1970."""
    from dyna_stream.data.registry import load_path

    sample = load_path(BUNDLED_SAMPLE)
    fine = np.where(sample.valid, sample.values, np.nan)[:, 0].repeat(4, axis=1).repeat(4, axis=2)
    np.save(tmp_path / "fine.npy", fine)
    np.save(tmp_path / "coarse.npy", np.where(sample.valid, sample.values, np.nan)[:, 0])
    for name, extra in (("coarse", []), ("fine", ["--pixel-km", "1"])):
        assert main(["-q", "predict", "--input", str(tmp_path / f"{name}.npy"), "--out", str(tmp_path / name),
                     *extra]) == 0
    with np.load(tmp_path / "coarse" / "forecast.npz") as coarse, np.load(tmp_path / "fine" / "forecast.npz") as fine:
        assert fine["forecast"].shape == (6, 1, 306 * 4, 190 * 4)
        expected = coarse["forecast"].repeat(4, axis=-2).repeat(4, axis=-1)
        np.testing.assert_allclose(fine["forecast"], expected, atol=1e-3)     # NaN where no coverage, both
        np.testing.assert_array_equal(fine["coverage"], coarse["coverage"].repeat(4, 0).repeat(4, 1))
        assert list(fine["input_times"]) == ["NaT"] * 6


@pytest.mark.slow
def test_eval_scores_a_radar_model_on_another_service(tmp_path, data_root):
    """The FMI-trained bundled model on KNMI's test hours: bias next to CSI, coverage respected."""
    import json

    assert main(["-q", "eval", "--checkpoint", str(BUNDLED_MODEL), "--dataset", "radar-knmi", "--sparsities", "0.7",
                 "--data-root", str(data_root), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["dataset"] == "radar-knmi" and "KNMI" in report["test_data"]
    rows = {row["label"]: row["metrics"] for row in report["rows"]}
    flow, model = rows["optical-flow advection"], rows["Dyna-Pruner sd=sw=0.7"]
    assert 0.9 < flow["bias@20_mean"] < 1.1 and 0 < model["bias@20_mean"] < 2
    assert model["kept_outside_coverage"] == 0.0
    assert "BIAS@20" in (tmp_path / "report.md").read_text()
    assert report["area_guard"] == {"Dyna-Pruner": {"ratio": 0.85, "floor": 10.0}}
    assert "at least 0.85 of the last observation's area" in (tmp_path / "report.md").read_text()
    assert main(["-q", "eval", "--checkpoint", str(BUNDLED_MODEL), "--dataset", "radar-nowhere",
                 "--out", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize("args, message", [
    (["--pixel-km", "3"], "not a whole fraction of this model's 4 km pixels"),
    (["--pixel-km", "8"], "coarser than this model's 4 km pixels"),
    (["--step-minutes", "10"], "input frames are 10 min apart"),
    (["--step-minutes", "2"], "5 frames (from 12 frames every 2 min on the model's step), the model needs"),
    (["--input", "/nonexistent/radar"], "input not found"),
    (["--checkpoint", "/nonexistent.pt"], "checkpoint not found"),
    (["--sd", "1.5"], "data sparsity sd must be in [0, 1)"),
    (["--device", "tpu"], "device must be cpu, cuda, cuda:N or auto"),
])
def test_bad_input_exits_2_with_a_message_and_writes_nothing(tmp_path, args, message):
    command = [sys.executable, "-m", "dyna_stream.cli", "-q", "predict", *args, "--out", str(tmp_path / "o")]
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr
    assert not (tmp_path / "o").exists()


def test_too_few_frames_are_refused(tmp_path):
    np.save(tmp_path / "short.npy", np.zeros((3, 32, 32), np.float32))
    assert main(["-q", "predict", "--input", str(tmp_path / "short.npy"), "--out", str(tmp_path / "o")]) == 2


@pytest.mark.skipif(importlib.util.find_spec("rclpy") is not None, reason="ROS 2 is installed here")
def test_nowcast_node_without_ros_says_what_is_missing():
    run = subprocess.run([sys.executable, "-c", "from ros2_pkg.entry import main; main()"], capture_output=True,
                         text=True, timeout=60, cwd=REPO)
    assert run.returncode == 1 and "nowcast_node needs ROS 2" in run.stderr and "Traceback" not in run.stderr


def test_broken_files_and_values_are_one_line_each(tmp_path):
    """What a user gets wrong most: an --out that is a file, a corrupt checkpoint or array, a bad
    --set value: exit 2, one line, no traceback, no unsafe advice (weights_only=False, pickle)."""
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    cases = [
        (["predict", "--out", str(tmp_path / "a_file")], "is a file; name a folder"),
        (["predict", "--checkpoint", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "o")],
         "not a loadable checkpoint"),
        (["predict", "--input", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "o")], "not a NumPy array file"),
        (["train", "--config", str(REPO / "configs" / "radar_simvp.yaml"), "--set", "train.steps=abc"],
         "train.steps: Input should be a valid integer"),
    ]
    for args, message in cases:
        run = subprocess.run([sys.executable, "-m", "dyna_stream.cli", "-q", *args], capture_output=True, text=True)
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1 and message in lines[0], run.stderr
        assert "weights_only=False" not in run.stderr and "allow_pickle" not in run.stderr
        assert "errors.pydantic.dev" not in run.stderr
    assert not (tmp_path / "o").exists()


def test_predict_says_what_it_did_in_one_line(tmp_path, caplog):
    caplog.set_level("INFO", logger="dyna_stream")
    assert main(["predict", "--out", str(tmp_path)]) == 0
    summary = [r.message for r in caplog.records if r.message.startswith("forecast: ")]
    assert len(summary) == 1 and "6 leads × 5 min after 2017-05-09T12:05 UTC" in summary[0]
    sd, sw = load_checkpoint(BUNDLED_MODEL).operating_point
    assert f"% of the covered area at sd={sd:g} sw={sw:g}" in summary[0]    # the bundled model's default point
    assert "ms incl. timing both engines once (engine auto) (" in summary[0]
    assert main(["predict", "--sd", "0.7", "--out", str(tmp_path)]) == 0
    told = [r.message for r in caplog.records if r.message.startswith("forecast: ")][-1]
    assert f"% of the covered area at sd=0.7 sw={sw:g}" in told              # --sd alone keeps the model's sw


def test_predict_reads_a_folder_of_knmi_files_with_its_own_times_and_pixels(tmp_path, data_root):
    """A folder is told apart by its file names: KNMI's HDF5 accumulations forecast like FMI's PGMs."""
    event = tmp_path / "knmi"
    event.mkdir()
    for path in sorted((data_root / "radar_knmi" / "20100826").glob("RAD_NL25_RAP_5min_*.h5"))[-7:]:
        (event / path.name).symlink_to(path)
    assert main(["-q", "predict", "--input", str(event), "--out", str(tmp_path / "o")]) == 0
    with np.load(tmp_path / "o" / "forecast.npz") as result:
        assert result["forecast"].shape == (6, 1, 765 // 4, 700 // 4)       # 1 km → the model's 4 km
        assert list(result["input_times"])[-1] == "2010-08-26T07:35"        # from the files, not invented
        coverage = result["coverage"]
        assert 0.15 < coverage.mean() < 0.4                     # KNMI: ~74 % of the rectangle has no radar
        assert np.isnan(result["forecast"][:, 0][:, ~coverage]).all()


def test_a_folder_of_no_known_service_or_of_two_is_refused_in_one_line(tmp_path, data_root):
    fmi = next(iter(sorted(BUNDLED_SAMPLE.glob("*.pgm.gz"))))
    knmi = next(iter(sorted((data_root / "radar_knmi" / "20100826").glob("*.h5"))))
    for name, files in (("other", []), ("mixed", [fmi, knmi])):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "notes.txt").write_text("not radar")
        for path in files:
            (folder / path.name).symlink_to(path)
    services = "FMI, KNMI, NOAA MRMS, ODIM_H5, CF netCDF, MeteoSwiss GIF, DWD RADOLAN"
    assert f"no radar files of a service read here ({services})" in _predict_error(
        tmp_path, "--input", str(tmp_path / "other"))
    assert "holds files of FMI and KNMI" in _predict_error(tmp_path, "--input", str(tmp_path / "mixed"))


def test_predict_takes_rain_rates_with_input_units(tmp_path):
    """mm/h into the dBZ model: the same forecast as the same field given in dBZ (Marshall-Palmer)."""
    from dyna_stream.data.reflectivity import MARSHALL_PALMER, MIN_RAIN_MM_H, rate_to_dbz
    from dyna_stream.data.registry import load_path

    series = load_path(BUNDLED_SAMPLE)
    a, b = MARSHALL_PALMER
    rate = np.where(series.values > rate_to_dbz(np.float32(MIN_RAIN_MM_H)), (10 ** (series.values / 10) / a) ** (1 / b),
                    0.0)
    rate = np.where(series.valid, rate, np.nan).astype(np.float32)                        # NaN: no radar
    dbz = np.where(series.valid, rate_to_dbz(np.nan_to_num(rate)), np.nan).astype(np.float32)
    np.save(tmp_path / "rate.npy", rate)
    np.save(tmp_path / "dbz.npy", dbz)
    for name, extra in (("rate", ["--input-units", "mm/h"]), ("dbz", [])):
        assert main(["-q", "predict", "--input", str(tmp_path / f"{name}.npy"), *extra, "--pixel-km", "4",
                     "--out", str(tmp_path / name)]) == 0
    with np.load(tmp_path / "rate" / "forecast.npz") as from_rate, np.load(tmp_path / "dbz" / "forecast.npz") as direct:
        np.testing.assert_array_equal(from_rate["coverage"], direct["coverage"])
        np.testing.assert_allclose(from_rate["forecast"], direct["forecast"], atol=1e-3)
    assert "a radar folder says its own units" in _predict_error(tmp_path, "--input-units", "mm/h")


def test_input_units_convert_only_radar_and_only_known_units(tmp_path):
    from dyna_stream.data.reflectivity import to_dbz
    from dyna_stream.data.registry import load_path
    from dyna_stream.errors import DataError

    np.save(tmp_path / "rate.npy", np.ones((7, 8, 8), np.float32))
    with pytest.raises(DataError, match="only radar converts"):
        load_path(tmp_path / "rate.npy", units="K", input_units="mm/h")
    with pytest.raises(DataError, match=r"choose one of \['dBZ', 'mm/h'\]"):
        to_dbz(np.ones(3), np.ones(3, bool), "inch/h")
    converted = load_path(tmp_path / "rate.npy", units="dBZ", fill_value=-32.0, input_units="mm/h")
    np.testing.assert_allclose(converted.values, 10 * np.log10(200.0), atol=1e-4)         # 1 mm/h = 23.0 dBZ
