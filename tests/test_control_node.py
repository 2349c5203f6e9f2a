"""The node under the budget controller: profile, per-frame choice, run-time budget changes."""
import json

import msgpack
import zmq

from dyna_stream.assets import BUNDLED_SAMPLE
from dyna_stream.config import NodeConfig, load_config
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
