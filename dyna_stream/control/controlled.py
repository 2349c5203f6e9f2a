"""A predictor whose operating point a controller picks frame by frame, and the ZeroMQ control
endpoint that changes its budgets at run time."""
from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

from ..config import ControlConfig
from ..predictor import Forecast, Predictor
from .controller import Controller
from .power import PowerMeter
from .profile import load_or_measure, points, profile_inputs

log = logging.getLogger(__name__)


def profiled_controller(predictor: Predictor, checkpoint_path: str | Path, control: ControlConfig,
                        meter: PowerMeter | None) -> Controller:
    """Profile the predictor's model on this machine, device and engine (cached per model + machine),
    then a controller over the profiled points with the budgets of ``control``."""
    if control.power_cap_w and meter is None:
        log.warning("power cap %.1f W is ignored: no power meter found on this machine", control.power_cap_w)
    frames, windows = profile_inputs(predictor.checkpoint, control.data_root)
    rows = load_or_measure(checkpoint_path, predictor, frames, windows, cache_dir=Path(control.cache_dir).expanduser(),
                           runs=control.profile_runs, max_age_h=control.profile_max_age_h, meter=meter)
    return Controller(points(rows), latency_budget_ms=control.latency_budget_ms,
                      power_cap_w=control.power_cap_w if meter is not None else None,
                      confidence=control.confidence, dwell_frames=control.dwell_frames, hysteresis=control.hysteresis)


class ControlledPredictor:
    """Calls ``predictor`` at the point ``controller`` chooses, then feeds back the measured latency
    (ms, this call) and power (W). Switching points only sets two numbers: nothing is reloaded."""

    def __init__(self, predictor: Predictor, controller: Controller, meter: PowerMeter | None = None) -> None:
        self.predictor, self.controller, self.meter = predictor, controller, meter
        self.last_latency_ms = math.nan
        self.last_power_w: float | None = None

    def __call__(self, frames) -> Forecast:
        point = self.controller.choose()
        self.predictor.data_sparsity, self.predictor.model_sparsity = point.data_sparsity, point.model_sparsity
        started = time.perf_counter()
        result = self.predictor(frames)
        self.last_latency_ms = (time.perf_counter() - started) * 1e3
        self.last_power_w = self.meter.read_watts() if self.meter is not None else None
        self.controller.observe(self.last_latency_ms, self.last_power_w, point)
        return result

    @property
    def operating_point(self) -> dict[str, Any]:
        c = self.controller
        return {**self.predictor.operating_point, "latency_budget_ms": c.latency_budget_ms,
                "power_cap_w": c.power_cap_w, "inference_ms": self.last_latency_ms, "power_w": self.last_power_w,
                "slowdown": c.slowdown.mean, "switches": c.switches}


class ControlServer:
    """REP socket: a msgpack map {"latency_budget_ms": float|None, "power_cap_w": float|None} sets
    the budgets (keys left out keep their value); the reply is {"ok": true, ...budgets} or
    {"ok": false, "error": "..."} for bad requests, which change nothing."""

    def __init__(self, controller: Controller, endpoint: str, *, context: zmq.Context) -> None:
        self.controller = controller
        self.socket = context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dyna_stream-control", daemon=True)

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def _handle(self, raw: bytes) -> dict:
        try:
            request = msgpack.unpackb(raw, raw=False, max_str_len=256, max_map_len=8, max_array_len=8)
        except Exception as exc:
            return {"ok": False, "error": f"not msgpack ({type(exc).__name__})"}
        if not isinstance(request, dict) or not set(request) <= {"latency_budget_ms", "power_cap_w"}:
            return {"ok": False, "error": "send a map with latency_budget_ms and/or power_cap_w"}
        budgets = {"latency_ms": self.controller.latency_budget_ms, "power_w": self.controller.power_cap_w}
        for key, target in (("latency_budget_ms", "latency_ms"), ("power_cap_w", "power_w")):
            if key in request:
                value = request[key]
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                          or not math.isfinite(value) or value <= 0):
                    return {"ok": False, "error": f"{key} must be a positive number or null, got {value!r}"}
                budgets[target] = None if value is None else float(value)
        self.controller.set_budget(**budgets)
        log.info("budgets now: latency %s ms, power %s W", budgets["latency_ms"], budgets["power_w"])
        return {"ok": True, "latency_budget_ms": budgets["latency_ms"], "power_cap_w": budgets["power_w"]}

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.socket.poll(100):
                self.socket.send(msgpack.packb(self._handle(self.socket.recv())))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.socket.close(0)
