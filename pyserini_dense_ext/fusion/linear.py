"""Min-fill linear fusion of a sparse and a dense list: TCT-ColBERT's hybrid, as Pyserini runs it.

Lin, Yang and Lin, "Distilling Dense Representations for Ranking using Tightly-Coupled Teachers"
(2020), Sec. 4: over the union of both top-k0 lists, score = alpha * sparse + dense; a document
one list did not return gets that list's lowest score, an optimistic stand-in (its true score
is at most that). ``weight_on_dense`` moves alpha to the dense side. Normalisation is applied
per list first; ``centred`` reproduces Pyserini's ``HybridSearcher(normalization=True)``.
"""
from __future__ import annotations

import numpy as np

from .base import Pool
from .normalize import normalize, shift_scale


def linear(pool: Pool, alpha: float = 0.1, weight_on_dense: bool = False, normalization: str = "none") -> np.ndarray:
    """Fused scores ``(u,)`` for a pool of exactly two lists, sparse first, dense second."""
    if pool.scores.shape[0] != 2:
        raise ValueError(f"linear fusion takes exactly 2 ranked lists (sparse, dense), got {pool.scores.shape[0]}")
    scores = normalize(pool.scores, normalization)
    # Each list's minimum after normalisation: the normaliser is increasing, so it is the
    # normalised minimum. An empty list contributes Pyserini's stand-in minimum (0, normalised).
    present = pool.present
    shift, scale = shift_scale(pool.scores, normalization)
    empty_fill = (0.0 - shift) / scale
    minima = np.where(present.any(axis=1), np.min(np.where(present, scores, np.inf), axis=1), empty_fill)
    filled = np.where(present, scores, minima[:, None])
    sparse, dense = filled
    return sparse + alpha * dense if weight_on_dense else alpha * sparse + dense
