"""Health summaries (ZeroMQ node logs, ROS 2 /diagnostics)."""
from dyna_stream.stream.health import Level, summarise

POINT = {"data_sparsity": 0.7, "model_sparsity": 0.7, "inference_ms": 12.5, "latency_budget_ms": 40.0}


def test_rates_are_per_second_over_the_interval_and_totals_are_kept():
    before = {"received": 10, "published": 4, "malformed": 1}
    now = {"received": 30, "published": 14, "malformed": 3, "latency_p50_ms": 20.0, "latency_p99_ms": 30.0}
    health = summarise(now, before, 2.0, POINT, 40.0)
    assert health.level == Level.OK
    assert health.values["frames_per_s"] == 10.0 and health.values["forecasts_per_s"] == 5.0
    assert health.values["malformed_total"] == 3 and health.values["data_sparsity"] == 0.7
    assert health.message == "5.00 forecasts/s, 2 dropped"
    assert health.strings()["inference_ms"] == "12.500"


def test_levels_say_what_needs_attention():
    assert summarise({}, {}, 1.0, {}).level == Level.WARN                              # no frames
    queued = {"received": 5, "latency_p99_ms": 55.0, "inference_p95_ms": 30.0}   # waits, but inference is in budget
    assert summarise(queued, {}, 1.0, POINT, 40.0).level == Level.OK
    slow = {"received": 5, "latency_p99_ms": 55.0, "inference_p95_ms": 45.0}
    assert summarise(slow, {}, 1.0, POINT, 40.0).message == "inference p95 45.0 ms over the 40.0 ms budget"
    failed = {"received": 5, "inference_errors": 1}
    assert summarise(failed, {}, 1.0, POINT).level == Level.ERROR
