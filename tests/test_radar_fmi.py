"""FMI radar loader on the real files, and the §7 protocol reproduced on the test event."""
import gzip

import numpy as np
import pytest

from dyna_stream.data import radar_fmi
from dyna_stream.data.normalise import Normaliser
from dyna_stream.data.registry import get_dataset, load_split
from dyna_stream.data.windows import WindowDataset
from dyna_stream.errors import DataError
from dyna_stream.evaluate.runner import extrapolation_forecasts, score

FIRST = "20160928/201609281445_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"


def test_reads_a_real_pgm_with_its_header(data_root):
    dn, meta = radar_fmi.read_pgm(data_root / "radar_fmi" / FIRST)
    assert dn.shape == (1226, 760) and dn.dtype == np.uint8
    assert meta["obstime"] == "201609281445"
    assert (dn == radar_fmi.NODATA_DN).mean() == pytest.approx(0.24, abs=0.03)


def test_dn_to_dbz_follows_the_fmi_scale():
    dbz, valid = radar_fmi.dn_to_dbz(np.array([0, 64, 164, 255], np.uint8))
    np.testing.assert_allclose(dbz[:3], [-32.0, 0.0, 50.0])
    assert valid.tolist() == [True, True, True, False]


def test_downsample_means_linear_z_and_applies_the_half_rule():
    dbz = np.full((8, 4), 10.0, np.float32)
    dbz[0, 0] = 30.0
    valid = np.ones((8, 4), bool)
    valid[4:, :] = False
    valid[4:6, :] = True  # second block: exactly half valid -> kept
    out, ok = radar_fmi.downsample(dbz, valid, 4)
    expected = 10 * np.log10((15 * 10**1.0 + 10**3.0) / 16)
    assert out.shape == (2, 1) and ok.tolist() == [[True], [True]]
    assert out[0, 0] == pytest.approx(expected, abs=1e-4)
    valid[5, 0] = False  # 7 of 16 valid -> no data
    assert not radar_fmi.downsample(dbz, valid, 4)[1][1, 0]


def test_event_has_40_frames_every_5_minutes(data_root):
    series = radar_fmi.load_event(data_root / "radar_fmi" / "20170509")
    assert series.shape == (40, 1, 306, 190) and series.units == "dBZ"
    assert (np.diff(series.times) == np.timedelta64(5, "m")).all()
    assert series.values[series.valid].min() >= -32 and series.values.max() < 70
    assert not series.valid.all() and series.valid.mean() > 0.7


def test_protocol_reproduces_the_reference_persistence_scores(data_root):
    spec = get_dataset("radar-fmi")
    series = load_split("radar-fmi", "test", data_root)
    windows = WindowDataset(series, t_in=6, t_out=6, normaliser=Normaliser.fit(series), fallback="persistence",
                            multiple=16)
    result = score(windows, extrapolation_forecasts(windows, "persistence"), thresholds=spec.csi_thresholds,
                   data_range=127.0)
    assert result["mse_mean"] == pytest.approx(234.1, abs=0.1)
    assert result["mae_mean"] == pytest.approx(8.17, abs=0.01)
    assert result["csi@20_mean"] == pytest.approx(0.183, abs=0.001)
    advection = score(windows, extrapolation_forecasts(windows, "advection"), thresholds=(20.0,), data_range=127.0)
    assert 80 < advection["mse_mean"] < 95 and advection["csi@20_mean"] > 0.33


def test_truncated_file_is_refused_with_the_fix(tmp_path, data_root):
    raw = gzip.decompress((data_root / "radar_fmi" / FIRST).read_bytes())
    broken = tmp_path / "201609281445_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"
    broken.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="truncated"):
        radar_fmi.read_pgm(broken)
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="gzip"):
        radar_fmi.read_pgm(broken)


def test_gaps_and_empty_folders_are_refused(tmp_path, data_root):
    with pytest.raises(DataError, match="no FMI radar files"):
        radar_fmi.list_frames(tmp_path)
    source = data_root / "radar_fmi" / "20160928"
    for name in sorted(p.name for p in source.iterdir())[:3:2]:  # 14:45 and 14:55: a gap
        (tmp_path / name).write_bytes((source / name).read_bytes())
    with pytest.raises(DataError, match="not every 5 min"):
        radar_fmi.list_frames(tmp_path)
