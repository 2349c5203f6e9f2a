"""The streaming node end to end on loopback (ipc://), with real radar frames, and under bad input."""
import logging
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import cv2
import msgpack
import numpy as np
import pytest
import zmq
from PIL import Image

from dyna_stream.assets import BUNDLED_MODEL, BUNDLED_SAMPLE
from dyna_stream.config import NodeConfig, load_config
from dyna_stream.data.registry import load_path
from dyna_stream.errors import ConfigError, DataError
from dyna_stream.model.checkpoint import load_checkpoint
from dyna_stream.predictor import Predictor
from dyna_stream.stream.client import ForecastClient
from dyna_stream.stream.node import Node
from dyna_stream.stream.pipeline import Pipeline
from dyna_stream.stream.protocol import Message, encode
from dyna_stream.stream.publisher import replay
from dyna_stream.stream.ring_buffer import RingBuffer
from dyna_stream.stream.sources import capture_frames, frame_stamps
from dyna_stream.stream.zmq_transport import ZmqFrameSource

from conftest import REPO


def endpoints(tmp_path):
    return f"ipc://{tmp_path}/frames", f"ipc://{tmp_path}/forecasts"


def start_node(tmp_path, *overrides):
    frames_in, forecasts_out = endpoints(tmp_path)
    config = load_config(None, [f"input.endpoint={frames_in}", "input.bind=true", f"output.endpoint={forecasts_out}",
                                "output.status_every=1", *overrides], schema=NodeConfig)
    return Node(config, context=zmq.Context()).start(), frames_in, forecasts_out


def test_real_radar_through_publisher_node_and_client_matches_offline(tmp_path):
    node, frames_in, forecasts_out = start_node(tmp_path)
    series = load_path(BUNDLED_SAMPLE)
    client = ForecastClient(forecasts_out, context=zmq.Context())
    try:
        publisher = threading.Thread(target=replay, args=(series, frames_in),
                                     kwargs={"rate_hz": 4.0, "bind": False, "warmup_s": 0.5})
        publisher.start()
        updates = client.wait_for(7, timeout_s=20)
        publisher.join()
    finally:
        client.close()
        node.stop()
    assert len(updates) >= 3, node.pipeline.stats()
    stats = node.pipeline.stats()
    assert stats["received"] == 12 and stats["published"] + stats.get("windows_skipped", 0) == 7
    assert client.status.get("published", 0) >= 1 and "latency_p50_ms" in client.status
    offline = Predictor(load_checkpoint(BUNDLED_MODEL))
    stamps = list(frame_stamps(series, 0))
    for update in updates:
        newest = stamps.index(update.stamp_ns)
        expected = offline(series.values[newest - 5:newest + 1], series.valid[newest - 5:newest + 1])
        assert update.forecast.shape == (6, 1, 306, 190) and update.units == "dBZ"
        np.testing.assert_allclose(update.forecast, expected.forecast, rtol=0, atol=1e-6)   # NaN: no coverage
        assert np.isnan(update.forecast[0, 0]).mean() == pytest.approx(1 - expected.coverage.mean())
        np.testing.assert_allclose(update.importance, expected.importance, rtol=0, atol=1e-6)
        assert update.info["data_sparsity"] == offline.data_sparsity and update.info["latency_ms"] > 0


def test_malformed_messages_are_counted_and_the_node_keeps_serving(tmp_path):
    node, frames_in, forecasts_out = start_node(tmp_path, "buffer.grid=[32, 48]", "input.max_payload_mb=0.01")
    context = zmq.Context()
    sender = context.socket(zmq.PUB)
    sender.connect(frames_in)
    client = ForecastClient(forecasts_out, context=context)
    try:
        time.sleep(0.5)
        good_header = {"v": 1, "kind": "frame", "seq": 0, "stamp_ns": 0, "shape": [32, 48], "dtype": "float32"}
        frame = np.full((32, 48), -32.0, np.float32)
        bad = [[b"frame", b"\x00junk", b""],
               [b"frame", msgpack.packb({**good_header, "dtype": "object"}), b""],
               [b"frame", msgpack.packb({**good_header, "shape": [128, 128]}), np.zeros((128, 128), np.float32)
                .tobytes()],                                                         # over the 10 kB limit
               [b"frame", msgpack.packb(good_header), b"short"],
               [b"frame", msgpack.packb({**good_header, "shape": [16, 16]}),
                np.zeros((16, 16), np.float32).tobytes()],
               [b"frame", msgpack.packb({**good_header, "stamp_ns": 5}),
                np.full((32, 48), np.inf, np.float32).tobytes()],                   # NaN is "no coverage", inf bad
               [b"frame", msgpack.packb({**good_header, "stamp_ns": 6}),
                np.full((32, 48), 1e6, np.float32).tobytes()],                      # no radar reads a million dBZ
               [b"framex", msgpack.packb(good_header), frame.tobytes()],           # ZeroMQ matches prefixes
               [b"frame\x00", msgpack.packb(good_header), frame.tobytes()]]
        for message in bad:
            sender.send_multipart(message)
        for t in range(7):
            sender.send_multipart([b"frame", msgpack.packb({**good_header, "seq": t, "stamp_ns": (t + 1) * 10**9}),
                                   frame.tobytes()])
            time.sleep(0.05)
        updates = client.wait_for(1, timeout_s=10)
    finally:
        client.close()
        sender.close(0)
        node.stop()
    stats = node.pipeline.stats()
    assert stats["malformed"] == 6 and stats["malformed:protocol"] == 4 and stats["malformed:topic"] == 2
    assert stats["rejected"] == 3
    assert len(updates) == 1 and updates[0].forecast.shape == (6, 1, 32, 48)


def test_latest_window_semantics_skip_stale_windows_and_survive_failures():
    calls = []

    def slow_forecaster(frames):
        calls.append(frames[-1, 0, 0, 0])
        time.sleep(0.2)
        if len(calls) == 1:
            raise RuntimeError("transient failure")
        return SimpleNamespace(forecast=frames[-1:], importance=frames[-1, 0], macs=0)

    pipeline = Pipeline(slow_forecaster, RingBuffer(2, 1, (2, 2)), []).start()
    for burst in (range(0, 4), range(4, 10)):
        for t in burst:
            pipeline.submit(np.full((2, 2), t, np.float32), t)
        time.sleep(0.5)
    pipeline.stop()
    stats = pipeline.stats()
    assert stats["inference_errors"] == 1 and stats["published"] >= 1
    assert stats["windows_skipped"] >= 4 and calls[-1] == 9       # the newest window always wins


def test_edge_publisher_does_not_import_torch():
    code = ("import sys; from dyna_stream.cli import build_parser; import dyna_stream.stream.publisher; "
            "build_parser(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_serve_and_publish_commands_run_and_shut_down_cleanly(tmp_path):
    frames_in, forecasts_out = endpoints(tmp_path)
    serve = subprocess.Popen([sys.executable, "-m", "dyna_stream.cli", "serve", "--config",
                              str(REPO / "configs" / "node.yaml"),
                              "--set", f"input.endpoint={frames_in}", "--set", "input.bind=true",
                              "--set", f"output.endpoint={forecasts_out}", "--set", "log_every_s=0.5"],
                             stderr=subprocess.PIPE, text=True)
    startup = []
    try:
        for line in serve.stderr:                    # wait until the node has bound its sockets
            startup.append(line)
            if "node up" in line:
                break
        publish = subprocess.run([sys.executable, "-m", "dyna_stream.cli", "-q", "publish", "--endpoint", frames_in,
                                  "--connect", "--rate", "20"], capture_output=True, text=True, timeout=60)
        assert publish.returncode == 0 and "sent 12 frames" in publish.stdout
        time.sleep(2)
    finally:
        serve.terminate()
        _, log = serve.communicate(timeout=30)
    log = "".join(startup) + log
    assert serve.returncode == 0, log
    assert "node stopped" in log and "'received': 12" in log


def write_video(path, frames=12, size=(48, 32), level=255):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    assert writer.isOpened()
    for t in range(frames):
        image = np.zeros((size[1], size[0], 3), np.uint8)
        cv2.circle(image, (5 + 3 * t, 16), 6, (level, level, level), -1)
        writer.write(image)
    writer.release()


def test_opencv_capture_reads_a_real_video_file(tmp_path):
    write_video(tmp_path / "clip.avi")
    frames = list(capture_frames(str(tmp_path / "clip.avi"), frame_id="cam0"))
    assert len(frames) == 12 and frames[0].array.shape == (1, 32, 48) and frames[0].frame_id == "cam0"
    assert frames[0].array.max() > 200 and frames[-1].stamp_ns > frames[0].stamp_ns
    with pytest.raises(DataError, match="cannot open"):
        list(capture_frames(str(tmp_path / "absent.avi")))


@pytest.mark.parametrize("source", ["file", "opencv"])
def test_node_reads_frames_directly_from_files_and_captures(tmp_path, source):
    if source == "opencv":
        uri = tmp_path / "clip.avi"
        write_video(uri, level=50)              # a radar-like clip: 50 "dBZ" storm cells (255 is refused)
    else:
        uri = BUNDLED_SAMPLE
    frames_in, forecasts_out = endpoints(tmp_path)
    config = load_config(None, [f"input.source={source}", f"input.uri={uri}", "input.rate_hz=5",
                                f"output.endpoint={forecasts_out}"], schema=NodeConfig)
    client = ForecastClient(forecasts_out, context=zmq.Context())
    time.sleep(0.3)
    node = Node(config, context=zmq.Context()).start()
    try:
        updates = client.wait_for(2, timeout_s=20)
    finally:
        client.close()
        node.stop()
    assert len(updates) == 2 and updates[0].forecast.shape[1:] == ((1, 306, 190) if source == "file" else (1, 32, 48))


def test_file_and_capture_sources_need_a_uri():
    with pytest.raises(ConfigError, match="needs input.uri"):
        Node(load_config(None, ["input.source=file"], schema=NodeConfig))


def test_mcap_recording_and_snapshots_hold_what_was_published(tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    frames_in, forecasts_out = endpoints(tmp_path)
    config = load_config(None, ["input.source=file", f"input.uri={BUNDLED_SAMPLE}", "input.rate_hz=5",
                                f"output.endpoint={forecasts_out}", f"record.mcap={tmp_path / 'run.mcap'}",
                                f"record.snapshots={tmp_path / 'snaps'}", "record.snapshot_every=1"],
                         schema=NodeConfig)
    client = ForecastClient(forecasts_out, context=zmq.Context())
    time.sleep(0.3)
    node = Node(config, context=zmq.Context()).start()
    try:
        updates = client.wait_for(2, timeout_s=20)
        assert not (tmp_path / "run.mcap").exists()          # still recording into run.mcap.part
    finally:
        client.close()
        node.stop()
    by_topic = {}
    with open(tmp_path / "run.mcap", "rb") as recording:
        for schema, channel, _, decoded in make_reader(recording, decoder_factories=[DecoderFactory()]
                                                       ).iter_decoded_messages():
            assert schema.name == "sensor_msgs/msg/Image" and channel.message_encoding == "cdr"
            by_topic.setdefault(channel.topic, []).append(decoded)
    assert set(by_topic) == {"/forecast", "/importance"} and len(by_topic["/forecast"]) >= 2
    first = {u.seq: u for u in updates}[1]
    image = by_topic["/forecast"][0]
    assert (image.encoding, image.height, image.width, image.step) == ("32FC1", 6 * 306, 190, 4 * 190)
    assert image.header.stamp.sec * 10**9 + image.header.stamp.nanosec == first.stamp_ns
    np.testing.assert_array_equal(np.frombuffer(bytes(image.data), "<f4").reshape(6, 1, 306, 190), first.forecast)
    snaps = sorted(p.name for p in (tmp_path / "snaps").iterdir())
    assert "forecast_000001.gif" in snaps and "importance_000001.png" in snaps
    with Image.open(tmp_path / "snaps" / "forecast_000001.gif") as gif:
        assert gif.n_frames == 6


def test_curve_encrypts_and_admits_only_authorized_keys(tmp_path):
    from dyna_stream.cli import main as cli_main
    from dyna_stream.stream.security import CurveKeys, stop_authenticator

    for name in ("publisher", "node", "client", "intruder"):
        assert cli_main(["-q", "keygen", "--out", str(tmp_path / "keys"), "--name", name]) == 0
    assert oct((tmp_path / "keys" / "node.key_secret").stat().st_mode & 0o777) == "0o600"
    for holder, admitted in (("publisher", "node"), ("node", "client")):
        (tmp_path / f"{holder}_admits").mkdir()
        (tmp_path / f"{holder}_admits" / f"{admitted}.key").write_bytes((tmp_path / "keys" / f"{admitted}.key")
                                                                         .read_bytes())
    key = lambda name, kind="key": str(tmp_path / "keys" / f"{name}.{kind}")  # noqa: E731
    frames_in, forecasts_out = endpoints(tmp_path)
    config = load_config(None, [
        f"input.endpoint={frames_in}", f"input.curve={{secret_key: {key('node', 'key_secret')}, "
        f"server_key: {key('publisher')}}}", f"output.endpoint={forecasts_out}",
        f"output.curve={{secret_key: {key('node', 'key_secret')}, authorized_keys: {tmp_path / 'node_admits'}}}"],
        schema=NodeConfig)
    context = zmq.Context()
    clients = {"client": ForecastClient(forecasts_out, context=context,
                                        keys=CurveKeys(key("client", "key_secret"), key("node"))),
               "intruder": ForecastClient(forecasts_out, context=context,
                                          keys=CurveKeys(key("intruder", "key_secret"), key("node"))),
               "plain": ForecastClient(forecasts_out, context=context)}
    series = load_path(BUNDLED_SAMPLE)
    publisher_keys = CurveKeys(key("publisher", "key_secret"), authorized_keys=str(tmp_path / "publisher_admits"))
    publisher = threading.Thread(target=replay, args=(series, frames_in),
                                 kwargs={"rate_hz": 4.0, "warmup_s": 1.5, "keys": publisher_keys, "context": context})
    publisher.start()
    node = Node(config, context=zmq.Context()).start()
    try:
        received = {name: client.wait_for(1, timeout_s=10 if name == "client" else 2)
                    for name, client in clients.items()}
        publisher.join()
    finally:
        for client in clients.values():
            client.close()
        node.stop()
        stop_authenticator(context)
    assert len(received["client"]) == 1 and received["client"][0].forecast.shape == (6, 1, 306, 190)
    assert received["intruder"] == [] and received["plain"] == []


def test_node_resumes_when_the_publisher_restarts(tmp_path):
    node, frames_in, forecasts_out = start_node(tmp_path, "input.bind=false", "output.hwm=100")
    series = load_path(BUNDLED_SAMPLE)
    client = ForecastClient(forecasts_out, hwm=100, context=zmq.Context())
    try:
        for loop in range(2):                 # two publisher processes' worth, one after the other
            replay(series.slice(loop * 6, loop * 6 + 6), frames_in, rate_hz=10.0, warmup_s=1.0,
                   context=zmq.Context())
        updates = client.wait_for(7, timeout_s=5)
    finally:
        client.close()
        node.stop()
    stats = node.pipeline.stats()
    assert stats["received"] == 12 and stats["published"] >= 2
    assert updates and updates[-1].stamp_ns == frame_stamps(series, 0)[-1]


def test_a_slow_subscriber_gets_a_bounded_queue_not_the_node_memory(tmp_path):
    frames_in, forecasts_out = endpoints(tmp_path)
    frames = np.full((30, 32, 48), -32.0, np.float32)
    np.save(tmp_path / "frames.npy", frames)
    config = load_config(None, ["input.source=file", f"input.uri={tmp_path / 'frames.npy'}", "input.rate_hz=25",
                                "input.loops=2", f"output.endpoint={forecasts_out}", "output.hwm=2"],
                         schema=NodeConfig)
    context = zmq.Context()
    slow = context.socket(zmq.SUB)
    slow.setsockopt(zmq.RCVHWM, 2)
    slow.setsockopt(zmq.SUBSCRIBE, b"forecast")
    slow.connect(forecasts_out)
    node = Node(config, context=zmq.Context()).start()
    deadline = time.monotonic() + 30
    while node.pipeline.stats().get("received", 0) < 60 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    node.stop()
    drained = 0
    while slow.poll(200):
        slow.recv_multipart()
        drained += 1
    slow.close(0)
    published = node.pipeline.stats()["published"]
    assert published >= 20 and drained <= 8            # the rest were dropped at the high-water marks


def test_a_gap_after_a_window_is_marked_never_yields_a_partial_window():
    seen = []
    release = threading.Event()

    def forecaster(frames):
        seen.append(frames.shape[0])
        release.wait(2)
        return SimpleNamespace(forecast=frames[-1:], importance=frames[-1, 0], macs=0)

    from dyna_stream.stream.ring_buffer import BufferPolicy
    pipeline = Pipeline(forecaster, RingBuffer(3, 1, (2, 2), BufferPolicy(period_ns=10, max_gap_periods=2)),
                        []).start()
    for t in (0, 10, 20):                      # window 1 → worker busy in the forecaster
        pipeline.submit(np.zeros((2, 2)), t)
    time.sleep(0.2)
    for t in (30, 1000):                       # window 2 marked, then a gap empties the buffer
        pipeline.submit(np.zeros((2, 2)), t)
    release.set()
    time.sleep(0.3)
    pipeline.stop()
    assert seen == [3] and pipeline.stats().get("inference_errors", 0) == 0


def test_node_refuses_frames_at_a_pixel_size_it_cannot_map(tmp_path):
    frames_in, forecasts_out = endpoints(tmp_path)
    config = load_config(None, [f"input.endpoint={frames_in}", f"output.endpoint={forecasts_out}",
                                "input.pixel_km=3"], schema=NodeConfig)
    with pytest.raises(DataError, match="not a whole fraction of this model's 4 km pixels"):
        Node(config, context=zmq.Context())
    fine = load_config(None, [f"input.endpoint={frames_in}", f"output.endpoint={forecasts_out}",
                              "input.pixel_km=1"], schema=NodeConfig)
    node = Node(fine, context=zmq.Context())
    try:
        assert node.predictor.grid.factor == 4
    finally:
        node.stop()


def test_node_feeds_a_faster_sensor_at_the_models_step_and_refuses_a_step_it_cannot(tmp_path):
    frames_in, forecasts_out = endpoints(tmp_path)
    base = [f"input.endpoint={frames_in}", f"output.endpoint={forecasts_out}"]
    for step, match in (("2", "frames every 2 min"), ("10", "frames every 10 min")):
        config = load_config(None, [*base, f"input.step_minutes={step}"], schema=NodeConfig)
        with pytest.raises(DataError, match=match):
            Node(config, context=zmq.Context())
    node = Node(load_config(None, [*base, "input.step_minutes=2.5"], schema=NodeConfig), context=zmq.Context())
    try:
        assert node.pipeline.buffer.stride == 2 and node.pipeline.buffer.length == 11   # (6 − 1) · 2 + 1
    finally:
        node.stop()


def _serve(tmp_path, *extra, **popen):
    frames_in, forecasts_out = endpoints(tmp_path)
    return subprocess.Popen([sys.executable, "-m", "dyna_stream.cli", "serve", "--set", f"input.endpoint={frames_in}",
                             "--set", "input.bind=true", "--set", f"output.endpoint={forecasts_out}", *extra],
                            stderr=subprocess.PIPE, text=True, **popen)


def test_serve_stops_on_sigint_even_when_started_with_it_ignored_and_logs_once(tmp_path):
    import signal

    # a non-interactive shell starts background jobs with SIGINT ignored; Ctrl-C must still stop the node
    serve = _serve(tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    for line in serve.stderr:
        if "node up" in line:
            break
    serve.send_signal(signal.SIGINT)
    _, log = serve.communicate(timeout=30)
    assert serve.returncode == 0 and log.count("node stopped") == 1, log
    timed = _serve(tmp_path, "--duration", "1")
    _, log = timed.communicate(timeout=60)
    assert timed.returncode == 0 and log.count("node stopped") == 1, log


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path):
    holder = zmq.Context().socket(zmq.PUB)
    port = holder.bind_to_random_port("tcp://127.0.0.1")
    try:
        run = subprocess.run([sys.executable, "-m", "dyna_stream.cli", "-q", "serve", "--set",
                              f"output.endpoint=tcp://127.0.0.1:{port}", "--set", f"input.endpoint=ipc://{tmp_path}/in",
                              "--set", "input.bind=true"], capture_output=True, text=True, timeout=60)
    finally:
        holder.close(0)
    assert run.returncode == 2, run.stderr
    assert "cannot bind tcp://127.0.0.1" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_integer_frames_and_foreign_units_are_used_as_sent_and_said_once(tmp_path, caplog):
    pipeline = Pipeline(lambda frames: None, RingBuffer(6, 1, (4, 4)), [], units="dBZ")
    source = ZmqFrameSource(pipeline, f"ipc://{tmp_path}/frames", bind=True).start()
    sender = zmq.Context.instance().socket(zmq.PUB)
    sender.connect(f"ipc://{tmp_path}/frames")
    frames = [(np.full((4, 4), 40, np.uint8), "dBZ"), (np.full((4, 4), 41, np.uint8), ""),
              (np.full((4, 4), 1.5, np.float32), "mm/h"), (np.full((4, 4), 2.5, np.float32), "mm/h"),
              (np.full((4, 4), 30, np.float32), "dBZ")]
    try:
        with caplog.at_level(logging.WARNING, logger="dyna_stream.stream.zmq_transport"):
            time.sleep(0.5)                                          # the slow joiner: let the SUB connect
            for seq, (array, units) in enumerate(frames):
                sender.send_multipart(encode("frame", Message("frame", seq, 10**9 * (seq + 1), "", array, units)))
            deadline = time.monotonic() + 10
            while pipeline.stats().get("received", 0) < len(frames) and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        sender.close(0)
        source.close()
    assert pipeline.stats()["received"] == len(frames)            # every frame used, as sent
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2, warnings                              # once per dtype, once per foreign unit
    assert "uint8 frames are taken as dBZ as they are" in warnings[0] and "'mm/h'" in warnings[1]


def test_a_node_fed_only_garbage_still_sends_status_and_seq_gaps_count_as_lost(tmp_path):
    node, frames_in, forecasts_out = start_node(tmp_path, "buffer.grid=[32, 48]", "log_every_s=0.2")
    runner = threading.Thread(target=node.run, daemon=True)
    runner.start()
    context = zmq.Context()
    sender = context.socket(zmq.PUB)
    sender.connect(frames_in)
    client = ForecastClient(forecasts_out, context=context)
    frame = np.full((32, 48), -32.0, np.float32)
    try:
        time.sleep(0.5)
        for _ in range(3):
            sender.send_multipart([b"frame", b"\x00junk", b""])
        assert client.wait_for(1, timeout_s=1.5) == []              # no forecast, and the wait still ends
        assert client.status.get("malformed") == 3 and client.status.get("published", 0) == 0
        for sender_id, seqs in (("radar-a", (0, 1, 4, 5)), ("radar-b", (7, 8, 0, 2))):   # b restarts at 0
            for seq in seqs:
                header = {"v": 1, "kind": "frame", "seq": seq, "stamp_ns": 0, "frame_id": sender_id,
                          "shape": [32, 48], "dtype": "float32"}
                sender.send_multipart([b"frame", msgpack.packb(header), frame.tobytes()])
        time.sleep(0.5)
    finally:
        client.close()
        sender.close(0)
        node.stop()
        runner.join(5)
    assert node.pipeline.stats()["lost"] == 2 + 1                    # a: 2, 3; b: 1 after its restart
