"""CF netCDF radar frames (BoM Rainfields3's layout and other services' netCDF products): written here
from real KNMI frames, read back, and forecast from like the services' own folders; frames at a
finer time step than the model's are put on its step."""
from datetime import datetime, timedelta

import netCDF4
import numpy as np
import pytest

from dyna_stream.cli import main
from dyna_stream.data import radar_netcdf
from dyna_stream.data.reflectivity import MARSHALL_PALMER, NO_ECHO_DBZ, dbz_to_z, z_to_dbz
from dyna_stream.data.regrid import resample_in_time
from dyna_stream.data.user_files import load_path
from dyna_stream.errors import DataError

from conftest import predict_beside_knmi

EPOCH = datetime(1970, 1, 1)


def _rate(dbz: np.ndarray, echo: np.ndarray) -> np.ndarray:
    a, b = MARSHALL_PALMER
    return np.where(echo, (10 ** (dbz / 10) / a) ** (1 / b), 0.0)


def write_rainfields(path, dbz: np.ndarray, valid: np.ndarray, time: datetime, *, units: str = "mm",
                     interval_minutes: float | None = 5, pixel: tuple[float, str] = (1.0, "km"),
                     time_name: str = "valid_time") -> None:
    """One frame as BoM Rainfields3 writes it: ``precipitation`` (the amount over the interval before
    ``time`` in mm, or a rate / dBZ per ``units``) on y/x coordinates, masked outside coverage,
    ``valid_time`` and ``start_time`` in seconds since 1970."""
    echo = valid & (dbz > NO_ECHO_DBZ)
    field = {"mm": _rate(dbz, echo) * (interval_minutes or 5) / 60, "kg m-2 s-1": _rate(dbz, echo) / 3600,
             "mm h-1": _rate(dbz, echo), "dBZ": np.where(echo, dbz, NO_ECHO_DBZ)}[units]
    with netCDF4.Dataset(path, "w") as handle:
        handle.Conventions = "CF-1.7"
        if time_name == "time":
            handle.createDimension("time", 1)
        handle.createDimension("y", dbz.shape[0])
        handle.createDimension("x", dbz.shape[1])
        for name, size in (("y", dbz.shape[0]), ("x", dbz.shape[1])):
            coordinate = handle.createVariable(name, "f8", (name,))
            coordinate.units = pixel[1]
            coordinate[:] = np.arange(size)[::-1 if name == "y" else 1] * pixel[0]
        stamps = {time_name: time}
        if interval_minutes is not None:
            stamps["start_time"] = time - timedelta(minutes=interval_minutes)
        for name, stamp in stamps.items():
            variable = handle.createVariable(name, "i8", ("time",) if name == "time" else ())
            variable.units = "seconds since 1970-01-01 00:00:00"
            variable[...] = int((stamp - EPOCH).total_seconds())
        dims = ("time", "y", "x") if time_name == "time" else ("y", "x")
        precipitation = handle.createVariable("precipitation", "f4", dims, fill_value=-1.0, zlib=True)
        precipitation.units = units
        precipitation[...] = np.ma.masked_array(field, ~valid).astype(np.float32).reshape(precipitation.shape)


@pytest.mark.parametrize(("units", "interval", "tolerance"), [("mm", 5, 2e-3), ("kg m-2 s-1", None, 2e-3),
                                                              ("mm h-1", None, 2e-3), ("dBZ", None, 1e-4)])
def test_amounts_rates_and_reflectivity_read_as_the_knmi_frames_they_were_made_of(tmp_path, knmi_frames, units,
                                                                                  interval, tolerance):
    _, frames = knmi_frames
    dbz, valid, time = frames[-1]
    path = tmp_path / "frame.nc"
    write_rainfields(path, dbz, valid, time, units=units, interval_minutes=interval)
    values, read_valid, times, hours, kind, pixel_km = radar_netcdf.read_file(path)
    np.testing.assert_array_equal(read_valid[0], valid)                    # masked = no radar
    assert times[0] == np.datetime64(time, "s") and pixel_km == pytest.approx(1.0)
    series_dbz = radar_netcdf._to_dbz(values, read_valid, kind, hours if hours is not None else np.ones(1))
    np.testing.assert_allclose(series_dbz[0][valid], dbz[valid], atol=tolerance)
    assert (series_dbz[0][valid & (dbz <= NO_ECHO_DBZ)] == NO_ECHO_DBZ).all()   # measured zero: no echo


def test_predict_forecasts_from_a_netcdf_folder_as_from_the_knmi_folder(tmp_path, knmi_frames):
    def write(folder, dbz, valid, time):
        write_rainfields(folder / f"2_{time:%Y%m%d_%H%M%S}.prcp-cscn.nc", dbz, valid, time)

    forecast = predict_beside_knmi(tmp_path, *knmi_frames, write, "bom")["forecast"]
    assert forecast.shape == (6, 1, 765, 700)                                 # back on the file's 1 km cells


def test_a_cf_time_coordinate_and_a_latitude_longitude_grid_are_read(tmp_path, knmi_frames):
    _, frames = knmi_frames
    dbz, valid, time = frames[0]
    folder = tmp_path / "cf"
    folder.mkdir()
    for k in range(3):
        write_rainfields(folder / f"rate_{k}.nc", dbz, valid, time + timedelta(minutes=5 * k), units="mm h-1",
                         interval_minutes=None, pixel=(0.01, "degrees_north"), time_name="time")
    series = load_path(folder)
    assert series.shape == (3, 1, *dbz.shape) and series.step_minutes == 5
    assert series.pixel_km == pytest.approx(1.112)
    assert series.times[-1] == np.datetime64(time + timedelta(minutes=10), "m")


def test_an_amount_without_its_interval_takes_the_step_between_files_and_alone_is_refused(tmp_path, knmi_frames):
    _, frames = knmi_frames
    folder = tmp_path / "amounts"
    folder.mkdir()
    for dbz, valid, time in frames[:2]:
        write_rainfields(folder / f"{time:%H%M}.nc", dbz, valid, time, interval_minutes=None)
    series = load_path(folder)
    dbz, valid, _ = frames[1]
    np.testing.assert_allclose(series.values[1, 0][valid], dbz[valid], atol=2e-3)
    (folder / f"{frames[0][2]:%H%M}.nc").unlink()
    with pytest.raises(DataError, match="one rain-amount frame without start_time"):
        load_path(folder)


def test_what_is_not_a_radar_netcdf_folder_is_refused_in_one_line(tmp_path, knmi_frames):
    _, frames = knmi_frames
    dbz, valid, time = frames[0]
    plain = tmp_path / "plain"
    plain.mkdir()
    with netCDF4.Dataset(plain / "t2m.nc", "w") as handle:
        handle.createDimension("y", 4)
        handle.createDimension("x", 4)
        handle.createVariable("t2m", "f4", ("y", "x")).units = "K"
    with pytest.raises(DataError, match="no radar files of a service read here"):
        load_path(plain)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_rainfields(mixed / "a.nc", dbz, valid, time)
    write_rainfields(mixed / "b.nc", dbz[:100], valid[:100], time + timedelta(minutes=5))
    with pytest.raises(DataError, match="different grids"):
        load_path(mixed)
    assert main(["-q", "predict", "--input", str(mixed), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_resampling_in_time_picks_frames_from_the_newest_and_interpolates_in_z():
    rng = np.random.default_rng(0)
    dbz = rng.uniform(-32, 50, (12, 3, 4)).astype(np.float32)
    valid = rng.random((12, 3, 4)) > 0.1
    picked, picked_valid, positions = resample_in_time(dbz, valid, 1, 5)     # 1 min → 5 min, newest kept
    np.testing.assert_array_equal(positions, [1, 6, 11])
    np.testing.assert_array_equal(picked, dbz[[1, 6, 11]])
    np.testing.assert_array_equal(picked_valid, valid[[1, 6, 11]])
    mixed, mixed_valid, positions = resample_in_time(dbz, valid, 2, 5, to_linear=dbz_to_z, from_linear=z_to_dbz)
    np.testing.assert_allclose(positions, [1.0, 3.5, 6.0, 8.5, 11.0])
    np.testing.assert_allclose(mixed[1], z_to_dbz(0.5 * dbz_to_z(dbz[3]) + 0.5 * dbz_to_z(dbz[4])), atol=1e-4)
    np.testing.assert_array_equal(mixed[2], dbz[6])
    np.testing.assert_array_equal(mixed_valid[1], valid[3] & valid[4])
    np.testing.assert_array_equal(mixed_valid[2], valid[6])
    _, _, from_first = resample_in_time(dbz, valid, 2, 5, anchor="first")
    np.testing.assert_allclose(from_first, [0.0, 2.5, 5.0, 7.5, 10.0])
    six, _, positions = resample_in_time(dbz, valid, 6, 5, anchor="first")    # BoM's 6 min: interpolated
    np.testing.assert_allclose(positions[:3], [0.0, 5 / 6, 10 / 6], atol=1e-6)
    np.testing.assert_array_equal(six[0], dbz[0])
    with pytest.raises(DataError, match="coarser than this model's 5 min step"):
        resample_in_time(dbz, valid, 10, 5)


def test_predict_at_a_finer_step_forecasts_from_the_frames_on_the_models_step(tmp_path, knmi_frames):
    """13 frames every 2.5 min: the 7 on the 5-minute step ending at the newest make the forecast; the
    others (here: noise) change nothing."""
    _, frames = knmi_frames
    dbz = np.stack([np.where(valid, values, np.nan) for values, valid, _ in frames])[:, ::4, ::4]
    rng = np.random.default_rng(1)
    fine = np.empty((13, *dbz.shape[1:]), np.float32)
    fine[0::2] = dbz
    fine[1::2] = np.where(np.isfinite(dbz[1:]), rng.uniform(-32, 60, dbz[1:].shape), np.nan)
    np.save(tmp_path / "fine.npy", fine)
    np.save(tmp_path / "coarse.npy", dbz)
    for name, step in (("fine", "2.5"), ("coarse", "5")):
        assert main(["-q", "predict", "--input", str(tmp_path / f"{name}.npy"), "--pixel-km", "4",
                     "--step-minutes", step, "--out", str(tmp_path / name)]) == 0
    with np.load(tmp_path / "fine" / "forecast.npz") as fine_out, np.load(tmp_path / "coarse" / "forecast.npz") as out:
        np.testing.assert_array_equal(fine_out["forecast"], out["forecast"])
    assert main(["-q", "predict", "--input", str(tmp_path / "coarse.npy"), "--step-minutes", "10",
                 "--out", str(tmp_path / "slow")]) == 2
    assert not (tmp_path / "slow").exists()
