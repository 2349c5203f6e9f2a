"""ODIM_H5 composites (OPERA's format): written here per the ODIM information model from real KNMI
frames, read back, and forecast from like the services' own folders."""
from datetime import datetime, timedelta

import h5py
import numpy as np
import pytest

from dyna_stream.cli import main
from dyna_stream.data import radar_knmi, radar_odim
from dyna_stream.data.reflectivity import MARSHALL_PALMER, NO_ECHO_DBZ
from dyna_stream.errors import DataError

from conftest import KNMI_EVENT, predict_beside_knmi


def _stamp(time: datetime) -> tuple[bytes, bytes]:
    return time.strftime("%Y%m%d").encode(), time.strftime("%H%M%S").encode()


def write_odim(path, dbz: np.ndarray, valid: np.ndarray, time: datetime, *, quantity: str = "DBZH",
               pixel_m: tuple[float, float] = (1000.0, 1000.0), kind: str = "COMP") -> None:
    """A one-dataset ODIM_H5 v2.3 composite of ``dbz`` (H, W): DBZH as uint8 (gain 0.5, offset −32,
    undetect 0, nodata 255), ACRR as float32 mm over the five minutes before ``time`` (nodata −1)."""
    a, b = MARSHALL_PALMER
    echo = valid & (dbz > NO_ECHO_DBZ)
    if quantity == "ACRR":
        rate = np.where(echo, (10 ** (dbz / 10) / a) ** (1 / b), 0.0)
        raw = np.where(valid, rate * 5 / 60, -1.0).astype(np.float32)
        encoding = {"gain": 1.0, "offset": 0.0, "nodata": -1.0, "undetect": 0.0}
    else:
        raw = np.where(echo, np.clip(np.round((dbz + 32) / 0.5), 1, 254), 0)
        raw = np.where(valid, raw, 255).astype(np.uint8)
        encoding = {"gain": 0.5, "offset": -32.0, "nodata": 255.0, "undetect": 0.0}
    with h5py.File(path, "w") as handle:
        handle.attrs["Conventions"] = np.bytes_("ODIM_H5/V2_3")
        date, clock = _stamp(time)
        handle.create_group("what").attrs.update({"object": np.bytes_(kind), "version": np.bytes_("H5rad 2.3"),
                                                   "date": np.bytes_(date), "time": np.bytes_(clock),
                                                   "source": np.bytes_("ORG:99,CMT:test")})
        handle.create_group("where").attrs.update({"projdef": np.bytes_("+proj=stere +lat_0=90 +lon_0=0 +lat_ts=60"),
                                                    "xsize": dbz.shape[1], "ysize": dbz.shape[0],
                                                    "xscale": pixel_m[0], "yscale": pixel_m[1]})
        dataset = handle.create_group("dataset1")
        start_date, start_clock = _stamp(time - timedelta(minutes=5))
        dataset.create_group("what").attrs.update({"product": np.bytes_("COMP"), "startdate": np.bytes_(start_date),
                                                    "starttime": np.bytes_(start_clock), "enddate": np.bytes_(date),
                                                    "endtime": np.bytes_(clock)})
        data = dataset.create_group("data1")
        data.create_dataset("data", data=raw, compression="gzip")
        data.create_group("what").attrs.update({"quantity": np.bytes_(quantity), **encoding})


def test_dbzh_and_acrr_composites_read_as_the_knmi_frames_they_were_made_of(tmp_path, knmi_frames):
    _, frames = knmi_frames
    dbz, valid, time = frames[-1]
    for quantity, tolerance in (("DBZH", 0.25 + 1e-4), ("ACRR", 1e-3)):
        path = tmp_path / f"{quantity}.h5"
        write_odim(path, dbz, valid, time, quantity=quantity)
        read, read_valid, read_time, pixel_km = radar_odim.read_frame(path)
        np.testing.assert_array_equal(read_valid, valid)
        assert read_time == time and pixel_km == 1.0 and read.dtype == np.float32
        np.testing.assert_allclose(read[valid], dbz[valid], atol=tolerance)
        assert (read[valid & (dbz <= NO_ECHO_DBZ)] == NO_ECHO_DBZ).all()         # undetect: no echo, not no data


def test_predict_forecasts_from_an_odim_folder_as_from_the_knmi_folder(tmp_path, knmi_frames):
    def write(folder, dbz, valid, time):
        write_odim(folder / f"T_PAAH_C_TEST_{time:%Y%m%d%H%M%S}.h5", dbz, valid, time, quantity="ACRR")

    forecast = predict_beside_knmi(tmp_path, *knmi_frames, write, "odim")["forecast"]
    assert forecast.shape == (6, 1, 765, 700)                                 # back on the file's 1 km cells


def test_what_is_not_an_odim_composite_is_refused_in_one_line(tmp_path, knmi_frames):
    _, frames = knmi_frames
    dbz, valid, time = frames[0]
    cases = {"volume": {"kind": "PVOL"}, "wind": {"quantity": "VRADH"}, "oblong": {"pixel_m": (1000.0, 2000.0)}}
    messages = {"volume": "only Cartesian composites", "wind": "no reflectivity or rain field (found ['VRADH']",
                "oblong": "only square pixels"}
    for name, options in cases.items():
        write_odim(tmp_path / f"{name}.h5", dbz, valid, time, **options)
        with pytest.raises(DataError, match=messages[name].replace("(", r"\(").replace("[", r"\[")):
            radar_odim.read_frame(tmp_path / f"{name}.h5")
    with pytest.raises(DataError, match="not an ODIM_H5 file"):
        radar_odim.read_frame(_plain_hdf5(tmp_path))
    assert not radar_odim.is_odim(tmp_path / "missing.h5")


def _plain_hdf5(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("image1/image_data", data=np.zeros((4, 4), np.uint16))
    return path


def test_an_odim_folder_at_another_step_is_refused_by_predict(tmp_path, knmi_frames):
    _, frames = knmi_frames
    dbz, valid, time = frames[0]
    (tmp_path / "slow").mkdir()
    for k in range(7):
        write_odim(tmp_path / "slow" / f"frame_{k}.h5", dbz, valid, time + timedelta(minutes=15 * k))
    assert main(["-q", "predict", "--input", str(tmp_path / "slow"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_eval_scores_an_odim_folder_on_the_model_grid_like_the_knmi_folder(tmp_path, data_root):
    """`eval --dataset FOLDER` at 1 km: block-averaged onto the model's 4 km grid, never run at 1 km."""
    import json

    from dyna_stream.assets import BUNDLED_MODEL

    files = radar_knmi.list_frames(data_root / KNMI_EVENT)[-20:]
    for name in ("odim", "knmi", "coarse"):
        (tmp_path / name).mkdir()
    for path in files:
        dbz, valid, time = radar_knmi.read_frame(path)
        write_odim(tmp_path / "odim" / f"{time:%Y%m%d%H%M}.h5", dbz, valid, time, quantity="ACRR")
        write_odim(tmp_path / "coarse" / f"{time:%Y%m%d%H%M}.h5", dbz[:90, :90], valid[:90, :90], time,
                   pixel_m=(3000.0, 3000.0))
        (tmp_path / "knmi" / path.name).symlink_to(path)
    scores = {}
    for name in ("odim", "knmi"):
        assert main(["-q", "eval", "--checkpoint", str(BUNDLED_MODEL), "--dataset", str(tmp_path / name),
                     "--splits", "0.1", "0.1", "--sparsities", "0.7", "--out", str(tmp_path / f"report_{name}")]) == 0
        report = json.loads((tmp_path / f"report_{name}" / "report.json").read_text())
        scores[name] = {row["label"]: row["metrics"]["mse_mean"] for row in report["rows"]}
    assert scores["odim"].keys() == scores["knmi"].keys() and len(scores["odim"]) >= 3
    for label, mse in scores["knmi"].items():
        assert abs(scores["odim"][label] - mse) <= 1e-3 * mse, label
    assert main(["-q", "eval", "--checkpoint", str(BUNDLED_MODEL), "--dataset", str(tmp_path / "coarse"),
                 "--splits", "0.1", "0.1", "--out", str(tmp_path / "report_coarse")]) == 2
    assert not (tmp_path / "report_coarse").exists()


def test_pixel_sizes_in_km_and_in_degrees_are_read_as_services_write_them(tmp_path, knmi_frames):
    """ODIM says metres; MeteoSwiss writes km (1.0) and longitude/latitude composites degrees."""
    _, frames = knmi_frames
    dbz, valid, time = frames[0]
    expected = {"metres": ((2000.0, 2000.0), "+proj=stere +lat_0=90", 2.0),
                "km": ((1.0, 1.0), "+proj=somerc +lat_0=46.95", 1.0),
                "degrees": ((0.01, 0.01), "+proj=longlat +ellps=WGS84", 1.112)}
    for name, (pixel, projdef, pixel_km) in expected.items():
        path = tmp_path / f"{name}.h5"
        write_odim(path, dbz, valid, time, pixel_m=pixel)
        with h5py.File(path, "r+") as handle:
            handle["where"].attrs["projdef"] = np.bytes_(projdef)
        assert radar_odim.read_frame(path)[3] == pytest.approx(pixel_km)
