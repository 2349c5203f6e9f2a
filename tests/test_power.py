"""Power meters on fixture trees and lines that copy the real Jetson / Intel formats."""
import logging
import stat
import time

import pytest

from dyna_stream.control.power import (
    Ina3221Meter,
    RaplMeter,
    TegrastatsMeter,
    detect_meter,
    parse_tegrastats,
    tegrastats_watts,
)

AGX_ORIN = {  # JetPack 5/6 AGX Orin: two INA3221 at 1-0040 and 1-0041 (mV, mA)
    "1-0040/hwmon/hwmon3": [("VDD_GPU_SOC", 5000, 630), ("VDD_CPU_CV", 5000, 2862), ("VIN_SYS_5V0", 5000, 909),
                            ("sum of shunt voltages", 15000, None)],
    "1-0041/hwmon/hwmon4": [("NC", 0, 0), ("VDDQ_VDD2_1V8AO", 5000, 121), ("NC", 0, 0)],
}
ORIN_NX = {"1-0040/hwmon/hwmon1": [("VDD_IN", 5016, 1220), ("VDD_CPU_GPU_CV", 5008, 270), ("VDD_SOC", 5008, 340)]}


def make_tree(root, layout):
    for device, channels in layout.items():
        folder = root / "sys/bus/i2c/drivers/ina3221" / device
        folder.mkdir(parents=True)
        for n, (label, millivolts, milliamps) in enumerate(channels, start=1):
            (folder / f"in{n}_label").write_text(label + "\n")
            (folder / f"in{n}_input").write_text(f"{millivolts}\n")
            if milliamps is not None:
                (folder / f"curr{n}_input").write_text(f"{milliamps}\n")
    return root


def test_agx_orin_rails_are_summed_skipping_nc_and_the_sum_channel(tmp_path):
    meter = Ina3221Meter.detect(make_tree(tmp_path, AGX_ORIN))
    assert sorted(meter.rails_mw()) == ["VDDQ_VDD2_1V8AO", "VDD_CPU_CV", "VDD_GPU_SOC", "VIN_SYS_5V0"]
    assert meter.read_watts() == pytest.approx(5 * (630 + 2862 + 909 + 121) / 1000)


def test_orin_nx_uses_the_input_rail_as_the_total(tmp_path):
    meter = Ina3221Meter.detect(make_tree(tmp_path, ORIN_NX))
    assert meter.read_watts() == pytest.approx(5016 * 1220 / 1e6)


def test_vanished_or_garbled_sensor_files_give_none_not_a_crash(tmp_path):
    meter = Ina3221Meter.detect(make_tree(tmp_path, ORIN_NX))
    next(tmp_path.rglob("curr1_input")).unlink()
    assert meter.read_watts() is None
    next(tmp_path.rglob("in2_input")).write_text("garbage")
    assert meter.read_watts() is None


LINES = {
    "jetpack5_agx": ("RAM 2448/30536MB (lfb 6x4MB) SWAP 0/15268MB (cached 0MB) CPU [1%@729,0%@729,off,off] "
                     "EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305,305] VDD_GPU_SOC 3150mW/2971mW VDD_CPU_CV 14312mW/12415mW "
                     "VIN_SYS_5V0 4543mW/4543mW VDDQ_VDD2_1V8AO 606mW/606mW", 3.150 + 14.312 + 4.543 + 0.606),
    "jetpack6_nx": ("11-27-2026 10:01:02 RAM 3120/15656MB CPU [3%@1984,2%@1984] GR3D_FREQ 0% cpu@47.5C "
                    "VDD_IN 6120mW/6000mW VDD_CPU_GPU_CV 838mW/800mW VDD_SOC 1519mW/1500mW", 6.120),
    "jetpack7_thor": ("11-27-2026 10:01:02 RAM 9000/128000MB CPU [1%@972] VDD_GPU 2015mW/1988mW/2400mW "
                      "VDD_CPU_SOC_MSS 9120mW/9003mW/9900mW VIN_SYS_5V0 3300mW/3251mW/3500mW", 2.015 + 9.120 + 3.300),
}


@pytest.mark.parametrize("name", sorted(LINES))
def test_tegrastats_lines_of_every_jetpack_format(name):
    line, watts = LINES[name]
    assert tegrastats_watts(line) == pytest.approx(watts)
    assert all(value > 0 for value in parse_tegrastats(line).values())


def test_malformed_tegrastats_lines_give_none():
    assert tegrastats_watts("RAM 2448/7620MB CPU [1%@729]") is None
    assert tegrastats_watts("") is None


def test_tegrastats_meter_reads_a_running_process(tmp_path):
    script = tmp_path / "tegrastats"
    script.write_text("#!/bin/sh\necho 'garbage line'\n" + "".join(
        f"echo '{LINES['jetpack6_nx'][0]}'\nsleep 0.05\n" for _ in range(3)) + "sleep 5\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    meter = TegrastatsMeter(str(script), interval_ms=50)
    try:
        deadline = time.monotonic() + 5
        while meter.read_watts() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert meter.read_watts() == pytest.approx(6.120)
    finally:
        meter.close()


def test_rapl_power_from_energy_differences_including_wrap_around(tmp_path):
    zone = tmp_path / "sys/class/powercap/intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    now = [100.0]
    (zone / "energy_uj").write_text("262143000000\n")
    meter = RaplMeter(zone, clock=lambda: now[0])
    assert meter.read_watts() is None                       # first sample only starts the measurement
    now[0] += 2.0
    (zone / "energy_uj").write_text("9671150\n")            # wrapped: (262143328850 - 262143000000 + 1) + 9671150 µJ
    assert meter.read_watts() == pytest.approx((328851 + 9671150) / 1e6 / 2.0)
    (zone / "energy_uj").unlink()
    assert meter.read_watts() is None


def test_detection_order_and_no_meter(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))     # no tegrastats on PATH
    with caplog.at_level(logging.INFO):
        assert detect_meter(tmp_path, order=("ina3221", "tegrastats", "rapl")) is None
    assert "power is not measured" in caplog.text                 # said, but no warning without a cap
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    make_tree(tmp_path, ORIN_NX)
    assert detect_meter(tmp_path, order=("ina3221", "tegrastats", "rapl")).name == "ina3221"
