"""Sparse execution: run only the kept tiles and the kept channels of each sample (DESIGN §3)."""
from .engine import SparseEngine, SparseResult

__all__ = ["SparseEngine", "SparseResult"]
