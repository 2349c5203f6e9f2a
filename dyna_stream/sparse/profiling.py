"""Count what one step costs a launch-bound device: operator calls, device kernels, host syncs.

From ``torch.profiler`` over a few calls of a step (per-step means):

- operators: leaf ATen operator calls (no ATen operator below them) — on a GPU each is about one
  kernel launch, so on a CPU this stands in for the launch count;
- kernels: device kernels the profiler saw (CUDA only, else 0);
- host syncs: calls after which the host must wait for the device's result: operators whose
  output size or value the host reads (``nonzero``, ``item``, boolean-mask indexing, ...) and, on
  CUDA, the runtime's synchronising calls.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

# ATen operators that read a device result on the host (the size of nonzero's output, a scalar)
SYNC_OPERATORS = frozenset({
    "aten::nonzero", "aten::nonzero_numpy", "aten::_local_scalar_dense", "aten::item", "aten::masked_select",
    "aten::unique_dim", "aten::_unique2", "aten::unique_consecutive", "aten::is_nonzero",
})
SYNC_RUNTIME_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


@dataclass(frozen=True)
class StepCounts:
    """Per-step means over the profiled calls."""

    operators: float
    kernels: float
    host_syncs: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _is_sync(event) -> bool:
    return event.name in SYNC_OPERATORS or any(event.name.startswith(call) for call in SYNC_RUNTIME_CALLS)


def _counts_as_sync(event) -> bool:
    """A synchronising call not made inside another one (``item`` runs ``_local_scalar_dense``)."""
    parent = event.cpu_parent
    while parent is not None:
        if _is_sync(parent):
            return False
        parent = parent.cpu_parent
    return _is_sync(event)


def step_counts(step: Callable[[], object], device: torch.device, *, steps: int = 3) -> StepCounts:
    """Profile ``steps`` calls of ``step`` (after one unprofiled call) and count per step."""
    step()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize(device)
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    events = profiler.events()
    operators = kernels = syncs = 0
    for event in events:
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels += 1
            continue
        if event.name.startswith("aten::") and not any(child.name.startswith("aten::")
                                                       for child in event.cpu_children):
            operators += 1
        syncs += _counts_as_sync(event)
    if device.type == "cuda":       # the profiling's own final synchronize is not the step's
        syncs = max(0, syncs - 1)
    return StepCounts(operators / steps, kernels / steps, syncs / steps)
