"""A plain Cyclone DDS subscriber (no ROS library at all) on ``rt/forecast``: proof that a
non-Fast-DDS peer reads the node's output. Declares sensor_msgs/Image by its DDS type name.

usage: cyclone_subscriber.py DOMAIN_ID COUNT TIMEOUT_S OUT.npz
Writes the received samples (stamp ns, encoding, height, width, data) and exits 0, or 1 on timeout.
"""

import sys
import time
from dataclasses import dataclass

import numpy as np
from cyclonedds.core import Policy, Qos
from cyclonedds.domain import DomainParticipant
from cyclonedds.idl import IdlStruct
from cyclonedds.idl.annotations import final
from cyclonedds.idl.types import int32, sequence, uint8, uint32
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration


@final
@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32
    nanosec: uint32


@final
@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time
    frame_id: str


@final
@dataclass
class Image(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    header: Header
    height: uint32
    width: uint32
    encoding: str
    is_bigendian: uint8
    step: uint32
    data: sequence[uint8]


def main(domain_id: int, count: int, timeout_s: float, out: str) -> int:
    participant = DomainParticipant(domain_id)
    topic = Topic(participant, "rt/forecast", Image)
    reader = DataReader(participant, topic, qos=Qos(Policy.Reliability.Reliable(max_blocking_time=duration(seconds=1)),
                                                    Policy.History.KeepLast(10)))
    samples, deadline = [], time.monotonic() + timeout_s
    while len(samples) < count and time.monotonic() < deadline:
        samples.extend(reader.take(N=10))
        time.sleep(0.05)
    if not samples:
        return 1
    np.savez(out, stamps=[s.header.stamp.sec * 10**9 + s.header.stamp.nanosec for s in samples],
             encodings=[s.encoding for s in samples], heights=[s.height for s in samples],
             widths=[s.width for s in samples], data=np.stack([np.frombuffer(bytes(s.data), np.uint8)
                                                                for s in samples]))
    return 0 if len(samples) >= count else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]))
