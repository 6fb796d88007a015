"""Score candidates against fixed document vectors: the one scoring function of reranking and CODER training."""
from __future__ import annotations

import numpy as np
import torch


def candidate_scores(queries: torch.Tensor, docs: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Query ``(B, d)`` against its candidates' vectors ``(B, C, m, d)``: ``(B, C)`` scores.

    A document's score is the maximum inner product over its m rows (ME-BERT, Luan et al. 2021;
    m = 1 is the plain dot product of RepBERT and TCT-ColBERT). One batched matrix product,
    differentiable in ``queries`` (CODER trains the query encoder through it). Where ``valid``
    is False (padding) the score is -inf.
    """
    b, c, m, d = docs.shape
    scores = torch.bmm(docs.reshape(b, c * m, d), queries.unsqueeze(-1)).reshape(b, c, m)
    scores = scores[..., 0] if m == 1 else scores.amax(-1)
    return scores if valid is None else scores.masked_fill(~valid, float("-inf"))


def max_row_scores(query: torch.Tensor, rows: torch.Tensor, segments: torch.Tensor, n: int) -> torch.Tensor:
    """One query ``(d,)`` against ``n`` candidates whose rows vary in number (passages, MaxP): ``(n,)`` scores.

    ``rows`` ``(R, d)`` are all the candidates' rows together, ``segments`` ``(R,)`` the candidate each belongs
    to (:meth:`~pyserini_dense_ext.index.vectors.DocVectors.gather_rows`). A candidate's score is the maximum
    inner product over its rows, as :func:`candidate_scores` takes it over m; one with no rows (padding) scores
    -inf. One matrix-vector product and one scatter, however the rows are spread.
    """
    scores = rows @ query
    return torch.full((n,), float("-inf"), dtype=scores.dtype).scatter_reduce(0, segments, scores, "amax")


def sort_by_score(scores: np.ndarray, ids: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row best first (a stable sort: ties keep first-stage order); padding (-inf) goes last.

    Returns ``(ids, scores)`` cut to ``k`` columns."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)
