"""The ament_python package contract: package.xml (catkin_pkg), the installed layout, the launch
file, and the params file against the node's declared parameters.

No ``launch``/``launch_ros`` wheel exists on PyPI, so the launch file is run against a minimal
stand-in of the few classes it uses (recording their arguments); the real node is started by the
other tests in this folder. The stand-in checks the contract, not launch's own behaviour.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from catkin_pkg.package import parse_package

from ros2_pkg.parameters import SPECS

from conftest import INSTALL, REPO, SHARE

ROS_DEPENDENCIES = {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "builtin_interfaces"}


def test_package_xml_is_a_valid_format_3_ament_python_manifest():
    package = parse_package(str(REPO / "package.xml"))
    package.validate()
    assert package.name == "dyna_stream" and package.package_format == 3
    assert package.get_build_type() == "ament_python"
    assert ROS_DEPENDENCIES <= {dependency.name for dependency in package.exec_depends}
    assert {"python3-torch", "python3-zmq", "python3-msgpack"} <= {d.name for d in package.exec_depends}


def test_colcon_installed_the_executable_the_index_marker_launch_and_configs():
    assert (INSTALL / "dyna_stream" / "lib" / "dyna_stream" / "nowcast_node").is_file()
    assert (INSTALL / "dyna_stream" / "share" / "ament_index" / "resource_index" / "packages" / "dyna_stream").is_file()
    assert (SHARE / "launch" / "nowcast.launch.py").is_file() and (SHARE / "package.xml").is_file()
    assert (SHARE / "configs" / "nowcast.yaml").is_file()


def test_the_params_file_names_only_declared_parameters_with_their_types():
    values = yaml.safe_load((SHARE / "configs" / "nowcast.yaml").read_text())["/**"]["ros__parameters"]
    assert set(values) <= set(SPECS), set(values) - set(SPECS)
    for name, value in values.items():
        assert type(value) is type(SPECS[name].default), name
        if SPECS[name].bounds is not None:
            low, high = SPECS[name].bounds
            assert low <= value <= high, name
        if SPECS[name].choices:
            assert value in SPECS[name].choices, name


# --- launch stand-in ----------------------------------------------------------------------------
@dataclass
class Context:
    launch_configurations: dict[str, str]


@dataclass
class LaunchConfiguration:
    name: str

    def perform(self, context: Context) -> str:
        return context.launch_configurations[self.name]


@dataclass
class DeclareLaunchArgument:
    name: str
    default_value: str = ""
    description: str = ""


@dataclass
class OpaqueFunction:
    function: Any


@dataclass
class LaunchDescription:
    entities: list


@dataclass
class Node:
    kwargs: dict = field(default_factory=dict)


def stand_in_modules() -> dict[str, types.ModuleType]:
    modules = {name: types.ModuleType(name) for name in
               ("launch", "launch.actions", "launch.substitutions", "launch_ros", "launch_ros.actions")}
    modules["launch"].LaunchDescription = LaunchDescription
    modules["launch.actions"].DeclareLaunchArgument = DeclareLaunchArgument
    modules["launch.actions"].OpaqueFunction = OpaqueFunction
    modules["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    modules["launch_ros.actions"].Node = lambda **kwargs: Node(kwargs)
    return modules


@pytest.fixture
def launch_description(monkeypatch) -> LaunchDescription:
    """generate_launch_description() of the *installed* launch file."""
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(INSTALL / "dyna_stream"))
    for name, module in stand_in_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("nowcast_launch", SHARE / "launch" / "nowcast.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def evaluate(description: LaunchDescription, **given: str) -> Node:
    """Resolve the arguments (defaults + ``given``) and run the opaque function, as launch would."""
    arguments = {e.name: e.default_value for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    context = Context({**arguments, **given})
    (opaque,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    (node,) = opaque.function(context)
    resolve = lambda v: v.perform(context) if isinstance(v, LaunchConfiguration) else v  # noqa: E731
    kwargs = dict(node.kwargs)
    kwargs["parameters"] = [resolve(p) for p in kwargs["parameters"]]
    kwargs["namespace"] = resolve(kwargs["namespace"])
    return kwargs


def test_the_launch_file_starts_nowcast_node_with_the_installed_params_file(launch_description):
    node = evaluate(launch_description)
    assert (node["package"], node["executable"], node["name"]) == ("dyna_stream", "nowcast_node", "nowcast_node")
    params_file, overrides = node["parameters"]
    assert params_file == str(SHARE / "configs" / "nowcast.yaml")
    assert overrides == {}                                      # nothing given: the params file rules
    assert "remappings" not in node                             # the input topic is the parameter only


def test_launch_arguments_set_their_parameters_only_when_given(launch_description):
    node = evaluate(launch_description, input_topic="/radar/image", latency_budget_ms="45",
                    model_path="/models/radar.pt", params_file="/robot/nowcast.yaml", namespace="weather")
    assert node["parameters"] == ["/robot/nowcast.yaml", {"input_topic": "/radar/image", "latency_budget_ms": 45.0,
                                                          "model_path": "/models/radar.pt"}]
    assert node["namespace"] == "weather"
    declared = {e.name for e in launch_description.entities if isinstance(e, DeclareLaunchArgument)}
    assert {"params_file", "input_topic", "model_path", "latency_budget_ms", "power_cap_w"} <= declared


@pytest.mark.parametrize(("argument", "reason"), [("fast", "must be a number"), ("-5", "must be within")])
def test_a_launch_argument_the_node_would_refuse_is_refused_with_the_reason(launch_description, argument, reason):
    with pytest.raises(ValueError, match=f"latency_budget_ms:={argument} refused: .*{reason}"):
        evaluate(launch_description, latency_budget_ms=argument)


def test_every_parameter_is_documented():
    text = (REPO / "docs" / "ros2.md").read_text()
    assert [name for name in SPECS if f"`{name}`" not in text] == []
