"""The node under the budget controller: profile, per-frame choice, run-time budget changes."""
import json
import logging

import msgpack
import numpy as np
import zmq

from dyna_stream.assets import BUNDLED_MODEL, BUNDLED_SAMPLE
from dyna_stream.config import NodeConfig, load_config
from dyna_stream.control.profile import load_or_measure, profile_inputs
from dyna_stream.data.registry import load_parts
from dyna_stream.model.checkpoint import load_checkpoint
from dyna_stream.predictor import Predictor
from dyna_stream.stream.client import ForecastClient
from dyna_stream.stream.node import Node


def test_controlled_node_reports_its_point_and_takes_budget_changes(tmp_path):
    out, control = f"ipc://{tmp_path}/out", f"ipc://{tmp_path}/control"
    config = load_config(None, [
        "input.source=file", f"input.uri={BUNDLED_SAMPLE}", "input.rate_hz=4", "input.loops=3",
        f"output.endpoint={out}", "output.status_every=1", "control.enabled=true", "control.latency_budget_ms=500",
        f"control.endpoint={control}", "control.profile_runs=3", f"control.cache_dir={tmp_path / 'cache'}"],
        schema=NodeConfig)
    context = zmq.Context()
    client = ForecastClient(out, context=context)
    node = Node(config, context=context).start()
    requester = context.socket(zmq.REQ)
    requester.setsockopt(zmq.LINGER, 0)
    requester.connect(control)
    try:
        first = client.wait_for(2, timeout_s=30)
        replies = []
        for request in ({"latency_budget_ms": 1e-3}, {"latency_budget_ms": -5}, {"volume": 11}, b"\x00junk"):
            requester.send(request if isinstance(request, bytes) else msgpack.packb(request))
            assert requester.poll(5000)
            replies.append(msgpack.unpackb(requester.recv()))
        later = client.wait_for(4, timeout_s=30)
    finally:
        requester.close()
        client.close()
        node.stop()
    (profile,) = (tmp_path / "cache").glob("profile-*.json")
    fastest = min(json.loads(profile.read_text())["rows"], key=lambda row: row["latency_ms"])
    assert first and first[0].info["latency_budget_ms"] == 500 and first[0].info["inference_ms"] > 0
    assert replies[0] == {"ok": True, "latency_budget_ms": 1e-3, "power_cap_w": None}
    assert [r["ok"] for r in replies[1:]] == [False, False, False] and "positive" in replies[1]["error"]
    impossible = [u for u in later if u.info["latency_budget_ms"] == 1e-3]
    assert impossible and all((u.info["data_sparsity"], u.info["model_sparsity"]) ==
                              (fastest["data_sparsity"], fastest["model_sparsity"]) for u in impossible[1:])
    assert client.status.get("latency_budget_ms") == 1e-3


def test_profile_errors_come_from_the_bundled_sample_unless_a_data_root_is_given(data_root, tmp_path, caplog):
    checkpoint = load_checkpoint(BUNDLED_MODEL)
    with caplog.at_level(logging.INFO, logger="dyna_stream.control.profile"):
        frames, bundled = profile_inputs(checkpoint)                     # no ../shared/data lookup, no warning
    assert frames.shape[0] == checkpoint.t_in and bundled
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    frames, validation = profile_inputs(checkpoint, data_root)            # every source of the split
    parts = load_parts(checkpoint.dataset, "val", data_root)
    assert len(parts) == 3 and len(validation) > len(bundled)
    np.testing.assert_array_equal(frames, parts[0].values[-checkpoint.t_in:])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dyna_stream.control.profile"):
        _, fallback = profile_inputs(checkpoint, tmp_path / "nowhere")    # a wrong root: said, not fatal
    assert len(fallback) == len(bundled) and "scoring errors on the bundled sample" in caplog.text


def test_a_cached_profile_expires_and_one_taken_under_changing_load_is_not_cached(tmp_path, caplog):
    checkpoint = load_checkpoint(BUNDLED_MODEL)
    predictor = Predictor(checkpoint)
    frames = np.random.default_rng(0).uniform(0, 40, (checkpoint.t_in, 1, 32, 32)).astype(np.float32)
    options = {"grid": ((0.0, 0.0), (0.7, 0.7)), "runs": 3, "warmup": 1, "max_drift": float("inf")}
    day = 24 * 3600.0
    first = load_or_measure(BUNDLED_MODEL, predictor, frames, [], cache_dir=tmp_path, clock=lambda: day, **options)
    (cached,) = tmp_path.glob("profile-*.json")
    assert json.loads(cached.read_text())["measured_at"] == day
    assert load_or_measure(BUNDLED_MODEL, predictor, frames, [], cache_dir=tmp_path, clock=lambda: 7 * day,
                           **options) == first                                    # six days old: reused
    load_or_measure(BUNDLED_MODEL, predictor, frames, [], cache_dir=tmp_path, clock=lambda: 9 * day, **options)
    assert json.loads(cached.read_text())["measured_at"] == 9 * day               # eight days: measured again

    unsteady = tmp_path / "unsteady"
    with caplog.at_level(logging.WARNING, logger="dyna_stream.control.profile"):
        rows = load_or_measure(BUNDLED_MODEL, predictor, frames, [], cache_dir=unsteady,
                               **{**options, "max_drift": -1.0})
    assert len(rows) == 2 and not list(unsteady.glob("profile-*.json"))       # used, never cached
    assert "load changed while profiling" in caplog.text
