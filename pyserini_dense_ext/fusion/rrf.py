"""Reciprocal rank fusion.

Cormack, Clarke and Buettcher, "Reciprocal Rank Fusion outperforms Condorcet and individual
Rank Learning Methods" (SIGIR 2009): score(d) = sum_i 1 / (k + rank_i(d)), k = 60, over the
lists that returned d (an absent document's rank is +inf, adding 0).
"""
from __future__ import annotations

import numpy as np

from .base import Pool


def rrf(pool: Pool, rrf_k: float = 60) -> np.ndarray:
    """Fused scores ``(u,)``; ranks are 1-based positions in each list; ``rrf_k >= 0`` (checked by ``resolve``)."""
    return np.sum(1.0 / (rrf_k + pool.ranks), axis=0)
