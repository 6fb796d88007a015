"""Rerank any first-stage list with a query encoder against an index's fixed document vectors (CODER).

The first stage (BM25, a dense run, a hybrid) proposes candidates; each is re-scored as the inner
product of the query vector and the candidate's stored vector (ME-BERT: the max over its m rows),
read from the memory-mapped :class:`~pyserini_dense_ext.index.vectors.DocVectors`. The cost
beyond encoding the query is one gather and one small matrix product per batch of queries
(Zerveas et al. report ~5 ms/query on a GPU for 1000 candidates).

Against an index of passages ``docid#k`` (``encode --passages``), ``max_passage_delimiter="#"``
(``rerank --max-passage``) ranks documents by their best passage (MaxP): a document candidate
scores the maximum over all its passages in the index; a list of passage candidates is reranked
as passages, then folded into documents by Pyserini's ``--max-passage`` rule
(:func:`~pyserini_dense_ext.search.maxp.max_passage`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Container, Mapping, Sequence

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
from ..search.maxp import DELIMITER, max_passage
from .candidates import UnknownDocid, candidates_from_run, docids_to_ids
from .scoring import candidate_scores, max_row_scores, sort_by_score

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

    ``max_passage_delimiter`` (``'#'``; an index of passages ``docid#k``): rank documents by their best
    passage. Candidates that are documents score the maximum over all their passages in the index;
    candidates that are passages (their ids hold the delimiter) are reranked, then folded into documents
    (each at its best passage's score, Pyserini's ``--max-passage``); either way documents come out.
    """

    def __init__(self, index: str | Path | DocVectors, query_encoder: Any, vectors: str | Path | None = None,
                 vectors_cache: str | Path | None = None, family: str | None = None, device: str = "cpu",
                 batch_size: int = 64, progress: bool = False, max_passage_delimiter: str | None = None,
                 **encoder_overrides: Any):
        if isinstance(index, DocVectors):
            if max_passage_delimiter is not None and index.passage_delimiter != max_passage_delimiter:
                raise ValueError(f"the vectors of {index.source} were opened with passage delimiter "
                                 f"{index.passage_delimiter!r}, not {max_passage_delimiter!r}: open them with "
                                 f"open_doc_vectors(..., passage_delimiter={max_passage_delimiter!r})")
            self.vectors: DocVectors = index
        else:
            self.vectors = open_doc_vectors(index, vectors, vectors_cache, progress, max_passage_delimiter)
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

    @property
    def max_passage_delimiter(self) -> str | None:
        """The delimiter documents are cut at (MaxP), or None: candidates are the index's own ids."""
        return self.vectors.passage_delimiter

    def score(self, query_vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Float32 ``(n, C)`` scores of candidates ``ids`` (int, -1 padded; -inf there).

        One query at a time: its candidates' vectors (1000 x 384 floats is 1.5 MB) are gathered and
        multiplied while still in cache, which beat batching queries (larger, cache-missing gathers) here.
        Documents of different numbers of rows (passages) take the max over their own rows."""
        return self._score(self.vectors, query_vectors, ids)

    def _score(self, vectors: DocVectors, query_vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 2 or len(ids) != len(query_vectors):
            raise ValueError(f"need one row of candidate ids per query vector, got {ids.shape} for "
                             f"{len(query_vectors)} queries")
        if ids.size and (ids.max() >= vectors.num_docs or ids.min() < -1):
            raise ValueError(f"candidate ids must be in [-1, {vectors.num_docs}), got {ids.min()}..{ids.max()}")
        queries = torch.from_numpy(np.ascontiguousarray(query_vectors, dtype=np.float32))
        valid = torch.from_numpy(ids >= 0)
        out = np.empty(ids.shape, dtype=np.float32)
        start = time.perf_counter()
        with torch.inference_mode():
            for i in range(len(ids)):
                if vectors.uniform:
                    docs = torch.from_numpy(vectors.gather(ids[i]))[None]
                    out[i] = candidate_scores(queries[i:i + 1], docs, valid[i:i + 1])[0].numpy()
                else:
                    rows, segments = vectors.gather_rows(ids[i])
                    out[i] = max_row_scores(queries[i], torch.from_numpy(rows), torch.from_numpy(segments),
                                            ids.shape[1]).numpy()
        self._tick("rerank", start)
        return out

    def rerank_ids(self, query_vectors: np.ndarray, ids: np.ndarray, k: int | None = None) -> tuple[np.ndarray,
                                                                                                     np.ndarray]:
        """Candidates ``ids`` re-sorted by score, best first: ``(ids, scores)``, -1 / -inf padded, cut to ``k``."""
        return self._rank(self.vectors, query_vectors, ids, k)

    def _rank(self, vectors: DocVectors, query_vectors: np.ndarray, ids: np.ndarray, k: int | None) -> tuple[
            np.ndarray, np.ndarray]:
        scores = self._score(vectors, query_vectors, ids)
        start = time.perf_counter()
        ranked = sort_by_score(scores, np.asarray(ids), k)
        self._tick("rerank", start)
        return ranked

    # -- docids, Pyserini hits, runs -----------------------------------------------------------
    def vectors_for(self, lists: Sequence[Sequence[str]], source: object = "candidates") -> tuple[DocVectors, bool]:
        """Which vectors score these candidate lists, and whether their results fold into documents (MaxP):
        with a passage delimiter, lists of passages (ids holding it) are scored passage by passage and folded."""
        delimiter = self.max_passage_delimiter
        if delimiter is None:
            return self.vectors, False
        passage = next((d for row in lists for d in row if delimiter in d), None)
        if passage is None:
            return self.vectors, False
        whole = next((d for row in lists for d in row if delimiter not in d), None)
        if whole is not None:
            raise InputError(source, f"mixes passages ({passage!r}) and documents ({whole!r}): with "
                                     "--max-passage a run is reranked as documents or as passages", field="docid")
        return self.vectors.passage_vectors(), True

    def missing_hint(self, docid: str) -> str:
        """What to add to an unknown-docid error: a document whose passages the index holds needs MaxP."""
        if self.max_passage_delimiter is None and any(d.startswith(docid + DELIMITER) for d in self.vectors.docids):
            return (f"; the index holds its passages ({docid}{DELIMITER}k): --max-passage (max_passage_delimiter) "
                    "ranks documents by their best passage")
        return ""

    def known_ids(self) -> Container[str]:
        """Every id a candidate may have: the documents, and with a passage delimiter their passages too (the
        passages' index is built only when an id holding the delimiter is asked about)."""
        delimiter, docs = self.max_passage_delimiter, self.vectors.doc_index
        if delimiter is None:
            return docs
        vectors = self.vectors

        class Known:
            def __contains__(self, docid: object) -> bool:
                return docid in docs or (isinstance(docid, str) and delimiter in docid
                                         and docid in vectors.passage_vectors().doc_index)

        return Known()

    def _to_hits(self, vectors: DocVectors, ids: np.ndarray, scores: np.ndarray, fold: bool = False,
                 k: int | None = None) -> Hits:
        keep = ids >= 0
        names = vectors.docids
        docids, values = np.array([names[i] for i in ids[keep].tolist()], dtype=str), scores[keep].astype(np.float64)
        return max_passage(docids, values, k, self.max_passage_delimiter) if fold else (docids, values)

    def rerank(self, queries: Sequence[str], candidates: Sequence[Any], k: int | None = None) -> list[Hits]:
        """Each query's candidates (Pyserini hits, ``(docids, scores)`` arrays, ``[(docid, score)]`` or docids)
        re-scored: ``(docids, scores)`` arrays per query, best first (with MaxP: documents, at most ``k``)."""
        if len(queries) != len(candidates):
            raise ValueError(f"got {len(queries)} queries but {len(candidates)} candidate lists")
        lists = [_docids(c) for c in candidates]
        vectors, fold = self.vectors_for(lists, "candidates")
        try:
            ids = docids_to_ids(lists, vectors.doc_index)
        except UnknownDocid as e:
            raise InputError("candidates", f"docid {e.docid!r} (list {e.row}) is not in the dense index "
                                           f"{self.vectors.source}{self.missing_hint(e.docid)}", field="docid") from None
        ranked_ids, scores = self._rank(vectors, self.encode(queries), ids, None if fold else k)
        return [self._to_hits(vectors, i, s, fold, k) for i, s in zip(ranked_ids, scores)]

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
        """Rerank the top ``depth`` hits of every topic's list in ``run`` (queries without hits are left out), the
        best ``k`` written (with MaxP: ``k`` documents; ``depth`` counts the run's own hits, passages or
        documents)."""
        if depth is not None and depth < 1:
            raise ValueError(f"depth must be positive, got {depth}")
        qids = [q for q in topics if run.get(q)]
        vectors, fold = self.vectors_for([[d for d, _ in run[q][:depth]] for q in qids], source)
        candidates = candidates_from_run(run, vectors.doc_index, depth, qids, source, self.missing_hint)
        out: Run = {}
        with progress_bar(len(qids), "reranking", "query", enabled=progress) as bar:
            for lo in range(0, len(qids), chunk_queries):
                chunk = qids[lo:lo + chunk_queries]
                ids, scores = self._rank(vectors, self.encode([topics[q] for q in chunk]),
                                         candidates.ids[lo:lo + chunk_queries], None if fold else k)
                for qid, i, s in zip(chunk, ids, scores):
                    docids, values = self._to_hits(vectors, i, s, fold, k)
                    out[qid] = list(zip(docids.tolist(), values.tolist()))
                bar.update(len(chunk))
        return out
