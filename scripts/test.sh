#!/usr/bin/env bash
# The test suite on a fresh clone (real data sets are read from ../shared/data or $DYNA_STREAM_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/python -m pytest -q "$@"
# ROS 2: colcon build + the installed node against real rclpy and Cyclone DDS, in a private netns
bash scripts/test_ros.sh
