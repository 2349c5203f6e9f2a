"""A checkpoint's default operating point (sd, sw): where ``predict``, the Predictor and the nodes
run unless told otherwise. Chosen per data set on validation
(:func:`dyna_stream.evaluate.default_point.choose_default_point`); checkpoints written before it was
recorded run at :data:`FALLBACK_POINT`."""
from __future__ import annotations

from dataclasses import asdict, dataclass

TOLERANCE = 0.02                    # share above the most accurate point's validation MSE a default point may cost
FALLBACK_POINT = (0.7, 0.7)         # checkpoints without a recorded default point
DATA_BUDGETS = ("topk", "threshold")   # fixed share of tiles at sd; or tiles over the S threshold, capped at sd


@dataclass(frozen=True)
class DefaultPoint:
    """data_sparsity, model_sparsity : the point; validation : [[sd = sw, validation MSE], …], the
    dense path (0) first; tolerance : the share above the lowest of those MSEs allowed.
    tile_threshold : the tile score (mean S) over which the ``threshold`` data budget keeps a tile,
    calibrated on validation so that it keeps, pooled over the windows, the point's share of tiles
    (None: not calibrated; the threshold budget is unavailable)."""

    data_sparsity: float
    model_sparsity: float
    validation: list[list[float]]
    tolerance: float = TOLERANCE
    tile_threshold: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict) -> DefaultPoint:
        return cls(float(payload["data_sparsity"]), float(payload["model_sparsity"]),
                   [[float(s), float(m)] for s, m in payload.get("validation", [])],
                   float(payload.get("tolerance", TOLERANCE)),
                   None if payload.get("tile_threshold") is None else float(payload["tile_threshold"]))
