#!/usr/bin/env bash
# The test suite on a fresh clone (real data sets are read from ../shared/data or $DYNA_STREAM_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
echo "test: the core suite (about 10 minutes on 2 cores; one dot per test), then the ROS 2 tests" >&2
.venv/bin/python -m pytest -q "$@"
# ROS 2: colcon build + the installed node against real rclpy and Cyclone DDS, in a private netns
bash scripts/test_ros.sh
