"""Weighted sum with a tuned weight: the sparse-dense hybrid of ME-BERT.

Luan et al., "Sparse, Dense, and Attentional Representations for Text Retrieval" (TACL 2021),
combine a sparse and a dense score linearly with one weight tuned on held-out queries:
score = alpha * sparse + dense (``weights`` generalises this to r lists). Unlike min-fill
:func:`~pyserini_dense_ext.fusion.linear.linear`, a list that did not return a document adds
nothing for it: 0 is a pessimistic stand-in for BM25 and for non-negative similarities (the
true score is at least 0), where min-fill is an optimistic one.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import Pool
from .normalize import normalize


def weighted(pool: Pool, alpha: float = 1.0, weights: Sequence[float] | None = None,
             normalization: str = "none") -> np.ndarray:
    """Fused scores ``(u,)`` = sum_i w_i * s_i(d) over the lists that returned d.

    Without ``weights``, list 1 (sparse) is weighted by ``alpha`` and the others by 1.
    """
    r = pool.scores.shape[0]
    w = np.array([alpha] + [1.0] * (r - 1) if weights is None else weights, dtype=np.float64)
    if w.shape != (r,):
        raise ValueError(f"weighted fusion got {len(w)} weights for {r} ranked lists")
    scores = np.nan_to_num(normalize(pool.scores, normalization), nan=0.0)
    return w @ scores
