"""Taxi flow, ERA5 and generic user files: real files, shapes, units, splits and bad input."""
import h5py
import netCDF4
import numpy as np
import pytest

from dyna_stream.data.registry import DATASETS, get_dataset, load_path, load_split
from dyna_stream.errors import DataError


def test_taxi_splits_form_one_contiguous_series_with_a_week_of_history(data_root):
    parts = [load_split("taxi-nyc", split, data_root) for split in ("train", "val", "test")]
    assert [len(p) - p.context_frames for p in parts] == [2784, 672, 864]
    assert [p.context_frames for p in parts] == [0, 336, 336]      # a week before val and test: inputs only
    assert parts[0].shape[1:] == (2, 16, 12)
    assert parts[1].times[336] - parts[0].times[-1] == np.timedelta64(30, "m")
    assert np.array_equal(parts[1].values[:336], parts[0].values[-336:])
    assert np.array_equal(parts[2].values[:336], parts[1].values[-336:])
    assert parts[2].times[-1] == np.datetime64("2016-03-30T23:30")
    assert parts[0].values.max() == pytest.approx(1518.0)


def test_era5_splits_by_day_in_kelvin(data_root):
    train, val, test = (load_split("era5-t2m", split, data_root) for split in ("train", "val", "test"))
    assert [len(s) - s.context_frames for s in (train, val, test)] == [21 * 24, 4 * 24, 6 * 24]
    assert (val.context_frames, test.context_frames) == (24, 24)       # a day of history
    assert train.shape[1:] == (1, 33, 49) and train.units == "K"
    assert str(val.times[0]) == "2019-03-21T00:00" and str(val.times[24]) == "2019-03-22T00:00"
    assert 265 < test.values.min() and test.values.max() < 292


def test_every_registered_dataset_declares_its_protocol():
    for spec in DATASETS.values():
        assert spec.t_in > 0 and spec.t_out > 0 and spec.fallback in ("advection", "persistence")
    with pytest.raises(DataError, match="choose one of"):
        get_dataset("sevir")


def test_missing_root_names_the_fix(tmp_path):
    with pytest.raises(DataError, match="--data-root"):
        load_split("radar-fmi", "train", tmp_path)


@pytest.fixture
def field():
    values = np.random.default_rng(0).normal(280, 3, size=(10, 12, 8)).astype(np.float32)
    values[2, 3, 4] = np.nan
    return values


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".nc", ".h5"])
def test_generic_files_round_trip_with_nan_as_invalid(tmp_path, field, suffix):
    path = tmp_path / f"field{suffix}"
    if suffix == ".npy":
        np.save(path, field)
    elif suffix == ".npz":
        np.savez(path, t2m=field)
    elif suffix == ".nc":
        with netCDF4.Dataset(path, "w") as out:
            for name, size in zip(("time", "lat", "lon"), field.shape):
                out.createDimension(name, size)
            out.createVariable("t2m", "f4", ("time", "lat", "lon"))[:] = field
    else:
        with h5py.File(path, "w") as out:
            out["group/t2m"] = field
    variable = {".npy": None, ".npz": "t2m", ".nc": "t2m", ".h5": "group/t2m"}[suffix]
    series = load_path(path, variable, units="K", fill_value=0.0)
    assert series.shape == (10, 1, 12, 8)
    assert not series.valid[2, 0, 3, 4] and series.valid.sum() == field.size - 1
    np.testing.assert_allclose(series.values[0, 0], field[0])


def test_generic_bad_input_says_what_to_fix(tmp_path, field):
    np.savez(tmp_path / "two.npz", a=field, b=field)
    with pytest.raises(DataError, match=r"name one with --variable"):
        load_path(tmp_path / "two.npz")
    with pytest.raises(DataError, match=r"no variable 'c'; it has \['a', 'b'\]"):
        load_path(tmp_path / "two.npz", "c")
    np.save(tmp_path / "flat.npy", field[0])
    with pytest.raises(DataError, match=r"\(T, H, W\) or \(T, C, H, W\)"):
        load_path(tmp_path / "flat.npy")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(DataError, match="unsupported file type"):
        load_path(tmp_path / "x.csv")
    (tmp_path / "broken.nc").write_bytes(b"\x89HDF garbage")
    with pytest.raises(DataError, match="cannot read it"):
        load_path(tmp_path / "broken.nc")
    with pytest.raises(DataError, match="not found"):
        load_path(tmp_path / "absent.npy")
