"""The real ``ros2 launch dyna_stream nowcast.launch.py`` and ``ros2 param`` (Jazzy launch,
launch_ros and ros2cli from the launch kit that ``scripts/install_ros.sh`` builds into .venv-ros),
run the way a robot user runs them: ``source /opt/ros/jazzy/setup.bash`` (here the kit's
stand-in), ``source install/setup.bash``, then the command; Ctrl-C is SIGINT to the process group."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from radar import SD, SW, RadarSample, image, stamp_ns
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from dyna_stream.stream.ros_messages import unstack_forecast

from conftest import INSTALL, REPO, NodeProcess, spin_until, write_params

KIT_SETUP = REPO / ".venv-ros" / "ros_setup.bash"
pytestmark = pytest.mark.skipif(not KIT_SETUP.is_file(), reason="no ROS 2 launch kit in .venv-ros "
                                "(scripts/install_ros.sh builds it from ../shared/ros2_launch or $ROS2_LAUNCH_KIT)")
SOURCED = '. "$1" && . "$2" && shift 2 && exec "$@"'      # the two `source` lines a user types first
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
PARAMS = {"input_reliability": "reliable", "diagnostics_period_s": 0.3, "sd_min": SD, "sd_max": SD,
          "sw_min": SW, "sw_max": SW}


def ros2_param(verb: str, node_name: str, *args: str, timeout_s: float = 60.0) -> str:
    """``ros2 param VERB NODE ARGS`` (no daemon: nothing is left running), what it printed."""
    done = subprocess.run(["bash", "-c", SOURCED, "bash", str(KIT_SETUP), str(INSTALL / "local_setup.sh"), "ros2",
                           "param", verb, "--no-daemon", "--spin-time", "5", node_name, *args],
                          capture_output=True, text=True, timeout=timeout_s)
    return done.stdout + done.stderr


class LaunchProcess(NodeProcess):
    """``ros2 launch dyna_stream nowcast.launch.py ARGS`` in its own process group, as in a terminal."""

    def __init__(self, launch_args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self.process = subprocess.Popen(
            ["bash", "-c", SOURCED, "bash", str(KIT_SETUP), str(INSTALL / "local_setup.sh"),
             "ros2", "launch", "dyna_stream", "nowcast.launch.py", *launch_args],
            stdout=log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def ctrl_c(self, timeout_s: float = 30.0) -> int:
        """What Ctrl-C in the terminal does: SIGINT to ``ros2 launch`` and the node it started."""
        return self.stop(signal.SIGINT, timeout_s, group=True)


@pytest.fixture
def launch(tmp_path, domain_id, profile_dir):
    started: list[LaunchProcess] = []

    def start(*launch_args: str, params: dict | None = None) -> LaunchProcess:
        params_file = write_params(tmp_path / f"params{len(started)}.yaml", profile_dir, {**PARAMS, **(params or {})})
        process = LaunchProcess([f"params_file:={params_file}", *launch_args], tmp_path / f"launch{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None:
            os.killpg(process.process.pid, signal.SIGKILL)
            process.process.wait()


@pytest.fixture(scope="module")
def radar() -> RadarSample:
    return RadarSample.load()


@pytest.mark.parametrize("namespace", ["", "radar"])
def test_ros2_launch_serves_forecasts_takes_ros2_param_set_and_stops_on_ctrl_c(ros, launch, radar, namespace):
    context, peer, executor = ros
    prefix = f"/{namespace}" if namespace else ""
    node_name = f"{prefix}/nowcast_node"
    running = launch("input_topic:=/camera/radar", "latency_budget_ms:=500",
                     *([f"namespace:={namespace}"] if namespace else []))
    forecasts, importances, diagnostics = {}, {}, []
    peer.create_subscription(Image, f"{prefix}/forecast", lambda m: forecasts.setdefault(stamp_ns(m), m), RELIABLE)
    peer.create_subscription(Image, f"{prefix}/importance", lambda m: importances.setdefault(stamp_ns(m), m),
                             RELIABLE)
    peer.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    publisher = peer.create_publisher(Image, "/camera/radar", RELIABLE)
    assert running.wait_for_log("active", 120.0), running.log()
    assert spin_until(executor, lambda: publisher.get_subscription_count() > 0, 30.0), running.log()
    assert f"configured: frames on /camera/radar, forecasts on {prefix}/forecast" in running.log()

    for values, stamp in zip(radar.frames, radar.stamps):
        publisher.publish(image(values, int(stamp)))
        spin_until(executor, lambda: False, 0.25)
    assert spin_until(executor, lambda: len(forecasts) >= 3 and len(importances) >= 3, 30.0), running.log()
    for stamp, msg in forecasts.items():
        received = unstack_forecast(bytes(msg.data), msg.height, msg.width, leads=radar.checkpoint.t_out)
        np.testing.assert_allclose(received, radar.expected(stamp).forecast, atol=1e-3)
    assert spin_until(executor, lambda: any(_node_status(d, node_name) for d in diagnostics), 10.0)

    # the params file reached the node under any namespace (its key is /**), the launch argument beat it
    assert [ros2_param("get", node_name, name).split()[-1]
            for name in ("latency_budget_ms", "input_reliability")] == ["500.0", "reliable"]
    accepted = ros2_param("set", node_name, "latency_budget_ms", "40")              # an integer
    assert "Set parameter successful" in accepted, accepted
    refused = ros2_param("set", node_name, "latency_budget_ms", "fast")
    assert "Setting parameter failed" in refused and "must be a number" in refused, refused
    assert ros2_param("get", node_name, "latency_budget_ms").split()[-1] == "40", running.log()
    assert running.wait_for_log("budgets: latency 40.0 ms", 10.0), running.log()

    assert running.ctrl_c() == 0, running.log()
    log = running.log()
    assert "process has finished cleanly" in log and "Traceback" not in log, log


def _node_status(array_msg: DiagnosticArray, node_name: str):
    return [status for status in array_msg.status if status.name == f"{node_name.lstrip('/')}: dyna_stream"]


@pytest.mark.parametrize("value", ["fast", "-5"])
def test_a_bad_launch_argument_is_one_clear_error_and_launch_ends(launch, value):
    running = launch(f"latency_budget_ms:={value}")
    try:
        code = running.process.wait(90.0)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"ros2 launch kept running after a bad argument:\n{running.log()}") from None
    log = running.log()
    assert code != 0 and "latency_budget_ms" in log and "Traceback" not in log, log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_the_node_ends_with_ros2_launch_even_when_launch_is_killed(launch, sig):
    running = launch()
    assert running.wait_for_log("active", 120.0), running.log()
    node_pid = int(re.search(r"process started with pid \[(\d+)\]", running.log()).group(1))
    running.process.send_signal(sig)                         # to ros2 launch alone; SIGKILL: no chance to stop it
    running.process.wait(30.0)
    deadline = time.monotonic() + 20.0
    while _alive(node_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(node_pid), f"nowcast_node {node_pid} outlived ros2 launch:\n{running.log()}"


def _alive(pid: int) -> bool:
    """Running (not a zombie); the node is re-parented to init here, which reaps it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
