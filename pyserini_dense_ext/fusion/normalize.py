"""Per-list score normalisation, kept apart from fusing (as in ranx).

Each normaliser maps a list's scores s to (s - shift) / scale, with shift and scale taken from
that list's own hits, so it is increasing and affine: the list's minimum stays its minimum,
which is what min-fill relies on. A zero range or spread (one hit, or all scores equal) is
floored at 1e-9 instead of dividing by zero, as Pyserini's ``HybridSearcher`` does.

- ``none``: raw scores.
- ``min-max``: (s - min) / (max - min), into [0, 1].
- ``z-score``: (s - mean) / std (population std).
- ``centred``: (s - (min + max) / 2) / (max - min), into [-0.5, 0.5]: what Pyserini's
  ``HybridSearcher`` computes with ``normalization=True``, written in its order of operations
  so the float64 results are bit-identical.
"""
from __future__ import annotations

import numpy as np

FLOOR = 1e-9
NORMALIZATIONS = ("none", "min-max", "z-score", "centred")


def shift_scale(scores: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (shift, scale) of an ``(r, u)`` score matrix with NaN for absent documents, ``(r,)`` each.

    A row with no scores at all gets Pyserini's stand-ins (min 0, max 1; mean 0, std 1), so
    the value it fills in for missing documents matches Pyserini's too.
    """
    present = ~np.isnan(scores)
    empty = ~present.any(axis=1)
    r = scores.shape[0]
    if method == "none":
        return np.zeros(r), np.ones(r)
    with np.errstate(all="ignore"):
        if method in ("min-max", "centred"):
            lo = np.where(empty, 0.0, np.nanmin(np.where(present, scores, np.inf), axis=1))
            hi = np.where(empty, 1.0, np.nanmax(np.where(present, scores, -np.inf), axis=1))
            scale = np.maximum(hi - lo, FLOOR)
            return (lo if method == "min-max" else (lo + hi) / 2), scale
        if method == "z-score":
            count = np.maximum(present.sum(axis=1), 1)
            mean = np.where(empty, 0.0, np.where(present, scores, 0.0).sum(axis=1) / count)
            var = np.where(present, (scores - mean[:, None]) ** 2, 0.0).sum(axis=1) / count
            return mean, np.where(empty, 1.0, np.maximum(np.sqrt(var), FLOOR))
    raise ValueError(f"unknown normalisation {method!r}; choose from {NORMALIZATIONS}")


def normalize(scores: np.ndarray, method: str) -> np.ndarray:
    """Normalise each row of an ``(r, u)`` matrix over its present (non-NaN) scores; NaN stays NaN."""
    shift, scale = shift_scale(scores, method)
    if method == "none":
        return scores
    return (scores - shift[:, None]) / scale[:, None]


def normalize_list(scores: np.ndarray, method: str) -> np.ndarray:
    """One list's scores, 1-D."""
    return normalize(np.asarray(scores, dtype=np.float64)[None, :], method)[0]
