"""Streaming: wire protocol, ring buffer, pipeline, transports. Nothing here imports rclpy, and the
protocol, buffer and transports do not import torch (the edge publisher runs without it)."""
