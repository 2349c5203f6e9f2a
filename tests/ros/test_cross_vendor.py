"""A Cyclone DDS subscriber (independent DDS implementation, no rclpy) receives the forecasts the
Fast DDS based node publishes on rt/forecast, and they equal the offline predictor's."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from radar import SD, SW, RadarSample, image
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from conftest import spin_until

CYCLONE_ON_LOOPBACK = ('<CycloneDDS><Domain Id="any"><General><Interfaces><NetworkInterface name="lo"/>'
                       '</Interfaces></General><Discovery><ParticipantIndex>auto</ParticipantIndex><Peers>'
                       '<Peer address="127.0.0.1"/></Peers></Discovery></Domain></CycloneDDS>')


def test_a_cyclone_dds_subscriber_receives_the_forecasts(ros, start_node, domain_id, tmp_path, monkeypatch):
    context, peer, executor = ros
    radar = RadarSample.load()
    node = start_node({"input_reliability": "reliable", "sd_min": SD, "sd_max": SD, "sw_min": SW, "sw_max": SW})
    monkeypatch.setenv("CYCLONEDDS_URI", CYCLONE_ON_LOOPBACK)
    out = tmp_path / "cyclone.npz"
    cyclone = subprocess.Popen([sys.executable, str(Path(__file__).with_name("cyclone_subscriber.py")),
                                str(domain_id), "2", "90", str(out)])
    publisher = peer.create_publisher(Image, "/frames", QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE))
    assert spin_until(executor, lambda: publisher.get_subscription_count() > 0 or node.exited, 90.0), node.log()
    assert node.wait_for_log("active", 60.0), node.log()
    spin_until(executor, lambda: False, 2.0)                      # let Cyclone's reader match the node's writer
    for values, stamp in zip(radar.frames, radar.stamps):
        publisher.publish(image(values, int(stamp)))
        spin_until(executor, lambda: False, 0.3)
    assert cyclone.wait(100) == 0, node.log()
    received = np.load(out)
    assert set(received["encodings"]) == {"32FC1"}
    for stamp, height, width, data in zip(received["stamps"], received["heights"], received["widths"],
                                          received["data"]):
        forecast = data.view("<f4").reshape(height, width)
        np.testing.assert_allclose(forecast.reshape(radar.expected(int(stamp)).forecast.shape),
                                   radar.expected(int(stamp)).forecast, atol=1e-3)
    assert node.stop(signal.SIGINT) == 0
