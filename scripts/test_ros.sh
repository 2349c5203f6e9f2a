#!/usr/bin/env bash
# ROS 2 tests: build the package with colcon (scripts/install_ros.sh), then run tests/ros inside a
# private network namespace with only loopback up — DDS discovery and traffic never leave it.
set -euo pipefail
cd "$(dirname "$0")/.."
# A private network namespace needs root, or an unprivileged user namespace mapping us to root in it:
# check which works now, before anything is built, and say so if neither does.
NETNS=(unshare --net)
if ! unshare --net true 2>/dev/null; then
  if unshare --net --map-root-user true 2>/dev/null; then
    NETNS=(unshare --net --map-root-user)
  else
    echo "scripts/test_ros.sh: cannot create a private network namespace (needs root, or unprivileged user" \
         "namespaces: sysctl kernel.unprivileged_userns_clone=1); the ROS 2 tests never touch the real network" >&2
    exit 2
  fi
fi
bash scripts/install_ros.sh
exec "${NETNS[@]}" -- bash -c '
  ip link set lo up && ip link set lo multicast on
  . build/ros_ws/install/local_setup.sh
  export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST PATH="$PWD/.venv-ros/bin:$PATH"
  exec .venv-ros/bin/python -m pytest -q -p no:cacheprovider -c tests/ros/pytest.ini --rootdir tests/ros --confcutdir=tests/ros tests/ros "$@"' bash "$@"
