"""The rclpy adapter: ``nowcast_node`` (a lifecycle node over :mod:`dyna_stream.stream.pipeline`).

Only this package imports rclpy; :mod:`dyna_stream` stays pure Python.
"""
