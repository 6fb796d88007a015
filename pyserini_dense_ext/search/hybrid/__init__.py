"""Sparse + dense hybrid search: Pyserini's ``HybridSearcher`` interface with every fusion method.

``HybridSearcher(dense_searcher, sparse_searcher)`` takes any of our ``DenseSearcher`` dirs
(flat, HNSW, ME-BERT multi-vector) or a Pyserini ``FaissSearcher``, and a Pyserini
``LuceneSearcher`` (BM25 over plain or docT5query-expanded text) or any other Pyserini sparse
searcher. ``search``/``batch_search`` keep Pyserini's arguments and defaults (``k0``, ``k``,
``alpha``, ``normalization``, ``weight_on_dense``) and add ``fusion=`` (see
``pyserini_dense_ext.fusion.METHODS``): with ``fusion="linear"`` the scores are Pyserini's
(``normalization=True`` is its centred normalisation), without its division by zero.

The batch path never builds a Python object per intermediate hit: all queries are encoded in
one batched call and searched with one FAISS call, BM25 runs on Lucene threads and comes back
as arrays (:mod:`.sparse`), and each query is fused with numpy.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np
from pyserini.search.faiss import DenseSearchResult
from tqdm.auto import tqdm

from ...fusion import METHODS, Hits, check_params, fuse_hits, get_method
from ...io.runs import Run
from .sparse import ArraySparse, HitsSparse, sparse_backend


def fusion_params(fusion: str, alpha: float | None = None, normalization: bool | str | None = None,
                  weight_on_dense: bool = False, **extra: Any) -> dict[str, Any]:
    """Map Pyserini-style arguments onto what method ``fusion`` takes.

    ``alpha=None`` and ``normalization=None`` mean the method's own default; ``normalization``
    ``True``/``False`` are Pyserini's flag (centred / none). Passing a setting the method does
    not use (alpha to RRF, say) is an error rather than silently ignored.
    """
    takes = get_method(fusion).defaults
    params = dict(extra)
    if alpha is not None:
        params["alpha"] = alpha
    if normalization is not None:
        if isinstance(normalization, bool):
            normalization = "centred" if normalization else "none"
        params["normalization"] = normalization
    if weight_on_dense:
        params["weight_on_dense"] = True
    if "normalization" in params and "normalization" not in takes and params["normalization"] == "none":
        del params["normalization"]  # Pyserini's default False means "no normalisation": true of rank methods
    unknown = sorted(set(params) - set(takes))
    if unknown:
        raise ValueError(f"fusion method {fusion!r} does not take {unknown}; it takes {sorted(takes) or 'nothing'}")
    check_params(fusion, params)
    return params


class HybridSearcher:
    """Fuse a dense searcher's and a sparse searcher's top-k0 lists per query (sparse first, dense second)."""

    def __init__(self, dense_searcher: Any, sparse_searcher: Any):
        self.dense_searcher = dense_searcher
        self.sparse_searcher = sparse_searcher
        self._sparse: ArraySparse | HitsSparse = sparse_backend(sparse_searcher)
        self._dense_ids: np.ndarray | None = None
        self.timings: dict[str, float] = {}

    # -- the two retrievers, as arrays ---------------------------------------------------------
    def _tick(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - start
        return now

    def dense_hits(self, queries: Sequence[str], k0: int, threads: int = 1) -> list[Hits]:
        """Top-k0 (docids, scores) per query; our searchers take the array path, others their batch_search."""
        dense = self.dense_searcher
        start = time.perf_counter()
        if not hasattr(dense, "search_vectors"):
            qids = [str(i) for i in range(len(queries))]
            results = dense.batch_search(list(queries), qids, k0, threads)
            self._tick("dense", start)
            return [(np.array([h.docid for h in results[q]], dtype=str),
                     np.array([h.score for h in results[q]], dtype=np.float64)) for q in qids]
        vectors = dense.encode_queries(list(queries))
        start = self._tick("encode", start)
        scores, docs = dense.search_vectors(vectors, k0, threads)
        if self._dense_ids is None:
            self._dense_ids = np.asarray(dense.docids, dtype=str)
        out = []
        for s, d in zip(scores, docs):
            keep = d >= 0
            out.append((self._dense_ids[d[keep]], s[keep].astype(np.float64)))
        self._tick("dense", start)
        return out

    def sparse_hits(self, queries: Sequence[str], k0: int, threads: int = 1) -> list[Hits]:
        start = time.perf_counter()
        out = self._sparse.batch_hits(queries, k0, threads)
        self._tick("sparse", start)
        return out

    # -- fused search --------------------------------------------------------------------------
    def search_hits(self, queries: Sequence[str], k0: int = 10, k: int = 10, threads: int = 1,
                    fusion: str = "linear", qids: Sequence[str] | None = None, **params: Any) -> list[Hits]:
        """Fused (docids, scores) per query, best first, ties by docid; ``params`` as the method takes them."""
        if k0 < 1 or k < 1:
            raise ValueError(f"k0 and k must be positive, got k0={k0}, k={k}")
        check_params(fusion, params)
        queries = list(queries)
        dense = self.dense_hits(queries, k0, threads)
        sparse = self.sparse_hits(queries, k0, threads)
        start = time.perf_counter()
        names = qids if qids is not None else [None] * len(queries)
        fused = [fuse_hits([s, d], fusion, k, qid=q, **params) for s, d, q in zip(sparse, dense, names)]
        self._tick("fuse", start)
        return fused

    def search(self, query: str, k0: int = 10, k: int = 10, alpha: float | None = None,
               normalization: bool | str | None = None, weight_on_dense: bool = False, fusion: str = "linear",
               **fusion_options: Any) -> list[DenseSearchResult]:
        """One query, as Pyserini's ``HybridSearcher.search``."""
        params = fusion_params(fusion, alpha, normalization, weight_on_dense, **fusion_options)
        docids, scores = self.search_hits([query], k0, k, 1, fusion, **params)[0]
        return [DenseSearchResult(d, s) for d, s in zip(docids.tolist(), scores.tolist())]

    def batch_search(self, queries: Sequence[str], q_ids: Sequence[str], k0: int = 10, k: int = 10,
                     threads: int = 1, alpha: float | None = None, normalization: bool | str | None = None,
                     weight_on_dense: bool = False, fusion: str = "linear",
                     **fusion_options: Any) -> dict[str, list[DenseSearchResult]]:
        """Pyserini's ``HybridSearcher.batch_search``, same arguments, plus ``fusion``."""
        if len(queries) != len(q_ids):
            raise ValueError(f"got {len(queries)} queries but {len(q_ids)} query ids")
        params = fusion_params(fusion, alpha, normalization, weight_on_dense, **fusion_options)
        fused = self.search_hits(queries, k0, k, threads, fusion, qids=q_ids, **params)
        return {qid: [DenseSearchResult(d, s) for d, s in zip(docids.tolist(), scores.tolist())]
                for qid, (docids, scores) in zip(q_ids, fused)}

    def search_run(self, topics: Mapping[str, str], k0: int = 1000, k: int = 1000, threads: int = 1,
                   fusion: str = "linear", chunk_size: int = 512, progress: bool = True, **params: Any) -> Run:
        """Every topic, in chunks with a progress bar; ``params`` as the method takes them. Returns a Run."""
        check_params(fusion, params)
        qids, texts = list(topics), list(topics.values())
        run: Run = {}
        with tqdm(total=len(qids), desc=f"hybrid search ({fusion})", unit="query", disable=not progress) as bar:
            for start in range(0, len(qids), chunk_size):
                chunk = slice(start, start + chunk_size)
                for qid, (docids, scores) in zip(qids[chunk], self.search_hits(texts[chunk], k0, k, threads, fusion,
                                                                                 qids=qids[chunk], **params)):
                    run[qid] = list(zip(docids.tolist(), scores.tolist()))
                bar.update(len(texts[chunk]))
        return run


__all__ = ["METHODS", "HybridSearcher", "fusion_params"]
