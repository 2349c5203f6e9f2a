"""Power meters behind one interface, chosen by auto-detection (DESIGN §5).

Each meter reads a real interface: Jetson Orin INA3221 hwmon files, ``tegrastats`` output
lines, Intel RAPL energy counters, NVIDIA NVML. ``read_watts()`` returns the board/package power
in W, or None when no reading is possible right now (vanished files, malformed lines, the first
sample of an energy counter); failures are logged once per kind and never raise.
"""
from __future__ import annotations

import logging
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class PowerMeter(Protocol):
    name: str

    def read_watts(self) -> float | None: ...

    def close(self) -> None: ...


def _warn_once(meter: object, key: str, message: str, *args) -> None:
    seen = meter.__dict__.setdefault("_warned", set())
    if key not in seen:
        seen.add(key)
        log.warning(message, *args)


# ---- Jetson Orin INA3221 (hwmon) -------------------------------------------------------------
TOTAL_RAILS = ("VDD_IN",)   # Orin NX / Nano: the module's input rail already holds the others


class Ina3221Meter:
    """Sums the INA3221 rails under ``root``/sys/bus/i2c/drivers/ina3221/1-004*/hwmon/hwmon*.

    Each channel N has ``inN_label`` (rail name), ``inN_input`` (mV) and ``currN_input`` (mA);
    P = mV·mA/1000 mW. Channels labelled NC and the "sum of shunt voltages" channel are skipped.
    If a total rail (VDD_IN) exists it is the board power; otherwise the rails are summed
    (AGX Orin: VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0 + VDDQ_VDD2_1V8AO).
    """

    name = "ina3221"

    def __init__(self, channels: list[tuple[str, Path, Path]]) -> None:
        self.channels = channels   # (rail, voltage file, current file)

    @classmethod
    def detect(cls, root: Path) -> Ina3221Meter | None:
        channels = []
        for hwmon in sorted(root.glob("sys/bus/i2c/drivers/ina3221/1-004*/hwmon/hwmon*")):
            for label_file in sorted(hwmon.glob("in*_label")):
                index = label_file.name[2:-6]
                rail = label_file.read_text().strip()
                voltage, current = hwmon / f"in{index}_input", hwmon / f"curr{index}_input"
                if rail.upper().startswith("NC") or "sum" in rail.lower() or not current.exists():
                    continue
                channels.append((rail, voltage, current))
        return cls(channels) if channels else None

    def rails_mw(self) -> dict[str, float] | None:
        try:
            return {rail: float(v.read_text()) * float(c.read_text()) / 1000.0 for rail, v, c in self.channels}
        except (OSError, ValueError) as exc:
            _warn_once(self, "read", "INA3221 reading failed (%s); power unknown until it recovers", exc)
            return None

    def read_watts(self) -> float | None:
        rails = self.rails_mw()
        if rails is None:
            return None
        totals = [rails[r] for r in TOTAL_RAILS if r in rails]
        return (totals[0] if totals else sum(rails.values())) / 1000.0

    def close(self) -> None:
        pass


# ---- tegrastats --------------------------------------------------------------------------------
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]+) (\d+)mW/(\d+)mW(?:/(\d+)mW)?")


def parse_tegrastats(line: str) -> dict[str, float]:
    """Rail → instantaneous mW from one tegrastats line (JetPack 5/6: ``now/avg``; 7: ``now/avg/max``)."""
    return {match.group(1): float(match.group(2)) for match in _RAIL.finditer(line)}


def tegrastats_watts(line: str) -> float | None:
    rails = parse_tegrastats(line)
    if not rails:
        return None
    totals = [rails[r] for r in TOTAL_RAILS if r in rails]
    return (totals[0] if totals else sum(rails.values())) / 1000.0


class TegrastatsMeter:
    """Runs ``tegrastats --interval MS`` and keeps the latest parsed board power."""

    name = "tegrastats"

    def __init__(self, command: str = "tegrastats", interval_ms: int = 100) -> None:
        self.process = subprocess.Popen([command, "--interval", str(interval_ms)], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        self._latest: float | None = None
        self._thread = threading.Thread(target=self._read, name="tegrastats", daemon=True)
        self._thread.start()

    @classmethod
    def detect(cls, root: Path, command: str = "tegrastats") -> TegrastatsMeter | None:
        from shutil import which

        return cls(command) if which(command) else None

    def _read(self) -> None:
        for line in self.process.stdout:
            watts = tegrastats_watts(line)
            if watts is None:
                _warn_once(self, "parse", "tegrastats line without power rails: %r", line[:120])
                continue
            self._latest = watts

    def read_watts(self) -> float | None:
        return self._latest

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(5)


# ---- Intel RAPL --------------------------------------------------------------------------------
class RaplMeter:
    """Package power from ``intel-rapl:0/energy_uj`` differences; the counter wraps at
    ``max_energy_range_uj``. The first call only starts the measurement (returns None)."""

    name = "rapl"

    def __init__(self, zone: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.zone, self.clock = zone, clock
        self.max_range = int((zone / "max_energy_range_uj").read_text())
        self._last: tuple[int, float] | None = None

    @classmethod
    def detect(cls, root: Path) -> RaplMeter | None:
        zone = root / "sys/class/powercap/intel-rapl:0"
        try:
            return cls(zone) if (zone / "energy_uj").exists() else None
        except (OSError, ValueError):
            return None

    def read_watts(self) -> float | None:
        try:
            energy = int((self.zone / "energy_uj").read_text())
        except (OSError, ValueError) as exc:
            _warn_once(self, "read", "RAPL reading failed (%s)", exc)
            return None
        now, last, self._last = self.clock(), self._last, (energy, self.clock())
        if last is None or now <= last[1]:
            return None
        delta = energy - last[0]
        if delta < 0:
            delta += self.max_range + 1
        return delta / 1e6 / (now - last[1])

    def close(self) -> None:
        pass


# ---- NVIDIA NVML -------------------------------------------------------------------------------
class NvmlMeter:
    """GPU board power from NVML (nvidia-ml-py), device ``index``."""

    name = "nvml"

    def __init__(self, index: int = 0) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._nvml, self._handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)

    @classmethod
    def detect(cls, root: Path) -> NvmlMeter | None:
        try:
            return cls()
        except Exception:  # no library, no driver, no device: not available
            return None

    def read_watts(self) -> float | None:
        try:
            return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0
        except Exception as exc:
            _warn_once(self, "read", "NVML reading failed (%s)", exc)
            return None

    def close(self) -> None:
        self._nvml.nvmlShutdown()


METERS: dict[str, Callable[[Path], PowerMeter | None]] = {
    "ina3221": Ina3221Meter.detect,
    "tegrastats": TegrastatsMeter.detect,
    "rapl": RaplMeter.detect,
    "nvml": NvmlMeter.detect,
}


def detect_meter(root: str | Path = "/", order: tuple[str, ...] = tuple(METERS)) -> PowerMeter | None:
    """The first meter that works on this machine, or None (power is then not measured; callers that
    were given a power cap say it cannot be enforced)."""
    for name in order:
        meter = METERS[name](Path(root))
        if meter is not None:
            log.info("power meter: %s", name)
            return meter
    log.info("no power meter found (INA3221, tegrastats, RAPL, NVML): power is not measured")
    return None
