"""``auto``: the default hybrid fusion, one dense weight per collection, estimated without judgements.

The weight is :func:`~.agreement.dense_weight` of the mean top-10 overlap of the two runs and
each run's mean confidence (:func:`~.dispersion.zmax`), averaged over all the queries fused
together (a run file, a batch): Wu and Crestani rank systems without judgements by how many of
their documents other systems also return ("Methods for ranking information retrieval systems
without relevance judgements", SAC 2003); here the overlap only says *whether* both runs can be
trusted, since with two runs it is symmetric, and the score dispersion says which one to lean on
when they cannot. Each query is then fused as (1 - w) * z_sparse + w * z_dense (Montague and
Aslam's ZMUV normalisation), an absent document adding 0.

With two useful runs the overlap is well above ``tau`` and auto is the equal z-score fusion that
was best among fixed fusions on SciFact train; when the dense run is noise (a broken or random
encoder) the overlap collapses and auto returns close to BM25 alone instead of dragging it
down. One query alone is its own collection (:func:`~.agreement.agreement`); ``dense_weight=``
fixes the weight instead of estimating it. Why these choices, and what they cannot detect:
docs/fusion_default.md.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .agreement import BETA, OVERLAP_K, TAU, check_two, dense_weight, top_overlap, z_mix
from .base import Pool
from .dispersion import zmax


def evidence(pools: Sequence[Pool], overlap_k: int = OVERLAP_K) -> tuple[float, np.ndarray, int]:
    """(mean top-k overlap, mean (sparse, dense) confidence, queries used); pools with no hits are skipped."""
    used = [p for p in pools if len(p.docids)]
    for p in used:
        check_two(p, "auto")
    if not used:
        return 0.0, np.zeros(2), 0
    overlap = float(np.mean([top_overlap(p, overlap_k) for p in used]))
    return overlap, np.mean([zmax(p) for p in used], axis=0), len(used)


def calibrate(pools: Sequence[Pool]) -> dict[str, Any]:
    """The parameters :func:`auto` fuses every one of ``pools`` with: ``{"dense_weight": w}``."""
    overlap, confidence, _ = evidence(pools)
    return {"dense_weight": dense_weight(overlap, confidence, TAU, BETA)}


def auto(pool: Pool, dense_weight: float | None = None) -> np.ndarray:
    """Fused scores ``(u,)``; without ``dense_weight`` it is estimated from this query alone."""
    check_two(pool, "auto")
    if dense_weight is None:
        dense_weight = calibrate([pool])["dense_weight"]
    if not 0.0 <= dense_weight <= 1.0:
        raise ValueError(f"dense_weight must be in [0, 1], got {dense_weight}")
    return z_mix(pool, dense_weight)
