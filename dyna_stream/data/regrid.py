"""Pixel size and time step as part of a model: putting an input on the model's grid and back.

A model is trained at one pixel size (radar: 4 km) and one time step (5 min). An input at a finer
pixel size by a whole factor k is averaged over k × k blocks (linear Z for reflectivity, DESIGN §7),
forecast on the model's grid, and the outputs repeated back onto the input's cells. Any other pixel
size is refused. A finer time step (or one up to 25 % coarser) is put on the model's (frames picked,
or linear in Z between two frames), counted back from the newest frame; a coarser one is refused:
the model would forecast the wrong motion per step.

Shapes: (..., H, W) arrays; validity bool of the same shape.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

PIXEL_TOLERANCE = 0.1          # a pixel size within 10 % of a whole factor counts as that factor
MAX_COARSER_STEP = 1.25        # frames up to this much further apart than the model's step are interpolated
                               # onto it (BoM's 6 min into 5: each 5-min time lies within 3 min of a frame)


def _identity(values: np.ndarray) -> np.ndarray:
    return values


def block_mean(values: np.ndarray, valid: np.ndarray, factor: int, *, fill_value: float,
               to_linear: Callable[[np.ndarray], np.ndarray] = _identity,
               from_linear: Callable[[np.ndarray], np.ndarray] = _identity) -> tuple[np.ndarray, np.ndarray]:
    """Mean over ``factor`` × ``factor`` blocks of the valid cells, in the space ``to_linear`` maps to.

    Crops (H, W) to a multiple of ``factor`` from the top-left. A block is no-data (``fill_value``)
    when more than half of its cells are; otherwise it is the mean of its valid cells.
    Returns (values float32 (..., H//f, W//f), valid (..., H//f, W//f)).
    """
    if factor == 1:
        return values, valid
    lead = values.shape[:-2]
    h, w = (values.shape[-2] // factor) * factor, (values.shape[-1] // factor) * factor
    blocks = (*lead, h // factor, factor, w // factor, factor)
    axes = (len(lead) + 1, len(lead) + 3)
    linear = np.where(valid, to_linear(values), 0.0)[..., :h, :w].reshape(blocks)
    n_valid = valid[..., :h, :w].reshape(blocks).sum(axis=axes)
    mean = from_linear(linear.sum(axis=axes) / np.maximum(n_valid, 1))
    block_valid = n_valid * 2 >= factor * factor
    return np.where(block_valid, mean, np.float32(fill_value)).astype(np.float32), block_valid


def upsample(values: np.ndarray, factor: int, size: tuple[int, int]) -> np.ndarray:
    """Block repetition of (..., h, w) by ``factor``, cropped or edge-padded to ``size`` = (H, W):
    each fine cell takes its block's value (the inverse of :func:`block_mean` for a uniform block)."""
    if factor == 1 and values.shape[-2:] == tuple(size):
        return values
    fine = values.repeat(factor, axis=-2).repeat(factor, axis=-1)[..., :size[0], :size[1]]
    pad = [(0, 0)] * (fine.ndim - 2) + [(0, size[0] - fine.shape[-2]), (0, size[1] - fine.shape[-1])]
    return np.pad(fine, pad, mode="edge") if any(p[1] for p in pad[-2:]) else fine


def grid_factor(input_km: float | None, model_km: float | None) -> int:
    """How many input pixels make one model pixel along each axis (1: the same grid, or unknown).

    Raises DataError when the input is coarser than the model or not a whole factor finer."""
    if input_km is None or model_km is None:
        return 1
    if not input_km > 0:
        raise DataError(f"input pixel size must be a positive number of km, got {input_km!r}")
    ratio = model_km / input_km
    factor = max(1, round(ratio))
    if abs(ratio - factor) > PIXEL_TOLERANCE * factor:
        why = "coarser than" if ratio < 1 else "not a whole fraction of"
        raise DataError(f"input pixels of {input_km:g} km are {why} this model's {model_km:g} km pixels; "
                        f"resample the input to {model_km:g} km (or {model_km:g}/k km) first")
    return factor


def resample_in_time(values: np.ndarray, valid: np.ndarray, input_minutes: float, model_minutes: float, *,
                     anchor: str = "last", to_linear: Callable[[np.ndarray], np.ndarray] = _identity,
                     from_linear: Callable[[np.ndarray], np.ndarray] = _identity
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames every ``input_minutes`` → every ``model_minutes``, counted from the ``anchor``
    frame ("last": the newest frame stays the newest, as a forecast needs; "first"). Where a model
    step falls between two input frames the value is linear between them in ``to_linear``'s space
    (reflectivity: Z; an advected feature is blurred, never shifted) and a cell is valid where both
    are; a whole ratio only picks frames.

    values, valid (T, ...) → (T', ...) each, and the fractional input positions (T',) of the frames
    kept, in time order. An input step up to :data:`MAX_COARSER_STEP` × the model's is interpolated
    likewise; raises DataError for a coarser one."""
    ratio = model_minutes / input_minutes
    count = values.shape[0]
    if ratio * MAX_COARSER_STEP < 1 - 1e-6:
        raise DataError(f"input frames are {input_minutes:g} min apart, coarser than this model's {model_minutes:g} "
                        f"min step (by more than {MAX_COARSER_STEP:g}×, which is interpolated); a forecast of "
                        f"{model_minutes:g}-min steps cannot be made from them")
    steps = np.arange(int(np.floor((count - 1) / ratio + 1e-6)) + 1) * ratio
    positions = steps if anchor == "first" else (count - 1) - steps[::-1]
    positions = np.round(positions, 6)
    before = np.floor(positions).astype(int)
    weight = (positions - before).reshape(-1, *[1] * (values.ndim - 1))
    after = np.minimum(before + 1, count - 1)
    if not weight.any():
        return values[before], valid[before], positions
    mixed = from_linear((1 - weight) * to_linear(values[before]) + weight * to_linear(values[after]))
    both = valid[before] & np.where(weight > 0, valid[after], True)
    return np.where(weight > 0, mixed, values[before]).astype(values.dtype), both, positions


def frame_stride(input_minutes: float | None, model_minutes: float | None) -> int:
    """How many frames of a stream every ``input_minutes`` make one model step (1: the same step, or
    unknown on either side); a stream keeps every k-th frame counted back from the newest. Raises
    DataError for a step that is not the model's or a whole fraction of it."""
    if input_minutes is None or model_minutes is None:
        return 1
    if not input_minutes > 0:
        raise DataError(f"input step must be a positive number of minutes, got {input_minutes!r}")
    ratio = model_minutes / input_minutes
    stride = round(ratio)
    if stride < 1 or abs(ratio - stride) > 1e-6 * ratio:
        raise DataError(f"frames every {input_minutes:g} min: a stream feeds this model frames at its "
                        f"{model_minutes:g}-min step or a whole fraction of it ({model_minutes:g}/k min); "
                        "publish at such a step")
    return stride


def check_step(input_minutes: float | None, model_minutes: float | None) -> None:
    """Refuse frames at another time step than the model's (unknown on either side passes)."""
    if input_minutes is not None and model_minutes is not None and abs(input_minutes - model_minutes) > 1e-6:
        raise DataError(f"input frames are {input_minutes:g} min apart; this model forecasts "
                        f"{model_minutes:g}-min steps from {model_minutes:g}-min frames: resample the input in time "
                        "(predict and eval do it for a finer step)")


@dataclass(frozen=True)
class GridAdapter:
    """Input grid ↔ model grid for an input ``factor`` times finer than the model's pixels.

    ``to_linear`` / ``from_linear``: the space block means are taken in (reflectivity: linear Z)."""

    factor: int
    fill_value: float
    to_linear: Callable[[np.ndarray], np.ndarray] = _identity
    from_linear: Callable[[np.ndarray], np.ndarray] = _identity

    def to_model(self, frames: np.ndarray, measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames, measured (T, C, H, W) on the input grid → the same on the model's grid."""
        return block_mean(frames, measured, self.factor, fill_value=self.fill_value, to_linear=self.to_linear,
                          from_linear=self.from_linear)

    def to_input(self, values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """(..., h, w) on the model's grid → (..., H, W) on the input's."""
        return upsample(values, self.factor, size)
