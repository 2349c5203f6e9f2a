"""Sinks that write files: an MCAP recorder with ROS 2 schemas, and PNG/GIF snapshots."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from PIL import Image  # noqa: E402

from ..atomic import write_with  # noqa: E402
from .pipeline import StreamResult  # noqa: E402
from .ros_messages import IMAGE_MSGDEF, IMAGE_TYPE, image_fields  # noqa: E402

log = logging.getLogger(__name__)


class McapRecorder:
    """Records /forecast and /importance as ``sensor_msgs/msg/Image`` (CDR, zstd chunks) into an
    MCAP file that Foxglove and ``ros2 bag`` read. Writes to ``<path>.part`` and renames it on
    :meth:`close`, so a finished recording is never half-written."""

    def __init__(self, path: str | Path, *, topics: tuple[str, str] = ("/forecast", "/importance")) -> None:
        from mcap_ros2.writer import Writer

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self.path.with_name(self.path.name + ".part")
        self._file = open(self._partial, "wb")
        self._writer = Writer(self._file)
        self._schema = self._writer.register_msgdef(IMAGE_TYPE, IMAGE_MSGDEF)
        self.topics, self.count = topics, 0

    def publish(self, result: StreamResult) -> None:
        for topic, array in zip(self.topics, (result.forecast, result.importance)):
            self._writer.write_message(topic, self._schema, image_fields(array, result.stamp_ns, result.frame_id),
                                       log_time=result.stamp_ns, publish_time=result.stamp_ns, sequence=result.seq)
        self.count += 1

    def close(self) -> None:
        if self._file.closed:
            return
        self._writer.finish()
        self._file.close()
        os.replace(self._partial, self.path)
        log.info("recorded %d forecasts to %s", self.count, self.path)


class SnapshotSink:
    """Every ``every``-th result: an animated GIF of the forecast leads and a PNG of the importance
    map, written atomically into ``directory`` (value range for the colour map: ``limits``)."""

    def __init__(self, directory: str | Path, *, every: int = 1, limits: tuple[float, float] | None = None) -> None:
        self.directory, self.every, self.limits = Path(directory), every, limits

    @staticmethod
    def _colour(array: np.ndarray, low: float, high: float, cmap: str) -> Image.Image:
        scaled = np.clip((array - low) / max(high - low, 1e-6), 0.0, 1.0)
        return Image.fromarray((colormaps[cmap](scaled)[..., :3] * 255).astype(np.uint8))

    def publish(self, result: StreamResult) -> None:
        if result.seq % self.every:
            return
        leads = result.forecast[:, 0]
        low, high = self.limits or (float(leads.min()), float(leads.max()))
        frames = [self._colour(lead, low, high, "viridis") for lead in leads]
        write_with(self.directory / f"forecast_{result.seq:06d}.gif",
                   lambda tmp: frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=400, loop=0))
        importance = self._colour(result.importance, 0.0, 1.0, "magma")
        write_with(self.directory / f"importance_{result.seq:06d}.png", lambda tmp: importance.save(tmp))

    def close(self) -> None:
        pass
