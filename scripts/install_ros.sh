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
# The Jazzy launch kit (ros2 launch / param / lifecycle as wheels, ../shared/ros2_launch or
# $ROS2_LAUNCH_KIT) makes .venv-ros a stand-in for /opt/ros/jazzy (.venv-ros/ros_setup.bash), so the
# tests can run `ros2 launch` as users do; without it, the PyPI half only (those tests then skip).
KIT=${ROS2_LAUNCH_KIT:-../shared/ros2_launch}
if [ -f "$KIT/build_kit.sh" ]; then
  if [ ! -f "$ROS_VENV/ros_setup.bash" ]; then
    echo "building the ROS 2 launch kit from $KIT into $ROS_VENV (about a minute)"
    bash "$KIT/build_kit.sh" "$ROS_VENV"
  fi
  "$ROS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$KIT/constraints.txt" pytest
else
  echo "no ROS 2 launch kit at $KIT: the \`ros2 launch\` tests will skip"
  if [ ! -x "$ROS_VENV/bin/python" ]; then
    "$PYTHON" -m venv "$ROS_VENV"
  fi
  "$ROS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "ros-rclpy[fastrtps]==7.1.6" ros-sensor-msgs==5.3.6 ros-std-msgs==5.3.6 ros-diagnostic-msgs==5.3.6 \
    colcon-common-extensions cyclonedds==11.0.1 catkin-pkg pytest
fi
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
