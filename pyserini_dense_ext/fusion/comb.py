"""CombSUM and CombMNZ.

Fox and Shaw, "Combination of Multiple Searches" (TREC-2, 1994): CombSUM adds each list's
normalised score (an absent document adds 0); CombMNZ multiplies that sum by the number of
lists that returned the document, rewarding agreement. Min-max normalisation by default, as
in ranx and Lee (SIGIR 1997).
"""
from __future__ import annotations

import numpy as np

from .base import Pool
from .normalize import normalize


def combsum(pool: Pool, normalization: str = "min-max") -> np.ndarray:
    """Fused scores ``(u,)`` = sum_i norm(s_i(d))."""
    return np.nansum(normalize(pool.scores, normalization), axis=0)


def combmnz(pool: Pool, normalization: str = "min-max") -> np.ndarray:
    """Fused scores ``(u,)`` = |{i : d in list i}| * sum_i norm(s_i(d))."""
    return pool.present.sum(axis=0) * combsum(pool, normalization)
