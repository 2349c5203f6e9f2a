"""The installed ``nowcast_node`` against real rclpy peers: real radar frames in, forecasts that
match the offline predictor out, diagnostics, live parameters, bad input, clean shutdown."""
from __future__ import annotations

import signal
import socket
import threading

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from radar import SD, SW, RadarSample, image, stamp_ns
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from dyna_stream.assets import BUNDLED_SAMPLE
from dyna_stream.data.registry import load_path
from dyna_stream.stream.publisher import replay
from dyna_stream.stream.ros_messages import unstack_forecast

from conftest import spin_until

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
OVERRIDES = {"input_reliability": "reliable", "diagnostics_period_s": 0.3, "sd_min": SD, "sd_max": SD,
             "sw_min": SW, "sw_max": SW}
REMAP = ("-r", "frames:=/radar/image")


def set_parameter(node, executor, name: str, value: float | int | str):
    """What `ros2 param set` sends: a DOUBLE for 50.0, an INTEGER for 40, a STRING for fast."""
    client = node.create_client(SetParameters, "/nowcast_node/set_parameters")
    assert client.wait_for_service(timeout_sec=10.0)
    kind, field = {float: ("PARAMETER_DOUBLE", "double_value"), int: ("PARAMETER_INTEGER", "integer_value"),
                   str: ("PARAMETER_STRING", "string_value")}[type(value)]
    typed = ParameterValue(type=getattr(ParameterType, kind), **{field: value})
    request = SetParameters.Request(parameters=[Parameter(name=name, value=typed)])
    for _ in range(3):        # a request sent before the server's reader matched ours is lost: send it again
        future = client.call_async(request)
        if spin_until(executor, future.done, 10.0):
            break
        client.remove_pending_request(future)
    assert future.done(), f"no answer to setting {name} in 3 tries"
    node.destroy_client(client)
    return future.result().results[0]


@pytest.fixture(scope="module")
def radar() -> RadarSample:
    return RadarSample.load()


def test_forecasts_from_real_radar_match_the_offline_predictor(ros, start_node, radar):
    context, peer, executor = ros
    frames, stamps = radar.frames, radar.stamps
    node = start_node(OVERRIDES, *REMAP)
    forecasts, importances, diagnostics = {}, {}, []
    peer.create_subscription(Image, "/forecast", lambda m: forecasts.setdefault(stamp_ns(m), m), RELIABLE)
    peer.create_subscription(Image, "/importance", lambda m: importances.setdefault(stamp_ns(m), m), RELIABLE)
    peer.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    publisher = peer.create_publisher(Image, "/radar/image", RELIABLE)
    assert spin_until(executor, lambda: publisher.get_subscription_count() > 0 or node.exited, 90.0), node.log()
    assert node.wait_for_log("active", 60.0), node.log()

    # bad input in between: the node logs why, drops the frame and keeps going
    publisher.publish(image(np.zeros((4, 4), np.uint8), int(stamps[0]), encoding="rgb8"))
    for index, (values, stamp) in enumerate(zip(frames, stamps)):
        publisher.publish(image(values, int(stamp)))
        if index == 8:
            publisher.publish(image(frames[7], int(stamps[7])))                          # stamp going backwards
            publisher.publish(image(np.zeros((4, 2), np.float32), int(stamp) + 1))       # not the model grid
        spin_until(executor, lambda: False, 0.25)
    assert spin_until(executor, lambda: len(forecasts) >= 3 and len(importances) >= 3, 30.0), node.log()

    for stamp, msg in forecasts.items():
        expected = radar.expected(stamp)
        assert msg.header.frame_id == "radar" and msg.encoding == "32FC1"
        received = unstack_forecast(bytes(msg.data), msg.height, msg.width, leads=radar.checkpoint.t_out)
        np.testing.assert_allclose(received, expected.forecast, atol=1e-3)     # NaN where no radar, on both
        assert 0.1 < np.isnan(received[0, 0]).mean() < 0.4                     # coverage travels as NaN
        importance = importances[stamp]
        np.testing.assert_allclose(np.frombuffer(bytes(importance.data), "<f4").reshape(importance.height, -1),
                                   expected.importance, atol=1e-4)

    assert spin_until(executor, lambda: any("out_of_order_total" in _values(d) for d in diagnostics[-1:]), 5.0)
    values = _values(diagnostics[-1])
    assert int(values["malformed_total"]) >= 1 and int(values["out_of_order_total"]) == 1
    assert int(values["rejected_total"]) >= 1 and float(values["data_sparsity"]) == SD
    log = node.log()
    assert "unsupported image encoding 'rgb8'" in log and "older than the newest frame" in log
    assert node.stop(signal.SIGTERM) == 0
    assert "Traceback" not in node.log()


def _values(array_msg: DiagnosticArray) -> dict[str, str]:
    status = [s for s in array_msg.status if "nowcast_node" in s.name]
    return {kv.key: kv.value for kv in status[0].values} if status else {}


def test_budgets_change_live_and_bad_values_are_rejected_with_a_reason(ros, start_node):
    context, peer, executor = ros
    node = start_node(OVERRIDES, *REMAP)
    assert node.wait_for_log("active", 90.0), node.log()
    integer = set_parameter(peer, executor, "latency_budget_ms", 40)      # `ros2 param set … 40`
    assert integer.successful, integer.reason
    assert node.wait_for_log("budgets: latency 40.0 ms", 10.0), node.log()
    text = set_parameter(peer, executor, "latency_budget_ms", "fast")
    assert not text.successful and "latency_budget_ms must be a number" in text.reason
    accepted = set_parameter(peer, executor, "latency_budget_ms", 50.0)
    assert accepted.successful, accepted.reason
    assert node.wait_for_log("budgets: latency 50.0 ms", 10.0), node.log()

    out_of_range = set_parameter(peer, executor, "latency_budget_ms", -5.0)
    assert not out_of_range.successful and "latency_budget_ms" in out_of_range.reason
    no_point = set_parameter(peer, executor, "sd_max", 0.2)          # below sd_min = 0.7
    assert not no_point.successful and "sd_min" in no_point.reason
    read_only = set_parameter(peer, executor, "input_scale", 2.0)
    assert not read_only.successful and "read-only" in read_only.reason.lower()

    diagnostics = []
    peer.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    assert spin_until(executor, lambda: bool(diagnostics) and _values(diagnostics[-1]), 10.0)
    assert float(_values(diagnostics[-1])["latency_budget_ms"]) == 50.0
    assert node.stop(signal.SIGINT) == 0


def test_a_missing_model_is_an_error_on_diagnostics_and_lifecycle_shutdown_ends_the_process(ros, start_node,
                                                                                             tmp_path):
    context, peer, executor = ros
    diagnostics = []
    peer.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    node = start_node({"model_path": str(tmp_path / "missing.pt"), "diagnostics_period_s": 0.3})
    assert node.wait_for_log("model file not found", 60.0), node.log()
    assert call(peer, executor, GetState, "/nowcast_node/get_state", GetState.Request()).current_state.label \
        == "unconfigured"
    assert spin_until(executor, lambda: any(_status(d) for d in diagnostics), 10.0), node.log()
    status = [status for array_msg in diagnostics for status in _status(array_msg)][-1]
    assert status.level == DiagnosticStatus.ERROR and "configure failed: model file not found" in status.message
    assert node.process.poll() is None                        # up, unconfigured, saying why

    shutdown = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_UNCONFIGURED_SHUTDOWN))
    assert call(peer, executor, ChangeState, "/nowcast_node/change_state", shutdown).success
    assert node.process.wait(20.0) == 0, node.log()           # finalized: nothing left to run
    assert "Traceback" not in node.log()


def call(peer, executor, kind, service: str, request):
    client = peer.create_client(kind, service)
    assert client.wait_for_service(timeout_sec=10.0)
    future = client.call_async(request)
    assert spin_until(executor, future.done, 10.0)
    peer.destroy_client(client)
    return future.result()


def _status(array_msg: DiagnosticArray) -> list:
    return [status for status in array_msg.status if status.name == "nowcast_node: dyna_stream"]


def test_an_edge_publisher_feeds_the_node_over_zeromq(ros, start_node, radar):
    context, peer, executor = ros
    with socket.socket() as probe:                       # a free loopback port for the edge publisher
        probe.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    node = start_node({**OVERRIDES, "zmq_endpoint": endpoint, "zmq_bind": False})
    forecasts = {}
    peer.create_subscription(Image, "/forecast", lambda m: forecasts.setdefault(stamp_ns(m), m), RELIABLE)
    assert node.wait_for_log("active", 90.0), node.log()
    series = load_path(BUNDLED_SAMPLE)
    edge = threading.Thread(target=replay, args=(series, endpoint), daemon=True,
                            kwargs={"rate_hz": 4.0, "frame_id": "edge", "warmup_s": 1.5})
    edge.start()
    assert spin_until(executor, lambda: len(forecasts) >= 3, 60.0), node.log()
    edge.join(30.0)
    for stamp, msg in forecasts.items():
        assert msg.header.frame_id == "edge"
        received = unstack_forecast(bytes(msg.data), msg.height, msg.width, leads=radar.checkpoint.t_out)
        np.testing.assert_allclose(received, radar.expected(stamp).forecast, atol=1e-3)
    assert node.stop(signal.SIGINT) == 0
