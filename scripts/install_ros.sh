#!/usr/bin/env bash
# The ROS 2 side of the tests: a separate venv (.venv-ros) with rclpy (Jazzy, Fast DDS) from PyPI,
# the message packages, colcon and Cyclone DDS as an independent peer; then `colcon build` of this
# repo into build/ros_ws. The heavy Python dependencies (torch, numpy, …) are not installed twice:
# a .pth file adds the main venv's site-packages (made by scripts/install.sh) after the ROS ones.
# dyna_stream itself comes from the colcon install tree, as it would on a robot.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ROS_VENV=.venv-ros
if [ ! -x "$ROS_VENV/bin/python" ]; then
  "$PYTHON" -m venv "$ROS_VENV"
fi
"$ROS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  "ros-rclpy[fastrtps]==7.1.6" ros-sensor-msgs==5.3.6 ros-std-msgs==5.3.6 ros-diagnostic-msgs==5.3.6 \
  colcon-common-extensions cyclonedds==11.0.1 catkin-pkg pytest
MAIN_SITE=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
ROS_SITE=$("$ROS_VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$MAIN_SITE" > "$ROS_SITE/zz_dyna_stream_main_venv.pth"
WS=build/ros_ws
rm -rf "$WS"
mkdir -p "$WS"
# colcon copies nothing: it builds the package from the repo root (--base-paths .)
(cd "$WS" && PATH="$PWD/../../$ROS_VENV/bin:$PATH" colcon build --base-paths ../.. --packages-select dyna_stream \
  --build-base build --install-base install --event-handlers console_cohesion- summary+ >colcon.log 2>&1) \
  || { cat "$WS/colcon.log"; exit 1; }
tail -n 3 "$WS/colcon.log"
