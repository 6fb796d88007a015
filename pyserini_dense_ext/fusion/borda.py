"""Borda count: rank-based normalisation, then CombSUM.

Aslam and Montague, "Models for Metasearch" (SIGIR 2001): each list gives a document points for
its position, ignoring scores. With lists of different lengths each list's points are scaled to
(0, 1]: ``(n_i - rank_i(d) + 1) / n_i`` for a list of ``n_i`` hits, so its first hit scores 1 and
a document it did not return 0. Compared with RRF's 1 / (k + rank), points fall linearly with
rank instead of hyperbolically.
"""
from __future__ import annotations

import numpy as np

from .base import Pool


def borda(pool: Pool) -> np.ndarray:
    """Fused scores ``(u,)`` = sum_i (n_i - rank_i(d) + 1) / n_i over the lists that returned d."""
    n = pool.present.sum(axis=1).astype(np.float64)
    points = (n[:, None] - pool.ranks + 1) / np.maximum(n, 1)[:, None]
    return np.where(pool.present, points, 0.0).sum(axis=0)
