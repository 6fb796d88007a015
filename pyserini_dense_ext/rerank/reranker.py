"""Rerank any first-stage list with a query encoder against an index's fixed document vectors (CODER).

The first stage (BM25, a dense run, a hybrid) proposes candidates; each is re-scored as the inner
product of the query vector and the candidate's stored vector (ME-BERT: the max over its m rows),
read from the memory-mapped :class:`~pyserini_dense_ext.index.vectors.DocVectors`. The cost
beyond encoding the query is one gather and one small matrix product per batch of queries
(Zerveas et al. report ~5 ms/query on a GPU for 1000 candidates).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from ..encoders import DenseQueryEncoder, Encoder
from ..index import INDEX_FILE
from ..index.vectors import DocVectors, open_doc_vectors
from ..io.errors import InputError
from ..io.runs import Run
from ..progress import progress_bar
from ..pyserini_compat import DenseSearchResult
from ..search.dense import adapt_query_encoder, load_index_query_encoder
from .candidates import UnknownDocid, candidates_from_run, docids_to_ids
from .scoring import candidate_scores, sort_by_score

Hits = tuple[np.ndarray, np.ndarray]  # (docids, scores), best first, as pyserini_dense_ext.fusion uses them


def _docids(hits: Any) -> list[str]:
    """Docids of one query's candidates: Pyserini hits (``.docid``), our ``(docids, scores)`` arrays,
    ``[(docid, score), ...]`` or plain docid strings."""
    if isinstance(hits, tuple) and len(hits) == 2 and isinstance(hits[0], np.ndarray):
        return [str(d) for d in hits[0]]
    return [h if isinstance(h, str) else h.docid if hasattr(h, "docid") else h[0] for h in hits]


class Reranker:
    """Re-score candidates with ``query_encoder`` against an index's document vectors (``index``: its dir, or
    :class:`DocVectors` already open).

    The encoder is a model dir or ONNX export (configured, as for search, by ``family`` and the overrides,
    then its own files, then the encoder config the index recorded), an :class:`Encoder` (a torch
    ``DenseModel``, an ONNX model) or any Pyserini ``QueryEncoder``.
    """

    def __init__(self, index: str | Path | DocVectors, query_encoder: Any, vectors: str | Path | None = None,
                 vectors_cache: str | Path | None = None, family: str | None = None, device: str = "cpu",
                 batch_size: int = 64, progress: bool = False, **encoder_overrides: Any):
        self.vectors: DocVectors = (index if isinstance(index, DocVectors)
                                    else open_doc_vectors(index, vectors, vectors_cache, progress))
        meta, source = self.vectors.meta, self.vectors.source
        if isinstance(query_encoder, (str, Path)):
            query_encoder = load_index_query_encoder(meta, source, query_encoder, family, device, batch_size,
                                                     encoder_overrides)
        elif isinstance(query_encoder, Encoder):
            query_encoder = DenseQueryEncoder(model=query_encoder, batch_size=batch_size)
        self.query_encoder = query_encoder
        self._encoding = adapt_query_encoder(meta, source, self.vectors.dim, query_encoder)
        self.timings: dict[str, float] = {}

    def _tick(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - start
        return now

    # -- arrays ------------------------------------------------------------------------------
    def encode(self, queries: Sequence[str]) -> np.ndarray:
        """Float32 ``(n, d)`` query vectors."""
        start = time.perf_counter()
        vectors = np.ascontiguousarray(self._encoding.encode(list(queries)), dtype=np.float32)
        self._tick("encode", start)
        if vectors.ndim != 2 or vectors.shape[1] != self.vectors.dim:
            raise InputError(self.vectors.source / INDEX_FILE, f"has dimension {self.vectors.dim} but the query "
                                                               f"encoder gave vectors of shape {vectors.shape}",
                             field="dim")
        return vectors

    def score(self, query_vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Float32 ``(n, C)`` scores of candidates ``ids`` (int, -1 padded; -inf there).

        One query at a time: its candidates' vectors (1000 x 384 floats is 1.5 MB) are gathered and
        multiplied while still in cache, which beat batching queries (larger, cache-missing gathers) here."""
        ids = np.asarray(ids)
        if ids.ndim != 2 or len(ids) != len(query_vectors):
            raise ValueError(f"need one row of candidate ids per query vector, got {ids.shape} for "
                             f"{len(query_vectors)} queries")
        if ids.size and (ids.max() >= self.vectors.num_docs or ids.min() < -1):
            raise ValueError(f"candidate ids must be in [-1, {self.vectors.num_docs}), got {ids.min()}..{ids.max()}")
        queries = torch.from_numpy(np.ascontiguousarray(query_vectors, dtype=np.float32))
        valid = torch.from_numpy(ids >= 0)
        out = np.empty(ids.shape, dtype=np.float32)
        start = time.perf_counter()
        with torch.inference_mode():
            for i in range(len(ids)):
                docs = torch.from_numpy(self.vectors.gather(ids[i]))[None]
                out[i] = candidate_scores(queries[i:i + 1], docs, valid[i:i + 1])[0].numpy()
        self._tick("rerank", start)
        return out

    def rerank_ids(self, query_vectors: np.ndarray, ids: np.ndarray, k: int | None = None) -> tuple[np.ndarray,
                                                                                                     np.ndarray]:
        """Candidates ``ids`` re-sorted by score, best first: ``(ids, scores)``, -1 / -inf padded, cut to ``k``."""
        scores = self.score(query_vectors, ids)
        start = time.perf_counter()
        ranked = sort_by_score(scores, np.asarray(ids), k)
        self._tick("rerank", start)
        return ranked

    # -- docids, Pyserini hits, runs -----------------------------------------------------------
    def _to_hits(self, ids: np.ndarray, scores: np.ndarray) -> Hits:
        keep = ids >= 0
        names = self.vectors.docids
        return np.array([names[i] for i in ids[keep].tolist()], dtype=str), scores[keep].astype(np.float64)

    def rerank(self, queries: Sequence[str], candidates: Sequence[Any], k: int | None = None) -> list[Hits]:
        """Each query's candidates (Pyserini hits, ``(docids, scores)`` arrays, ``[(docid, score)]`` or docids)
        re-scored: ``(docids, scores)`` arrays per query, best first."""
        if len(queries) != len(candidates):
            raise ValueError(f"got {len(queries)} queries but {len(candidates)} candidate lists")
        try:
            ids = docids_to_ids([_docids(c) for c in candidates], self.vectors.doc_index)
        except UnknownDocid as e:
            raise InputError("candidates", f"docid {e.docid!r} (list {e.row}) is not in the dense index "
                                           f"{self.vectors.source}", field="docid") from None
        ranked_ids, scores = self.rerank_ids(self.encode(queries), ids, k)
        return [self._to_hits(i, s) for i, s in zip(ranked_ids, scores)]

    def search(self, query: str, hits: Sequence[Any], k: int | None = None) -> list[DenseSearchResult]:
        """One query's first-stage hits (say ``LuceneSearcher.search(q, 1000)``) reranked, as Pyserini results."""
        docids, scores = self.rerank([query], [hits], k)[0]
        return [DenseSearchResult(d, s) for d, s in zip(docids.tolist(), scores.tolist())]

    def batch_search(self, queries: Sequence[str], q_ids: Sequence[str], hits: Mapping[str, Sequence[Any]],
                     k: int | None = None) -> dict[str, list[DenseSearchResult]]:
        """``batch_search``'s shape: ``hits[qid]`` (e.g. ``LuceneSearcher.batch_search``'s output) reranked."""
        if len(queries) != len(q_ids):
            raise ValueError(f"got {len(queries)} queries but {len(q_ids)} query ids")
        ranked = self.rerank(queries, [hits.get(q, []) for q in q_ids], k)
        return {q: [DenseSearchResult(d, s) for d, s in zip(docids.tolist(), scores.tolist())]
                for q, (docids, scores) in zip(q_ids, ranked)}

    def rerank_run(self, topics: Mapping[str, str], run: Run, depth: int | None = None, k: int | None = None,
                   source: str = "run", chunk_queries: int = 1024, progress: bool = True) -> Run:
        """Rerank the top ``depth`` hits of every topic's list in ``run`` (queries without hits are left out)."""
        if depth is not None and depth < 1:
            raise ValueError(f"depth must be positive, got {depth}")
        qids = [q for q in topics if run.get(q)]
        candidates = candidates_from_run(run, self.vectors.doc_index, depth, qids, source)
        out: Run = {}
        with progress_bar(len(qids), "reranking", "query", enabled=progress) as bar:
            for lo in range(0, len(qids), chunk_queries):
                chunk = qids[lo:lo + chunk_queries]
                ids, scores = self.rerank_ids(self.encode([topics[q] for q in chunk]),
                                              candidates.ids[lo:lo + chunk_queries], k)
                for qid, i, s in zip(chunk, ids, scores):
                    docids, values = self._to_hits(i, s)
                    out[qid] = list(zip(docids.tolist(), values.tolist()))
                bar.update(len(chunk))
        return out
