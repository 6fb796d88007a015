"""Dense search over our index dirs (and Pyserini's), single- and multi-vector.

``DenseSearcher`` answers Pyserini's ``FaissSearcher`` calls (``search``, ``batch_search``,
returning ``DenseSearchResult``) and adds array-level methods the CLIs and the hybrid searcher
use to skip building one Python object per hit. For ME-BERT dirs (m rows per document) a
document's score is its best row: with m rows per document, the top k*m rows always hold at
least k distinct documents, and the first time a document appears in the ranked rows is its
maximum, so searching k*m rows and keeping first occurrences is exact on a flat index.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import faiss
import numpy as np

from ..encoders import DenseQueryEncoder, EncoderConfig, load_query_encoder
from ..index import INDEX_FILE, read_index_dir
from ..io.errors import InputError
from ..io.runs import Run
from ..progress import progress_bar
from ..pyserini_compat import DenseSearchResult, QueryEncoder
from .index_config import check_family, index_config, query_encoder_settings


@dataclass(frozen=True)
class QueryEncoding:
    """A Pyserini ``QueryEncoder`` as the searchers use it, adapted once when the searcher is built.

    ``encode`` gives float32 ``(n, d)``; ``dim`` and ``config`` are known for our encoders (None for
    other Pyserini encoders, whose width is checked on the first vectors).
    """

    encode: Callable[[list[str]], np.ndarray]
    dim: int | None = None
    config: EncoderConfig | None = None

    @classmethod
    def of(cls, encoder: QueryEncoder) -> "QueryEncoding":
        if isinstance(encoder, DenseQueryEncoder):
            return cls(encoder.encode_batch, encoder.dim if encoder.has_model else None,
                       encoder.config if encoder.has_model else None)
        # Pyserini's batching encoders (Auto, TCT-ColBERT, ...) declare encode_batch; the others encode one by one.
        batch = getattr(encoder, "encode_batch", None)
        if callable(batch):
            return cls(batch)
        return cls(lambda queries: np.stack([np.asarray(encoder.encode(q)).reshape(-1) for q in queries]))


@contextlib.contextmanager
def faiss_threads(threads: int | None) -> Iterator[None]:
    """FAISS's OpenMP thread count for one call, restored afterwards.

    FAISS and torch share one OpenMP runtime, so a count left behind would also change torch's
    thread count, and with it the summation order and the last bits of every later query vector
    (on near-tied scores that reorders hits between two searches of the same query).
    """
    if not threads:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def first_occurrences(doc_rows: np.ndarray, k: int) -> np.ndarray:
    """Column positions of each document's first (best) appearance, in rank order, at most k.

    ``doc_rows`` is one query's ranked document indices (-1 for empty slots).
    """
    valid = np.flatnonzero(doc_rows >= 0)
    _, first = np.unique(doc_rows[valid], return_index=True)
    return valid[np.sort(first)[:k]]


class DenseSearcher:
    """Search a FAISS index dir with a query encoder (a model dir, an ONNX export or a Pyserini encoder).

    A model dir or export given as a path is configured by ``family`` and ``encoder_overrides``, then its own
    files, then the encoder config the index recorded (see :mod:`.index_config`).
    """

    def __init__(self, index_dir: str | Path, query_encoder: QueryEncoder | str | Path | None = None,
                 family: str | None = None, device: str = "cpu", ef_search: int | None = None,
                 batch_size: int = 64, **encoder_overrides: Any):
        self.index_dir = Path(index_dir)
        self.index, row_docids, self.meta = read_index_dir(self.index_dir)
        positions: dict[str, int] = {}
        self.row_doc = np.fromiter((positions.setdefault(d, len(positions)) for d in row_docids), dtype=np.int64,
                                   count=len(row_docids))
        self.docids: list[str] = list(positions)
        self.rows_per_doc = max(1, int(np.bincount(self.row_doc).max())) if len(self.row_doc) else 1
        self._hnsw = isinstance(faiss.downcast_index(self.index), faiss.IndexHNSW)
        if ef_search is not None and ef_search < 1:
            raise ValueError(f"ef_search must be positive, got {ef_search}")
        self.ef_search = ef_search  # None: the index's own (stored at build), raised to the rows asked for
        if isinstance(query_encoder, (str, Path)):
            query_encoder = self.load_query_encoder(query_encoder, family, device, batch_size, encoder_overrides)
        self.set_query_encoder(query_encoder)

    def load_query_encoder(self, path: str | Path, family: str | None = None, device: str = "cpu",
                           batch_size: int = 64, overrides: Mapping[str, Any] | None = None) -> DenseQueryEncoder:
        """The query encoder at ``path``, configured by ``family`` and ``overrides``, then its own files, then the
        encoder config this index recorded."""
        family, settings = query_encoder_settings(self.meta, self.index_dir, path, family, overrides or {})
        return load_query_encoder(path, family=family, device=device, batch_size=batch_size, **settings)

    def set_query_encoder(self, query_encoder: QueryEncoder | None) -> None:
        """Search with ``query_encoder`` (adapted once); one of another family or dimension is an error."""
        self.query_encoder = query_encoder
        self._encoding = QueryEncoding.of(query_encoder) if query_encoder is not None else None
        if self._encoding is None:
            return
        recorded = index_config(self.meta, self.index_dir)
        if recorded is not None and self._encoding.config is not None:
            check_family(recorded, self.index_dir, self._encoding.config.family, "the query encoder's family")
        if self._encoding.dim is not None and self._encoding.dim != self.index.d:
            raise InputError(self.index_dir / INDEX_FILE, f"has dimension {self.index.d} but the query encoder "
                                                          f"gives {self._encoding.dim}-dim vectors", field="dim")

    @property
    def dimension(self) -> int:
        return int(self.index.d)

    @property
    def passages(self) -> dict[str, Any] | None:
        """How documents were split when the rows are passages ``docid#k`` (see ``search.maxp``), else None."""
        return self.meta.passages

    @property
    def num_docs(self) -> int:
        return len(self.docids)

    @property
    def corpus(self) -> str | None:
        """Fingerprint of the documents indexed, when the dir records it."""
        return self.meta.corpus

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Float32 ``(n, d)`` query vectors, batched when the encoder can batch."""
        if self._encoding is None:
            raise ValueError("this searcher has no query encoder: pass query vectors instead of texts")
        vectors = np.ascontiguousarray(self._encoding.encode(list(queries)), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.index.d:
            raise InputError(self.index_dir / INDEX_FILE, f"has dimension {self.index.d} but the query encoder "
                                                          f"gave vectors of shape {vectors.shape}", field="dim")
        return vectors

    def search_vectors(self, vectors: np.ndarray, k: int, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k documents per query vector: float32 scores and int64 document indices ``(n, k)``, -1 padded."""
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None]
        if vectors.ndim != 2 or vectors.shape[1] != self.index.d:  # never reshape a wrong width into more queries
            raise InputError(self.index_dir / INDEX_FILE, f"has dimension {self.index.d} but the query vectors have "
                                                          f"shape {vectors.shape}", field="dim")
        if not np.isfinite(vectors).all():
            raise ValueError("query vectors hold NaN or infinite values")
        rows_k = min(k * self.rows_per_doc, self.index.ntotal)
        with faiss_threads(threads):
            scores, rows = self.index.search(vectors, rows_k, params=self._search_params(rows_k))
        docs = np.where(rows >= 0, self.row_doc[np.maximum(rows, 0)], -1)
        out_scores = np.full((len(vectors), k), -np.inf, dtype=np.float32)
        out_docs = np.full((len(vectors), k), -1, dtype=np.int64)
        if self.rows_per_doc == 1:
            width = min(k, rows_k)
            out_scores[:, :width], out_docs[:, :width] = scores[:, :width], docs[:, :width]
            return out_scores, out_docs
        for i in range(len(vectors)):
            keep = first_occurrences(docs[i], k)
            out_scores[i, :len(keep)], out_docs[i, :len(keep)] = scores[i, keep], docs[i, keep]
        return out_scores, out_docs

    def _search_params(self, rows_k: int) -> faiss.SearchParameters | None:
        """HNSW: search with ``ef_search`` if given, else ``max(the index's efSearch, rows_k)``. FAISS itself
        searches with its efSearch whatever k is, so a top-1000 at efSearch 16 would miss most of it."""
        if not self._hnsw:
            return None
        stored = faiss.downcast_index(self.index).hnsw.efSearch
        return faiss.SearchParametersHNSW(efSearch=self.ef_search or max(stored, rows_k))

    def to_ranking(self, scores: np.ndarray, docs: np.ndarray) -> list[tuple[str, float]]:
        """One query's arrays as ``[(docid, score), ...]``."""
        return [(self.docids[d], float(s)) for s, d in zip(scores.tolist(), docs.tolist()) if d >= 0]

    def search(self, query: str | np.ndarray, k: int = 10, threads: int | None = None) -> list[DenseSearchResult]:
        vectors = self.encode_queries([query]) if isinstance(query, str) else query
        scores, docs = self.search_vectors(vectors, k, threads)
        return [DenseSearchResult(d, s) for d, s in self.to_ranking(scores[0], docs[0])]

    def batch_search(self, queries: Sequence[str] | np.ndarray, q_ids: Sequence[str], k: int = 10,
                     threads: int | None = None) -> dict[str, list[DenseSearchResult]]:
        """Pyserini's ``FaissSearcher.batch_search``: all queries encoded at once, one FAISS search."""
        vectors = queries if isinstance(queries, np.ndarray) else self.encode_queries(queries)
        scores, docs = self.search_vectors(vectors, k, threads)
        return {qid: [DenseSearchResult(d, s) for d, s in self.to_ranking(scores[i], docs[i])]
                for i, qid in enumerate(q_ids)}

    def search_run(self, topics: Mapping[str, str], k: int = 1000, threads: int | None = None,
                   chunk_size: int = 256, progress: bool = True) -> Run:
        """Search every topic, in chunks of queries with a progress bar; returns a Run."""
        qids, texts = list(topics), list(topics.values())
        run: Run = {}
        with progress_bar(len(qids), "dense search", "query", progress) as bar:
            for start in range(0, len(qids), chunk_size):
                chunk = slice(start, start + chunk_size)
                scores, docs = self.search_vectors(self.encode_queries(texts[chunk]), k, threads)
                for qid, s, d in zip(qids[chunk], scores, docs):
                    run[qid] = self.to_ranking(s, d)
                bar.update(len(scores))
        return run
