"""The pooled view of one query's ranked lists that every fusion method scores, and the final sort.

A fusion method sees the union of the documents of r ranked lists as a sorted docid array and
two ``(r, u)`` float64 matrices: each list's score (NaN where the list lacks the document) and
its 1-based rank (+inf where it lacks it). Keeping the union sorted by docid makes the tie-break
free: a stable sort on the fused score alone leaves equal scores in docid order.

A list's ranks come from its scores, ties by docid, not from the order it arrives in: that is the
order :func:`~pyserini_dense_ext.io.runs.read_run` gives a run file, so fusing a searcher's lists in
memory and fusing the run files they were written to give one answer (FAISS and Lucene return tied
documents in index order, which a run file does not keep).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

Ranking = list[tuple[str, float]]
Hits = tuple[np.ndarray, np.ndarray]  # (docids: str array, scores: float array), best first


@dataclass(frozen=True)
class Pool:
    """One query's ranked lists merged over the union of their documents."""

    docids: np.ndarray  # (u,) unique docids, sorted ascending
    scores: np.ndarray  # (r, u) float64, NaN where list i did not return the document
    ranks: np.ndarray   # (r, u) float64, 1-based rank in list i, +inf where absent

    @property
    def present(self) -> np.ndarray:
        """(r, u) bool: list i returned document j."""
        return ~np.isnan(self.scores)


def as_hits(ranking: Ranking) -> Hits:
    """``[(docid, score), ...]`` as arrays (docids as a numpy str array, scores float64)."""
    if not ranking:
        return np.array([], dtype=str), np.array([], dtype=np.float64)
    docids, scores = zip(*ranking)
    return np.array(docids, dtype=str), np.array(scores, dtype=np.float64)


def pool(lists: Sequence[Hits], qid: str | None = None) -> Pool:
    """Merge ranked lists over the union of their docids; each list is ranked by score, ties by docid.

    A list naming a document twice is an error, not something to guess about: which score counts?
    """
    sizes = [len(d) for d, _ in lists]
    all_ids = np.concatenate([np.asarray(d, dtype=str) for d, _ in lists]) if lists else np.array([], dtype=str)
    docids, inverse = np.unique(all_ids, return_inverse=True)
    u = len(docids)
    scores = np.full((len(lists), u), np.nan)
    ranks = np.full((len(lists), u), np.inf)
    start = 0
    for i, ((_, s), n) in enumerate(zip(lists, sizes)):
        slots = inverse[start:start + n]
        start += n
        if n and np.bincount(slots, minlength=u).max() > 1:
            dup = str(docids[np.flatnonzero(np.bincount(slots, minlength=u) > 1)[0]])
            where = f" for query {qid!r}" if qid is not None else ""
            raise ValueError(f"ranked list {i + 1} holds docid {dup!r} more than once{where}")
        s = np.asarray(s, dtype=np.float64)
        if n and not np.isfinite(s).all():
            raise ValueError(f"ranked list {i + 1} holds a score that is not a finite number"
                             + (f" for query {qid!r}" if qid is not None else ""))
        scores[i, slots] = s
        ranks[i, slots[np.lexsort((slots, -s))]] = np.arange(1, n + 1)  # slots ascend with docid
    return Pool(docids, scores, ranks)


def top_k(docids: np.ndarray, fused: np.ndarray, k: int | None = None) -> Hits:
    """Sort by fused score, best first, ties by docid (``docids`` is sorted, the sort stable)."""
    order = np.argsort(-fused, kind="stable")
    if k is not None:
        order = order[:k]
    return docids[order], fused[order]


def to_ranking(hits: Hits) -> Ranking:
    docids, scores = hits
    return list(zip(docids.tolist(), scores.tolist()))
