"""Shared by the stream benchmarks: a node fed by a looping real-radar publisher, with a client,
all on ipc:// sockets in a temporary folder."""
from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Iterator

import zmq

from dyna_stream.assets import BUNDLED_SAMPLE
from dyna_stream.config import NodeConfig, load_config
from dyna_stream.data.registry import load_path
from dyna_stream.stream.client import ForecastClient
from dyna_stream.stream.node import Node
from dyna_stream.stream.publisher import replay


@contextlib.contextmanager
def loopback_node(*, rate_hz: float, loops: int) -> Iterator[tuple[Node, ForecastClient, threading.Thread]]:
    """(node, client, publisher thread — started); everything is stopped on exit."""
    with tempfile.TemporaryDirectory() as directory:
        frames_in, out = f"ipc://{directory}/in", f"ipc://{directory}/out"
        config = load_config(None, [f"input.endpoint={frames_in}", "input.bind=true", f"output.endpoint={out}"],
                             schema=NodeConfig)
        context = zmq.Context()
        node = Node(config, context=context).start()
        client = ForecastClient(out, context=context)
        publisher = threading.Thread(target=replay, args=(load_path(BUNDLED_SAMPLE), frames_in), daemon=True,
                                     kwargs={"rate_hz": rate_hz, "loops": loops, "bind": False, "context": context})
        publisher.start()
        try:
            yield node, client, publisher
        finally:
            node.stop()
            publisher.join(5)
            client.close()
