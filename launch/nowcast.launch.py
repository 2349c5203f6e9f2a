"""``ros2 launch dyna_stream nowcast.launch.py [params_file:=…] [input_topic:=…] [model_path:=…]
[latency_budget_ms:=…] [power_cap_w:=…] [namespace:=…]``: starts ``nowcast_node``, which
subscribes to the input topic and publishes forecast, importance (in its namespace) and /diagnostics.

input_topic, model_path, latency_budget_ms and power_cap_w set those node parameters, over the
params file, only when given; a value the node would refuse ends the launch with one error line."""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from ros2_pkg.parameters import SPECS, check_value

PACKAGE = "dyna_stream"
ARGUMENTS = {  # launch argument → (default, description)
    "params_file": (os.path.join(get_package_share_directory(PACKAGE), "configs", "nowcast.yaml"),
                    "nowcast_node parameters (ROS 2 YAML)"),
    "input_topic": ("", "sensor_msgs/Image topic the node subscribes to; empty: the params file's"),
    "namespace": ("", "node namespace"),
    "model_path": ("", "checkpoint; empty: the params file's"),
    "latency_budget_ms": ("", "p95 inference latency budget, ms (0: none); empty: the params file's"),
    "power_cap_w": ("", "power cap, W (0: none); empty: the params file's"),
}
OVERRIDES = ("input_topic", "model_path", "latency_budget_ms", "power_cap_w")  # launch arguments = parameters


def parameter_value(name: str, text: str) -> str | float:
    """The launch argument ``name:=text`` as the node's parameter value, or a one-line error."""
    value = text
    if isinstance(SPECS[name].default, float):
        try:
            value = float(text)
        except ValueError:
            pass                                                    # check_value says why
    reason = check_value(name, value)
    if reason is not None:
        raise ValueError(f"launch argument {name}:={text} refused: {reason}")
    return value


def nowcast_node(context) -> list[Node]:
    """The node, with the parameter overrides that were given on the command line."""
    given = {name: LaunchConfiguration(name).perform(context) for name in OVERRIDES}
    overrides = {name: parameter_value(name, text) for name, text in given.items() if text != ""}
    return [Node(package=PACKAGE, executable="nowcast_node", name="nowcast_node",
                 namespace=LaunchConfiguration("namespace"), output="screen",
                 parameters=[LaunchConfiguration("params_file"), overrides])]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*(DeclareLaunchArgument(name, default_value=default, description=description)
                                for name, (default, description) in ARGUMENTS.items()),
                              OpaqueFunction(function=nowcast_node)])
