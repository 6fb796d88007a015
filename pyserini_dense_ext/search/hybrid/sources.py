"""The two sides of a hybrid as per-query ranked arrays, whatever searcher each side is.

:class:`HybridSearcher` is given Pyserini-style searchers (anything with ``batch_search``) and
adapts each once, when it is built, to a :class:`HitSource`: our dense searchers take the array
path (:class:`VectorHits`: one batched encode, one FAISS search, no object per hit), a plain
``LuceneSearcher`` the array BM25 path (:class:`~.sparse.ArraySparse`), and any other searcher
its own ``batch_search`` (:class:`BatchSearchHits`).
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from ...fusion.base import Hits
from ..dense import DenseSearcher
from ..shards import ShardedSearcher


class Hit(Protocol):
    docid: str
    score: float


class BatchSearcher(Protocol):
    """Pyserini's searcher interface (``LuceneSearcher``, ``FaissSearcher``, our ``DenseSearcher``)."""

    def batch_search(self, queries: list[str], q_ids: list[str], k: int = 10,
                     threads: int = 1) -> Mapping[str, Sequence[Hit]]: ...


class HitSource(Protocol):
    """One side of a hybrid: ``encode`` the query texts (a no-op where the searcher does it), then ``hits``."""

    def encode(self, queries: Sequence[str]) -> Any: ...

    def hits(self, encoded: Any, k: int, threads: int = 1) -> list[Hits]:
        """Per query (docids, float64 scores), best first."""


class BatchSearchHits:
    """Any searcher through its own ``batch_search`` (hit objects read one by one)."""

    def __init__(self, searcher: BatchSearcher):
        self.searcher = searcher

    def encode(self, queries: Sequence[str]) -> list[str]:
        return list(queries)

    def hits(self, encoded: list[str], k: int, threads: int = 1) -> list[Hits]:
        qids = [str(i) for i in range(len(encoded))]
        results = self.searcher.batch_search(encoded, qids, k=k, threads=threads)
        return [(np.array([h.docid for h in results.get(q, [])], dtype=str),
                 np.array([h.score for h in results.get(q, [])], dtype=np.float64)) for q in qids]


class VectorHits:
    """Our dense searchers: all queries encoded in one batched call, one FAISS search, arrays throughout."""

    def __init__(self, searcher: DenseSearcher | ShardedSearcher):
        self.searcher = searcher
        self.docids = np.asarray(searcher.docids, dtype=str)

    def encode(self, queries: Sequence[str]) -> np.ndarray:
        return self.searcher.encode_queries(list(queries))

    def hits(self, encoded: np.ndarray, k: int, threads: int = 1) -> list[Hits]:
        scores, docs = self.searcher.search_vectors(encoded, k, threads)
        keep = docs >= 0
        return [(self.docids[d[m]], s[m].astype(np.float64)) for s, d, m in zip(scores, docs, keep)]


def dense_source(searcher: BatchSearcher) -> HitSource:
    """The array path for our searchers, ``batch_search`` for any other (a Pyserini ``FaissSearcher``)."""
    if isinstance(searcher, (DenseSearcher, ShardedSearcher)):
        return VectorHits(searcher)
    return BatchSearchHits(searcher)
