"""Per-query weights from each list's own score distribution (post-retrieval query-performance prediction).

A list whose best documents stand far above the rest of its scores is, on average, a better
list for that query: the score-dispersion predictors of query-performance prediction. Zhou and
Croft's WIG ("Query performance prediction in web search environments", SIGIR 2007) measures the
top scores' excess over the collection's; Shtok, Kurland, Carmel, Raiber and Markovits' NQC
("Predicting query performance by query-drift estimation", TOIS 2012) the standard deviation of
the top scores. Both need the collection's score for the query, which a ranked list does not
carry, so each list's own hits stand in for it here:

- ``zmax``: (max - mean) / std over the list: the WIG excess of the top hit, in NQC's unit;
- ``nqc``: std of the top-10 scores after min-max scaling the list to [0, 1];
- ``gap``: (s1 - s2) / (max - min), how far the first hit leads the second.

:func:`dispersion` weights each list's z-scores (Montague and Aslam's ZMUV normalisation,
"Relevance score normalization for metasearch", CIKM 2001) by its predictor, normalised to sum
to 1. A list with one hit or equal scores predicts 0; an empty list gets weight 0.
"""
from __future__ import annotations

import numpy as np

from .base import Pool
from .normalize import FLOOR, normalize
from .weighted import weighted

PREDICTORS = ("zmax", "nqc", "gap")


def zmax(pool: Pool) -> np.ndarray:
    """``(r,)``: each list's top z-score, (max - mean) / std over its hits (0 for an empty list)."""
    z = normalize(pool.scores, "z-score")
    return np.where(pool.present.any(axis=1), np.nanmax(np.where(pool.present, z, -np.inf), axis=1), 0.0)


def _sorted_minmax(pool: Pool, i: int) -> np.ndarray:
    s = np.sort(pool.scores[i][pool.present[i]])[::-1]
    return (s - s[-1]) / max(s[0] - s[-1], FLOOR) if len(s) else s


def predict(pool: Pool, predictor: str = "zmax") -> np.ndarray:
    """``(r,)`` non-negative predictor values, one per list (see the module docstring)."""
    if predictor == "zmax":
        return zmax(pool)
    if predictor not in PREDICTORS:
        raise ValueError(f"unknown predictor {predictor!r}; choose from {PREDICTORS}")
    out = np.zeros(pool.scores.shape[0])
    for i in range(len(out)):
        s = _sorted_minmax(pool, i)
        if len(s) >= 2:
            out[i] = np.std(s[:10]) if predictor == "nqc" else s[0] - s[1]
    return out


def dispersion(pool: Pool, predictor: str = "zmax") -> np.ndarray:
    """Fused scores ``(u,)`` = sum_i w_i * z_i(d), w_i = p_i / sum_j p_j (equal when all p_i are 0)."""
    p = predict(pool, predictor)
    total = p.sum()
    w = p / total if total > 0 else np.full(len(p), 1.0 / len(p))
    return weighted(pool, weights=w.tolist(), normalization="z-score")
