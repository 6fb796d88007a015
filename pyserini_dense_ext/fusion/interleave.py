"""Alternating interleave: RepBERT's way of merging BM25 and dense results.

Zhan et al., "RepBERT: Contextualized Text Embeddings for First-Stage Retrieval" (2020): take
a1, b1, a2, b2, ... from the lists in turn, keep each document at its first position. The
order of the inputs matters (list 1 wins each round). Scores carry no information here: the
fused score is the number of pooled documents minus the merged position, so higher is better
and every score is a distinct integer (no ties for a TREC file to break).
"""
from __future__ import annotations

import numpy as np

from .base import Pool


def interleave(pool: Pool) -> np.ndarray:
    """Fused scores ``(u,)``: document d's merged position is min over lists i of (rank_i(d) - 1) * r + i."""
    r, u = pool.ranks.shape
    position = np.min((pool.ranks - 1) * r + np.arange(r)[:, None], axis=0)
    # Positions of absent documents are +inf and drop out of the min; order them densely.
    order = np.argsort(position, kind="stable")
    fused = np.empty(u)
    fused[order] = u - np.arange(u, dtype=np.float64)
    return fused
