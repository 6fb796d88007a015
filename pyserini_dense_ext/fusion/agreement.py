"""Agreement-gated z-score fusion of a sparse and a dense list: fuse equally while the lists agree.

Lee ("Analyses of multiple evidence combination", SIGIR 1997) found that fusion pays off when the
lists share more relevant than non-relevant documents. Read the other way round, the overlap of
two top-k lists is roughly the product of their precisions: two useful lists overlap (BM25 and
MiniLM share a third of their top 10 on SciFact), a list that is noise overlaps with nothing.
So the weight of the dense list is

    w = g / 2 + (1 - g) * c_d^beta / (c_s^beta + c_d^beta),    g = min(1, overlap@k / tau),

an equal z-score fusion (Montague and Aslam's ZMUV, the best fixed fusion on SciFact train) as
long as the top-k overlap reaches ``tau``, moving towards the list whose scores look more
confident (``c``: :func:`~.dispersion.zmax`, a score-dispersion predictor) as the overlap falls
to 0. When neither list looks more confident the weight stays 1/2. An empty list has overlap 0
and confidence 0, so the other list is returned as it is.

``tau``, ``beta`` and ``overlap_k`` were chosen on SciFact train with BM25 against MiniLM and against
deliberately broken encoders (docs/fusion_default.md). :func:`agreement` estimates the overlap
and the confidences from one query; :mod:`.auto` averages them over all queries fused together,
which is far steadier.
"""
from __future__ import annotations

import numpy as np

from .base import Pool
from .dispersion import zmax
from .weighted import weighted

TAU = 0.15  # top-10 overlap at which the two lists are trusted equally
BETA = 8.0  # how sharply the confidence ratio picks a side once they are not
OVERLAP_K = 10


def top_overlap(pool: Pool, k: int = OVERLAP_K) -> float:
    """|top-k of list 1 ∩ top-k of list 2| / k for a two-list pool."""
    if k < 1:
        raise ValueError(f"overlap_k must be positive, got {k}")
    return float(np.count_nonzero((pool.ranks[0] <= k) & (pool.ranks[1] <= k))) / k


def dense_weight(overlap: float, confidence: np.ndarray, tau: float = TAU, beta: float = BETA) -> float:
    """The dense list's weight in [0, 1] from the top-k overlap and the (sparse, dense) confidences."""
    if tau <= 0 or beta < 0:
        raise ValueError(f"tau must be positive and beta non-negative, got tau={tau}, beta={beta}")
    g = min(1.0, max(overlap, 0.0) / tau)
    c = np.maximum(np.asarray(confidence, dtype=np.float64), 0.0) ** beta
    side = c[1] / (c[0] + c[1]) if c[0] + c[1] > 0 else 0.5
    return 0.5 * g + (1.0 - g) * side


def check_two(pool: Pool, name: str) -> None:
    if pool.scores.shape[0] != 2:
        raise ValueError(f"{name} fusion takes exactly 2 ranked lists (sparse, dense), got {pool.scores.shape[0]}")


def z_mix(pool: Pool, w: float) -> np.ndarray:
    """Fused scores ``(u,)`` = (1 - w) * z_sparse(d) + w * z_dense(d), absent adding 0."""
    return weighted(pool, weights=[1.0 - w, w], normalization="z-score")


def agreement(pool: Pool, tau: float = TAU, beta: float = BETA, overlap_k: int = OVERLAP_K) -> np.ndarray:
    """Fused scores ``(u,)`` with the dense weight estimated from this query alone."""
    check_two(pool, "agreement")
    return z_mix(pool, dense_weight(top_overlap(pool, overlap_k), zmax(pool), tau, beta))
