"""MeteoSwiss GIF composites (the archive's AQC / CPC products): written here on MeteoSwiss' logarithmic
scale from real KNMI frames, read back, and forecast from like the services' own folders."""
from datetime import datetime, timedelta

import numpy as np
import pytest
from PIL import Image

from dyna_stream.data import radar_mch
from dyna_stream.data.reflectivity import MARSHALL_PALMER, MIN_RAIN_MM_H, NO_ECHO_DBZ, rate_to_dbz
from dyna_stream.errors import DataError

from conftest import predict_beside_knmi, refuse_mixed_and_hourly_folders

HALF_DN_DB = 10 * MARSHALL_PALMER[1] / 60 + 1e-3     # half a DN step of the scale, in Marshall–Palmer dBZ
CLEAR_ECHO_DBZ = float(rate_to_dbz(np.float64(MIN_RAIN_MM_H))) + HALF_DN_DB   # echo that rounding keeps echo


def name(time: datetime, product: str = "AQC", minutes: int | None = 5) -> str:
    return f"{product}{time:%y%j%H%M}0V" + (f"_{minutes:05d}" if minutes else "") + ".801.gif"


def write_mch(folder, dbz: np.ndarray, valid: np.ndarray, time: datetime, *, product: str = "AQC",
              minutes: int = 5) -> None:
    """One frame as the MeteoSwiss archive holds it: a palette GIF whose index is the DN of the
    amount over ``minutes`` (amount = (10^((DN − 71.5) / 20) / 316)^(1 / 1.5) mm), 255 = no data."""
    a, b = MARSHALL_PALMER
    echo = valid & (dbz > NO_ECHO_DBZ)
    amount = np.where(echo, (10 ** (dbz / 10) / a) ** (1 / b), 1.0) * minutes / 60
    dn = np.clip(np.round(71.5 + 20 * np.log10(316 * amount ** 1.5)), 2, 250)
    dn = np.where(valid, np.where(echo, dn, 0), 255).astype(np.uint8)
    image = Image.fromarray(dn)
    image.putpalette([level for index in range(256) for level in (index, 255 - index, (7 * index) % 256)])
    image.save(folder / name(time, product, minutes))


def test_composites_read_as_the_knmi_frames_they_were_made_of(tmp_path, knmi_frames):
    _, frames = knmi_frames
    dbz, valid, time = frames[-1]
    write_mch(tmp_path, dbz, valid, time)
    read, read_valid, read_time, pixel_km, product = radar_mch.read_frame(tmp_path / name(time))
    np.testing.assert_array_equal(read_valid, valid)                     # DN 255: no radar
    assert read_time == time and product == "AQC" and pixel_km == 1.0 and read.dtype == np.float32
    echo = valid & (dbz > CLEAR_ECHO_DBZ)
    assert echo.sum() > 1000
    np.testing.assert_allclose(read[echo], dbz[echo], atol=HALF_DN_DB)     # the 8-bit scale's rounding
    assert (read[valid & (dbz <= NO_ECHO_DBZ)] == NO_ECHO_DBZ).all()        # DN 0: no echo, not no data


def test_an_hourly_product_says_so_in_its_rate(tmp_path, knmi_frames):
    _, frames = knmi_frames
    dbz, valid, time = frames[-1]
    write_mch(tmp_path, dbz, valid, time, product="CPC", minutes=60)
    read, _, _, _, product = radar_mch.read_frame(tmp_path / name(time, "CPC", 60))
    echo = valid & (dbz > CLEAR_ECHO_DBZ)
    assert product == "CPC"
    np.testing.assert_allclose(read[echo], dbz[echo], atol=HALF_DN_DB)


def test_predict_forecasts_from_a_meteoswiss_folder_as_from_the_knmi_folder(tmp_path, knmi_frames):
    # the 8-bit scale rounds by up to 0.27 dB, which can move a kept tile: 99 % of the cells within 1 dB
    forecast = predict_beside_knmi(tmp_path, *knmi_frames, write_mch, "mch", atol=1.0, share=0.99)["forecast"]
    assert forecast.shape == (6, 1, 765, 700)                                 # back on the file's 1 km cells


def test_what_is_not_read_is_refused_in_one_line(tmp_path, knmi_frames):
    _, frames = knmi_frames
    dbz, valid, time = frames[0]
    write_mch(tmp_path, dbz, valid, time, product="RZC")
    with pytest.raises(DataError, match="RZC codes its values through a colour table"):
        radar_mch.read_frame(tmp_path / name(time, "RZC"))
    write_mch(tmp_path, dbz, valid, time, product="CZC")
    with pytest.raises(DataError, match="product CZC is not read here"):
        radar_mch.read_frame(tmp_path / name(time, "CZC"))
    broken = tmp_path / name(time + timedelta(minutes=5))
    broken.write_bytes(b"GIF89a" + b"\0" * 10)
    with pytest.raises(DataError, match="not a readable GIF"):
        radar_mch.read_frame(broken)
    Image.new("RGB", (8, 8)).save(tmp_path / name(time + timedelta(minutes=10)), format="PNG")   # a picture
    with pytest.raises(DataError, match="holds 8-bit digital numbers"):
        radar_mch.read_frame(tmp_path / name(time + timedelta(minutes=10)))
    with pytest.raises(DataError, match="is not a time yyjjjHHMM"):
        radar_mch.read_frame(tmp_path / "AQC163992100V_00005.801.gif")     # day 399


def test_folders_of_two_products_or_another_step_are_refused_by_predict(tmp_path, knmi_frames):
    refuse_mixed_and_hourly_folders(tmp_path, knmi_frames[1], write_mch, ("AQC", "CPC"), "CPC")
