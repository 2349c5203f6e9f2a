#!/usr/bin/env bash
# ROS 2 tests: build the package with colcon (scripts/install_ros.sh), then run tests/ros inside a
# private network namespace with only loopback up — DDS discovery and traffic never leave it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_ros.sh
exec unshare --net -- bash -c '
  ip link set lo up && ip link set lo multicast on
  . build/ros_ws/install/local_setup.sh
  export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST PATH="$PWD/.venv-ros/bin:$PATH"
  exec .venv-ros/bin/python -m pytest -q -p no:cacheprovider -c tests/ros/pytest.ini --rootdir tests/ros --confcutdir=tests/ros tests/ros "$@"' bash "$@"
