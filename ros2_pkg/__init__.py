"""rclpy adapter over :mod:`dyna_stream` (the node itself lands with the ROS 2 issue)."""
