"""The ``nowcast_node`` console script: a clear message instead of a traceback where ROS 2 is
not available (the ZeroMQ node, ``dyna-stream serve``, needs no ROS)."""
from __future__ import annotations

import sys

ROS_MODULES = {"rclpy", "rcl_interfaces", "sensor_msgs", "std_msgs", "diagnostic_msgs", "builtin_interfaces",
               "lifecycle_msgs"}


def main(args: list[str] | None = None) -> None:
    try:
        from .nowcast_node import main as run_node
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ROS_MODULES:
            raise
        sys.exit(f"nowcast_node needs ROS 2 ({exc.name} is not importable): source your ROS 2 setup "
                 "(e.g. /opt/ros/jazzy/setup.bash) or install rclpy; `dyna-stream serve` runs without ROS")
    run_node(args)
