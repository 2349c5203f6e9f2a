"""``ros2 launch dyna_stream nowcast.launch.py [params_file:=…] [input_topic:=…] [model_path:=…]
[latency_budget_ms:=…] [power_cap_w:=…] [namespace:=…]``: starts ``nowcast_node``, which
subscribes to the input topic and publishes /forecast, /importance and /diagnostics.

model_path, latency_budget_ms and power_cap_w override the params file only when given."""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "dyna_stream"
ARGUMENTS = {  # launch argument → (default, description)
    "params_file": (os.path.join(get_package_share_directory(PACKAGE), "configs", "nowcast.yaml"),
                    "nowcast_node parameters (ROS 2 YAML)"),
    "input_topic": ("frames", "sensor_msgs/Image topic the node subscribes to (remaps 'frames')"),
    "namespace": ("", "node namespace"),
    "model_path": ("", "checkpoint; empty: the params file's"),
    "latency_budget_ms": ("", "p95 inference latency budget, ms (0: none); empty: the params file's"),
    "power_cap_w": ("", "power cap, W (0: none); empty: the params file's"),
}
OVERRIDES = {"model_path": str, "latency_budget_ms": float, "power_cap_w": float}  # parameter → its type


def nowcast_node(context) -> list[Node]:
    """The node, with the parameter overrides that were given on the command line."""
    given = {name: LaunchConfiguration(name).perform(context) for name in OVERRIDES}
    overrides = {name: OVERRIDES[name](value) for name, value in given.items() if value != ""}
    return [Node(package=PACKAGE, executable="nowcast_node", name="nowcast_node",
                 namespace=LaunchConfiguration("namespace"), output="screen",
                 parameters=[LaunchConfiguration("params_file"), overrides],
                 remappings=[("frames", LaunchConfiguration("input_topic"))])]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*(DeclareLaunchArgument(name, default_value=default, description=description)
                                for name, (default, description) in ARGUMENTS.items()),
                              OpaqueFunction(function=nowcast_node)])
