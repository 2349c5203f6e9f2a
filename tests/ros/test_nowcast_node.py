"""The installed ``nowcast_node`` against real rclpy peers: real radar frames in, forecasts that
match the offline predictor out, diagnostics, live parameters, bad input, clean shutdown."""
from __future__ import annotations

import array
import signal

import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.srv import GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dyna_stream.assets import BUNDLED_MODEL, BUNDLED_SAMPLE
from dyna_stream.data.registry import load_path
from dyna_stream.model.checkpoint import load_checkpoint
from dyna_stream.predictor import Predictor
from dyna_stream.stream.ros_messages import unstack_forecast
from dyna_stream.stream.sources import frame_stamps

from conftest import spin_until

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
SD = SW = 0.7
OVERRIDES = {"input_reliability": "reliable", "diagnostics_period_s": 0.3, "sd_min": SD, "sd_max": SD,
             "sw_min": SW, "sw_max": SW}
REMAP = ("-r", "frames:=/radar/image")


def image(values: np.ndarray, stamp_ns: int, frame_id: str = "radar", encoding: str = "32FC1") -> Image:
    data = np.ascontiguousarray(values, "<f4").tobytes() if encoding == "32FC1" else values.tobytes()
    height, width = values.shape
    return Image(header=Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame_id),
                 height=height, width=width, encoding=encoding, is_bigendian=0, step=len(data) // height,
                 data=array.array("B", data))


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def set_parameter(node, executor, name: str, value: float):
    client = node.create_client(SetParameters, "/nowcast_node/set_parameters")
    assert client.wait_for_service(timeout_sec=10.0)
    request = SetParameters.Request(parameters=[Parameter(name=name, value=ParameterValue(
        type=ParameterType.PARAMETER_DOUBLE, double_value=float(value)))])
    future = client.call_async(request)
    assert spin_until(executor, future.done, 10.0)
    node.destroy_client(client)
    return future.result().results[0]


@pytest.fixture(scope="module")
def radar():
    """The bundled real radar sample (12 frames, dBZ) with its real acquisition stamps."""
    series = load_path(BUNDLED_SAMPLE)
    return series.values[:, 0], frame_stamps(series, 0)


def test_forecasts_from_real_radar_match_the_offline_predictor(ros, start_node, radar):
    context, peer, executor = ros
    frames, stamps = radar
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

    # same thread count as the node (parameter threads: 2): the data mask is a top-k over importance
    # scores, and a 1e-7 difference in a reduction's order can swap two tiles tied at the cut
    torch.set_num_threads(2)
    checkpoint = load_checkpoint(BUNDLED_MODEL)
    offline = Predictor(checkpoint, data_sparsity=SD, model_sparsity=SW)
    position = {int(stamp): index for index, stamp in enumerate(stamps)}
    for stamp, msg in forecasts.items():
        last = position[stamp]                                  # the newest input frame of this window
        expected = offline(frames[last - checkpoint.t_in + 1:last + 1, None])
        assert msg.header.frame_id == "radar" and msg.encoding == "32FC1"
        received = unstack_forecast(bytes(msg.data), msg.height, msg.width, leads=checkpoint.t_out)
        np.testing.assert_allclose(received, expected.forecast, atol=1e-3)
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
    assert "inference stopped" in node.log() or "Traceback" not in node.log()


def _values(array_msg: DiagnosticArray) -> dict[str, str]:
    status = [s for s in array_msg.status if "nowcast_node" in s.name]
    return {kv.key: kv.value for kv in status[0].values} if status else {}


def test_budgets_change_live_and_bad_values_are_rejected_with_a_reason(ros, start_node):
    context, peer, executor = ros
    node = start_node(OVERRIDES, *REMAP)
    assert node.wait_for_log("active", 90.0), node.log()
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


def test_a_missing_model_is_reported_and_the_node_stays_up_unconfigured(ros, start_node, tmp_path):
    context, peer, executor = ros
    node = start_node({"model_path": str(tmp_path / "missing.pt")})
    assert node.wait_for_log("model file not found", 60.0), node.log()
    client = peer.create_client(GetState, "/nowcast_node/get_state")
    assert client.wait_for_service(timeout_sec=10.0)
    future = client.call_async(GetState.Request())
    assert spin_until(executor, future.done, 10.0)
    assert future.result().current_state.label == "unconfigured"
    assert node.process.poll() is None
    assert node.stop(signal.SIGINT) == 0
