"""One CUDA graph per operating point: the static-shape sparse step captured once, replayed per frame.

At batch 1 a GPU is launch-bound: a sparse step issues hundreds of small kernels, and every
``nonzero`` makes the host wait for the device. The static-shape engine (:mod:`.static`) issues
the same kernels every step and never waits, so its step can be captured as a CUDA graph and
replayed with one launch. :class:`GraphedSteps` keeps one graph per *key* — everything that
changes the step's shapes or its captured constants: input shapes, dtype and device, (sd, sw),
policy, content budget, whether coverage is given — captured lazily on first use (or ahead with
:meth:`GraphedSteps.warm`), least recently used evicted beyond ``max_graphs``. A key never seen
is captured anew, so a changed grid or operating point never replays another's graph.

Inputs are copied into the graph's static buffers, outputs copied out (the caller owns them; the
next replay overwrites the graph's own). Each graph has its own memory pool, whose size is
reported (:meth:`GraphedSteps.memory`). Without CUDA (``capture=False``) the same object runs the
static step eagerly on the same static buffers: the keys, buffers and results are the same code
path, only the capture is missing — that is what the CPU tests exercise.

The model's weights (and its calibrated norm levels) must not change after the first capture:
build a new :class:`GraphedSteps` after loading other weights.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from ..model.dynapruner import DynaPruner
from ..model.masks import ContentBudget
from .engine import SparseEngine, SparseResult
from .pools import FreshBufferPool, IndexedBufferPool

log = logging.getLogger(__name__)
WARMUP_STEPS = 3      # eager steps on a side stream before a capture (cuDNN/cuBLAS choose their kernels)


@dataclass(frozen=True)
class GraphKey:
    """What one captured graph is valid for."""

    frames: tuple[int, ...]
    fallback: tuple[int, ...]
    coverage: tuple[int, ...] | None
    dtype: torch.dtype
    device: str
    data_sparsity: float
    model_sparsity: float
    policy: str
    content_budget: ContentBudget | None


class _Captured:
    """Static input buffers, the step that reads them, and (on CUDA) its captured graph."""

    def __init__(self, step: Callable[..., SparseResult], inputs: dict[str, torch.Tensor | None], *,
                 capture: bool) -> None:
        self.inputs = {name: None if value is None else value.clone() for name, value in inputs.items()}
        self.step, self.graph, self.memory_bytes = step, None, 0
        if not capture:
            self.output = None
            return
        device = next(v for v in self.inputs.values() if v is not None).device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self.step(**self.inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        before = torch.cuda.memory_reserved(device)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = self.step(**self.inputs)
        self.memory_bytes = torch.cuda.memory_reserved(device) - before     # the graph's private pool

    def __call__(self, inputs: dict[str, torch.Tensor | None]) -> SparseResult:
        for name, value in inputs.items():
            if value is not None:
                self.inputs[name].copy_(value)
        if self.graph is None:
            output = self.step(**self.inputs)
        else:
            self.graph.replay()
            output = self.output
        return _copied(output)


def _copied(result: SparseResult) -> SparseResult:
    """The result with tensors of its own (a replay overwrites the graph's output buffers)."""
    masks = replace(result.masks, tiles=None if result.masks.tiles is None else result.masks.tiles.clone(),
                    gates={name: gate.clone() for name, gate in result.masks.gates.items()}, _expanded={})
    return SparseResult(result.forecast.clone(), result.importance_map.clone(), masks,
                        [replace(a) for a in result.accounting], result.base.clone())


class GraphedSteps:
    """Sparse Dyna-Pruner steps replayed from one CUDA graph per operating point (see module doc).

    model : a trained DynaPruner on its device.  strategy : the engine's layer strategy.
    max_graphs : graphs kept (least recently used evicted).  capture : capture CUDA graphs
        (default: when the model is on a CUDA device).
    """

    def __init__(self, model: DynaPruner, *, strategy: str = "auto", max_graphs: int = 16,
                 capture: bool | None = None) -> None:
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be at least 1, not {max_graphs}")
        device = next(model.parameters()).device
        self.capture = device.type == "cuda" if capture is None else capture
        if self.capture and device.type != "cuda":
            raise ValueError(f"CUDA graphs need the model on a CUDA device; it is on {device}")
        pool = FreshBufferPool() if self.capture else IndexedBufferPool()   # a graph replays its own fills
        self.engine = SparseEngine(model, strategy=strategy, shapes="static", pool=pool)
        self.max_graphs = max_graphs
        self._graphs: OrderedDict[GraphKey, _Captured] = OrderedDict()
        self.captures = 0                    # graphs captured so far (evicted ones included)

    @staticmethod
    def key(frames: torch.Tensor, fallback: torch.Tensor, *, data_sparsity: float, model_sparsity: float,
            policy: str, coverage: torch.Tensor | None, content_budget: ContentBudget | None) -> GraphKey:
        return GraphKey(tuple(frames.shape), tuple(fallback.shape), None if coverage is None else tuple(coverage.shape),
                        frames.dtype, str(frames.device), float(data_sparsity), float(model_sparsity), policy,
                        content_budget)

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor, fallback: torch.Tensor, *, data_sparsity: float = 0.0,
                 model_sparsity: float = 0.0, policy: str = "dyna", coverage: torch.Tensor | None = None,
                 content_budget: ContentBudget | None = None, mask_failure: float = 0.0) -> SparseResult:
        """As :meth:`SparseEngine.__call__` (without ``mask_failure``: it has no static shape)."""
        if mask_failure > 0:
            raise ValueError("mask_failure draws a varying number of tiles: graphs cannot replay it")
        key = self.key(frames, fallback, data_sparsity=data_sparsity, model_sparsity=model_sparsity,
                       policy=policy, coverage=coverage, content_budget=content_budget)
        inputs = {"frames": frames, "fallback": fallback, "coverage": coverage}
        return self._captured(key, inputs)(inputs)

    def warm(self, frames: torch.Tensor, fallback: torch.Tensor, points: list[tuple[float, float]], **options
             ) -> None:
        """Capture the graphs of ``points`` [(sd, sw), ...] ahead (e.g. a controller's profile at start-up)."""
        for data_sparsity, model_sparsity in points:
            self(frames, fallback, data_sparsity=data_sparsity, model_sparsity=model_sparsity, **options)

    def memory(self) -> dict[GraphKey, int]:
        """Bytes of device memory each kept graph holds (0 without capture)."""
        return {key: captured.memory_bytes for key, captured in self._graphs.items()}

    def _captured(self, key: GraphKey, inputs: dict[str, torch.Tensor | None]) -> _Captured:
        if key in self._graphs:
            self._graphs.move_to_end(key)
            return self._graphs[key]
        step = lambda frames, fallback, coverage: self.engine(  # noqa: E731
            frames, fallback, data_sparsity=key.data_sparsity, model_sparsity=key.model_sparsity,
            policy=key.policy, coverage=coverage, content_budget=key.content_budget)
        captured = _Captured(step, inputs, capture=self.capture)
        self.captures += 1
        self._graphs[key] = captured
        if len(self._graphs) > self.max_graphs:
            evicted, _ = self._graphs.popitem(last=False)
            log.info("graph cache full (%d): evicted %s", self.max_graphs, evicted)
        if self.capture:
            log.info("captured a CUDA graph for sd=%.2f sw=%.2f on %s (%.1f MB)", key.data_sparsity,
                     key.model_sparsity, key.frames, captured.memory_bytes / 2**20)
        return captured
