"""KNMI and NOAA MRMS loaders on the real files, the resampling arithmetic they share, and the
multi-source radar set. MRMS tests decode crops of two or three files only (never the whole grid)."""
import numpy as np
import pytest

from dyna_stream.data import radar_knmi, radar_mrms, radar_sets
from dyna_stream.data.normalise import Normaliser
from dyna_stream.data.reflectivity import NO_ECHO_DBZ, dbz_to_z, downsample, interpolate_in_time, rate_to_dbz, z_to_dbz
from dyna_stream.data.regrid import upsample
from dyna_stream.data.windows import ConcatWindows, WindowDataset, window_set
from dyna_stream.errors import DataError

KNMI_EVENT = "radar_knmi/20100826"
MRMS_EVENT = "radar_mrms/20190610"
# a 400 km square over the storms south of the Great Lakes at 00:00 UTC (native 0.01° pixels)
MRMS_BOX = radar_mrms.Box(top=2048, left=4096, height=400, width=400)


@pytest.fixture(scope="module")
def knmi_event(data_root):
    return radar_knmi.load_event(data_root / KNMI_EVENT)


@pytest.fixture(scope="module")
def mrms_files(data_root):
    return radar_mrms.list_frames(data_root / MRMS_EVENT)


def test_marshall_palmer_and_linear_z_round_trip():
    np.testing.assert_allclose(rate_to_dbz(np.array([1.0, 10.0])), [23.01, 39.01], atol=0.01)
    assert rate_to_dbz(np.array([0.0, 0.05]))[0] == NO_ECHO_DBZ == rate_to_dbz(np.array([0.05]))[0]
    dbz = np.array([-32.0, 0.0, 17.5, 55.0], np.float32)
    np.testing.assert_allclose(z_to_dbz(dbz_to_z(dbz)), dbz, atol=1e-4)


def test_downsample_then_upsample_restores_uniform_blocks():
    rng = np.random.default_rng(0)
    coarse = rng.uniform(-10, 50, (2, 5, 7)).astype(np.float32)
    fine = upsample(coarse, 4, (20, 28))
    assert fine.shape == (2, 20, 28)
    back, valid = downsample(fine, np.ones_like(fine, bool), 4)
    assert valid.all()
    np.testing.assert_allclose(back, coarse, atol=1e-3)
    # an odd fine grid: cropped on the way down, edge-padded on the way up
    padded = upsample(coarse[0], 4, (22, 30))
    assert padded.shape == (22, 30) and (padded[20:, :28] == padded[19, :28]).all()


def test_time_interpolation_is_linear_in_z():
    before, after = np.full((2, 2), 10.0, np.float32), np.full((2, 2), 30.0, np.float32)
    middle = interpolate_in_time(before, after, 0.5)
    np.testing.assert_allclose(middle, 10 * np.log10((10.0 + 1000.0) / 2), atol=1e-4)
    assert interpolate_in_time(before, after, 0.0) is before


def test_knmi_frame_units_times_and_no_data(data_root):
    dbz, valid, time = radar_knmi.read_frame(data_root / KNMI_EVENT / "RAD_NL25_RAP_5min_201008260600.h5")
    assert dbz.shape == valid.shape == (765, 700) and dbz.dtype == np.float32
    assert str(time) == "2010-08-26 06:00:00"
    assert 0.2 < valid.mean() < 0.35                       # 65535 outside the composite's range
    assert (dbz[~valid] == NO_ECHO_DBZ).all()
    assert dbz[valid].min() == NO_ECHO_DBZ and 35 < dbz[valid].max() < 60
    assert (dbz[valid] >= 20).mean() > 0.1                  # the heavy-rain day


def test_knmi_event_on_the_model_grid(knmi_event):
    series = knmi_event
    assert series.shape == (92, 1, 191, 175) and series.units == "dBZ"
    assert series.pixel_km == 4.0 and series.step_minutes == 5
    assert (np.diff(series.times) == np.timedelta64(5, "m")).all()
    assert str(series.times[0]) == "2010-08-26T00:00"
    splits = [series.slice(*radar_sets.KNMI_SPLITS[split]) for split in ("train", "val", "test")]
    assert [len(s) for s in splits] == [46, 22, 24]
    assert splits[1].times[0] > splits[0].times[-1] and splits[2].times[0] > splits[1].times[-1]


def test_bad_knmi_files_are_refused_in_one_line(tmp_path, data_root):
    h5py = pytest.importorskip("h5py")
    foreign = tmp_path / "RAD_NL25_RAP_5min_201008260000.h5"
    with h5py.File(foreign, "w") as handle:
        handle["something/else"] = np.zeros(3)
    with pytest.raises(DataError, match="not a KNMI radar HDF5 file"):
        radar_knmi.read_frame(foreign)
    real = (data_root / KNMI_EVENT / "RAD_NL25_RAP_5min_201008260000.h5").read_bytes()
    foreign.write_bytes(real[:len(real) // 3])
    with pytest.raises(DataError, match="not a KNMI radar HDF5 file"):
        radar_knmi.read_frame(foreign)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no KNMI radar files"):
        radar_knmi.list_frames(tmp_path / "empty")


def _knmi_copy(tmp_path, data_root, name: str, *, quantity: bytes, formula: bytes, data=None, start=None):
    """A real KNMI file saved as ``name`` with its quantity, calibration, data or start time replaced."""
    h5py = pytest.importorskip("h5py")
    copy = tmp_path / name
    copy.write_bytes((data_root / KNMI_EVENT / "RAD_NL25_RAP_5min_201008260600.h5").read_bytes())
    with h5py.File(copy, "r+") as handle:
        handle["image1"].attrs["image_geo_parameter"] = quantity
        handle["image1/calibration"].attrs["calibration_formulas"] = formula
        if data is not None:
            del handle["image1/image_data"]
            handle["image1/image_data"] = data
            for key in ("calibration_missing_data", "calibration_out_of_image"):
                handle["image1/calibration"].attrs[key] = np.array([255], np.int32)
        if start is not None:
            handle["overview"].attrs["product_datetime_start"] = start
    return copy


def test_knmi_reflectivity_and_longer_accumulations_read_as_dbz(tmp_path, data_root):
    """RAD_NL25_PCP_NA (reflectivity, GEO=0.5*PV+-32, 8 bit) and an hourly accumulation read as the
    5-minute accumulation they are made of: the product's minutes come from its start and end."""
    dbz, valid, time = radar_knmi.read_frame(data_root / KNMI_EVENT / "RAD_NL25_RAP_5min_201008260600.h5")
    pv = np.where(valid, np.clip(np.round((dbz + 32) / 0.5), 0, 254), 255).astype(np.uint8)
    reflectivity = _knmi_copy(tmp_path, data_root, "RAD_NL25_PCP_NA_201008260600.h5",
                              quantity=b"REFLECTIVITY_[DBZ]", formula=b"GEO=0.500000*PV+-32.000000", data=pv)
    read, read_valid, read_time = radar_knmi.read_frame(reflectivity)
    np.testing.assert_array_equal(read_valid, valid)
    assert read_time == time
    np.testing.assert_allclose(read[valid], dbz[valid], atol=0.25 + 1e-4)
    hourly = _knmi_copy(tmp_path, data_root, "RAD_NL25_RAC_MFBS_01H_201008260600.h5",
                        quantity=b"ACCUMULATED_PRECIPITATION_[MM]", formula=b"GEO=0.12*PV+0.0",
                        start=b"26-AUG-2010;05:00:00.000")       # 12× the 5-minute amount over 60 min: same rate
    read, read_valid, _ = radar_knmi.read_frame(hourly)
    np.testing.assert_array_equal(read_valid, valid)
    np.testing.assert_allclose(read[valid], dbz[valid], atol=1e-4)


def test_other_knmi_quantities_and_calibrations_are_refused(tmp_path, data_root):
    echo_tops = _knmi_copy(tmp_path, data_root, "RAD_NL25_ETH_NA_201008260600.h5",
                           quantity=b"ECHO_TOP_HEIGHT_[KM]", formula=b"GEO=0.1*PV+0.0")
    with pytest.raises(DataError, match=r"holds ECHO_TOP_HEIGHT_\[KM\]; read: an accumulation in mm"):
        radar_knmi.read_frame(echo_tops)
    odd = _knmi_copy(tmp_path, data_root, "RAD_NL25_RAP_5min_201008260600.h5",
                     quantity=b"ACCUMULATED_PRECIPITATION_[MM]", formula=b"GEO=log(PV)")
    with pytest.raises(DataError, match="is not GEO=a\\*PV\\+b"):
        radar_knmi.read_frame(odd)


def test_mrms_crop_units_times_and_coverage(mrms_files):
    pytest.importorskip("eccodes")
    assert len(mrms_files) == 36
    dbz, valid, time = radar_mrms.read_frame(mrms_files[0], MRMS_BOX)
    assert dbz.shape == valid.shape == (400, 400) and dbz.dtype == np.float32
    assert str(time) == "2019-06-10 00:00:00"
    assert valid.all() and dbz.min() == NO_ECHO_DBZ and 45 < dbz.max() < 70
    assert 0.02 < (dbz >= 20).mean() < 0.3
    # the Pacific corner of the grid is outside every radar's range (−3 = no coverage)
    corner, corner_valid, _ = radar_mrms.read_frame(mrms_files[0], radar_mrms.Box(3000, 0, 100, 100))
    assert not corner_valid.any() and (corner == NO_ECHO_DBZ).all()


def test_mrms_two_minute_files_on_a_five_minute_step(mrms_files, data_root):
    pytest.importorskip("eccodes")
    series = radar_mrms.load_event(data_root / MRMS_EVENT, files=mrms_files[:6], box=MRMS_BOX)
    assert series.shape == (3, 1, 100, 100) and series.pixel_km == 4.0 and series.step_minutes == 5
    assert [str(t) for t in series.times] == ["2019-06-10T00:00", "2019-06-10T00:05", "2019-06-10T00:10"]
    # 00:05 lies midway between the 00:04 and 00:06 files: their mean in linear Z
    coarse = [downsample(*radar_mrms.read_frame(path, MRMS_BOX)[:2], 4)[0] for path in mrms_files[2:4]]
    np.testing.assert_allclose(series.values[1, 0], interpolate_in_time(*coarse, 0.5), atol=1e-3)


def test_mrms_gaps_and_foreign_files_are_refused(tmp_path, mrms_files, data_root):
    pytest.importorskip("eccodes")
    with pytest.raises(DataError, match="not every 2 min"):
        radar_mrms.load_event(data_root / MRMS_EVENT, files=[mrms_files[0], mrms_files[2]], box=MRMS_BOX)
    with pytest.raises(DataError, match="less than one 5-min step"):
        radar_mrms.load_event(data_root / MRMS_EVENT, files=mrms_files[:2], box=MRMS_BOX)
    truncated = tmp_path / mrms_files[0].name
    truncated.write_bytes(mrms_files[0].read_bytes()[:5000])
    with pytest.raises(DataError, match=truncated.name):
        radar_mrms.read_frame(truncated)
    truncated.write_bytes(b"GRIB but not really")
    with pytest.raises(DataError):
        radar_mrms.read_frame(truncated)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no MRMS files"):
        radar_mrms.list_frames(tmp_path / "empty")


def test_mrms_regions_split_by_place_not_time():
    train = set(radar_sets.MRMS_REGIONS["train"])
    held_out = set(radar_sets.MRMS_REGIONS["val"]) | set(radar_sets.MRMS_REGIONS["test"])
    assert not train & held_out and radar_sets.MRMS_REGIONS["val"] != radar_sets.MRMS_REGIONS["test"]


def test_windows_of_several_sources_keep_their_own_grids(data_root, knmi_event):
    fmi = radar_sets.fmi_split(data_root / "radar_fmi", "val")
    knmi = knmi_event.slice(*radar_sets.KNMI_SPLITS["test"])
    normaliser = Normaliser.fit(knmi)
    windows = window_set([fmi, knmi], t_in=6, t_out=6, normaliser=normaliser, fallback="persistence",
                         multiple=16)
    assert isinstance(windows, ConcatWindows)
    lengths = [len(part) for part in windows.parts]
    assert len(windows) == sum(lengths) == (len(fmi) - 11) + (len(knmi) - 11)
    assert windows.size(0) == (306, 190) and windows.size(len(windows) - 1) == (191, 175)
    last = windows.item(len(windows) - 1)
    np.testing.assert_array_equal(last["frames"], windows.parts[1].item(lengths[1] - 1)["frames"])
    assert isinstance(window_set([knmi], t_in=6, t_out=6, normaliser=normaliser, fallback="persistence",
                                 multiple=16), WindowDataset)
    other = WindowDataset(knmi, t_in=4, t_out=6, normaliser=normaliser, fallback="persistence", multiple=16)
    with pytest.raises(DataError, match="cannot be trained on together"):
        ConcatWindows([windows.parts[0], other])
