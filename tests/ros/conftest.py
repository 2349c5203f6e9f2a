"""ROS 2 tests: real rclpy (Fast DDS) and Cyclone DDS against the colcon-installed node.

Run by ``scripts/test_ros.sh``, which builds the package and starts pytest inside a private
network namespace (``unshare -n``, loopback only). Each test gets its own ROS_DOMAIN_ID.
"""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "build" / "ros_ws" / "install"
SHARE = INSTALL / "dyna_stream" / "share" / "dyna_stream"
_DOMAINS = itertools.count(1 + (os.getpid() % 20) * 10)


def pytest_configure(config):
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]          # per network namespace
    interfaces = sorted(line.split(":")[0].strip() for line in lines)
    if interfaces != ["lo"]:
        pytest.exit(f"DDS tests must run in a private network namespace (found interfaces {interfaces}); "
                    "use scripts/test_ros.sh", returncode=3)
    if not (INSTALL / "local_setup.sh").is_file():
        pytest.exit(f"no colcon install tree at {INSTALL}; scripts/install_ros.sh builds it", returncode=3)


@pytest.fixture
def domain_id(monkeypatch) -> int:
    """A test-unique ROS_DOMAIN_ID, discovery kept on this host."""
    domain = next(_DOMAINS)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return domain


@pytest.fixture
def ros(domain_id) -> Iterator[tuple[Context, rclpy.node.Node, SingleThreadedExecutor]]:
    """A private rclpy context with one test node and an executor to spin it."""
    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node(f"test_peer_{domain_id}", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield context, node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def spin_until(executor: SingleThreadedExecutor, done: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return done()


class NodeProcess:
    """``nowcast_node`` started from the colcon install tree the way ``ros2 run dyna_stream
    nowcast_node`` does: ``. install/local_setup.sh``, then ``<package prefix>/lib/dyna_stream/``
    from the ament index."""

    def __init__(self, ros_args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        command = ('. "$1" && shift && prefix=$(python -c "from ament_index_python.packages import '
                   'get_package_prefix as p; print(p(\'dyna_stream\'))") && '
                   'exec "$prefix/lib/dyna_stream/nowcast_node" "$@"')
        self.process = subprocess.Popen(
            ["bash", "-c", command, "bash", str(INSTALL / "local_setup.sh"), "--ros-args", *ros_args],
            stdout=log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def exited(self) -> bool:
        return self.process.poll() is not None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            if text in self.log():
                return True
            time.sleep(0.1)
        return text in self.log()

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 20.0, *, group: bool = False) -> int:
        """Send ``sig`` (to the whole process group with ``group``, as a terminal's Ctrl-C does)
        and return the exit status; a process that ignores it is killed and the test fails."""
        if self.process.poll() is None and group:
            os.killpg(self.process.pid, sig)
        elif self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(f"{self.process.args[-1]!r} ignored signal {sig} for {timeout_s} s:\n"
                                 f"{self.log()}") from None


@pytest.fixture(scope="session")
def profile_dir(tmp_path_factory) -> Path:
    """One operating-point profile cache for the session (the first node measures, the rest read)."""
    return tmp_path_factory.mktemp("profiles")


def write_params(path: Path, profile_dir: Path, overrides: dict | None = None) -> Path:
    """The installed params file with the session's profile cache (3 runs a point) and ``overrides``."""
    tree = yaml.safe_load((SHARE / "configs" / "nowcast.yaml").read_text())
    tree["/**"]["ros__parameters"].update({"profile_cache_dir": str(profile_dir), "profile_runs": 3,
                                           **(overrides or {})})
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.fixture
def start_node(tmp_path, domain_id, profile_dir) -> Iterator[Callable[..., NodeProcess]]:
    """Start the node with the installed params file plus ``overrides`` (written to a new params
    file, so the test does not depend on the order of ``--params-file`` and ``-p``)."""
    started: list[NodeProcess] = []

    def start(overrides: dict | None = None, *ros_args: str) -> NodeProcess:
        params = write_params(tmp_path / f"params{len(started)}.yaml", profile_dir, overrides)
        node = NodeProcess(["--params-file", str(params), *ros_args], tmp_path / f"node{len(started)}.log")
        started.append(node)
        return node

    yield start
    for node in started:
        if node.process.poll() is None:
            node.stop(signal.SIGKILL)
