"""A checkpoint's default operating point (sd, sw): where ``predict``, the Predictor and the nodes
run unless told otherwise. Chosen per data set on validation
(:func:`dyna_stream.evaluate.default_point.choose_default_point`); checkpoints written before it was
recorded run at :data:`FALLBACK_POINT`."""
from __future__ import annotations

from dataclasses import asdict, dataclass

TOLERANCE = 0.02                    # share above the most accurate point's validation MSE a default point may cost
FALLBACK_POINT = (0.7, 0.7)         # checkpoints without a recorded default point


@dataclass(frozen=True)
class DefaultPoint:
    """data_sparsity, model_sparsity : the point; validation : [[sd = sw, validation MSE], …], the
    dense path (0) first; tolerance : the share above the lowest of those MSEs allowed."""

    data_sparsity: float
    model_sparsity: float
    validation: list[list[float]]
    tolerance: float = TOLERANCE

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict) -> DefaultPoint:
        return cls(float(payload["data_sparsity"]), float(payload["model_sparsity"]),
                   [[float(s), float(m)] for s, m in payload.get("validation", [])],
                   float(payload.get("tolerance", TOLERANCE)))
