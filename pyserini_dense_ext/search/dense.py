"""Dense search over our index dirs (and Pyserini's), single- and multi-vector.

``DenseSearcher`` answers Pyserini's ``FaissSearcher`` calls (``search``, ``batch_search``,
returning ``DenseSearchResult``) and adds array-level methods the CLIs and the hybrid searcher
use to skip building one Python object per hit. For ME-BERT dirs (m rows per document) a
document's score is its best row: with m rows per document, the top k*m rows always hold at
least k distinct documents, and the first time a document appears in the ranked rows is its
maximum, so searching k*m rows and keeping first occurrences is exact on a flat index.

Flat and flat-fp16 indexes are scanned by :mod:`.flat` (a blocked matrix multiply into FAISS's
heaps) whenever that beats FAISS's own search (:func:`.flat.scan_wins`); ME-BERT rows stored
together (m adjacent rows per document, as our encode writes them) are folded to documents in
the same pass. With ``mmap=True`` such an index is not loaded but mapped a window at a time, so
an index larger than memory can be searched.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import faiss
import numpy as np

from ..encoders import DenseQueryEncoder, EncoderConfig, load_query_encoder
from ..index import INDEX_FILE, IndexMeta, read_index_dir
from ..index.flat_file import MappedFlat
from ..io.errors import InputError
from ..io.runs import Run
from ..progress import progress_bar
from ..pyserini_compat import DenseSearchResult, QueryEncoder
from . import flat
from .results import gc_paused, hit_list
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


def load_index_query_encoder(meta: IndexMeta, index_dir: str | Path, path: str | Path, family: str | None = None,
                             device: str = "cpu", batch_size: int = 64,
                             overrides: Mapping[str, Any] | None = None, backend: str = "auto",
                             precision: str = "fp32") -> DenseQueryEncoder:
    """The query encoder at ``path`` for this index: ``family`` and ``overrides`` (flags), then its own files,
    then the encoder config the index recorded (:mod:`.index_config`); a model dir's cached ONNX export when
    ``backend`` allows it (:func:`~pyserini_dense_ext.onnx.cache.query_encoder_source`)."""
    from ..onnx.cache import query_encoder_source

    family, settings = query_encoder_settings(meta, index_dir, path, family, overrides or {})
    path, family, settings = query_encoder_source(path, family, settings, device, backend, precision)
    return load_query_encoder(path, family=family, device=device, batch_size=batch_size, **settings)


def adapt_query_encoder(meta: IndexMeta, index_dir: str | Path, dim: int, query_encoder: QueryEncoder) -> QueryEncoding:
    """``query_encoder`` adapted once for an index of ``dim``-dim vectors; another family than the index
    recorded, or another dimension, is an error naming the index."""
    encoding = QueryEncoding.of(query_encoder)
    recorded = index_config(meta, index_dir)
    if recorded is not None and encoding.config is not None:
        check_family(recorded, index_dir, encoding.config.family, "the query encoder's family")
    if encoding.dim is not None and encoding.dim != dim:
        raise InputError(Path(index_dir) / INDEX_FILE, f"has dimension {dim} but the query encoder gives "
                                                       f"{encoding.dim}-dim vectors", field="dim")
    return encoding


def first_occurrences(doc_rows: np.ndarray, k: int) -> np.ndarray:
    """Column positions of each document's first (best) appearance, in rank order, at most k.

    ``doc_rows`` is one query's ranked document indices (-1 for empty slots).
    """
    valid = np.flatnonzero(doc_rows >= 0)
    _, first = np.unique(doc_rows[valid], return_index=True)
    return valid[np.sort(first)[:k]]


def _documents(row_docids: list[str], num_docs: int) -> tuple[list[str], np.ndarray]:
    """Distinct docids in first-row order, and each row's document number.

    The layouts our encode writes (one row per document, or m adjacent rows per document) are
    recognised by list comparisons, without a docid-to-number dict (~100 bytes a document).
    """
    n = len(row_docids)
    m = n // num_docs if num_docs else 1
    if num_docs * m == n and all(row_docids[j::m] == row_docids[0::m] for j in range(1, m)):
        docids = row_docids if m == 1 else row_docids[0::m]
        if len(docids) == num_docs:  # read_index_dir checked that the dir names num_docs distinct documents
            return docids, np.arange(n, dtype=np.int64) // m
    positions: dict[str, int] = {}
    row_doc = np.fromiter((positions.setdefault(d, len(positions)) for d in row_docids), dtype=np.int64, count=n)
    return list(positions), row_doc


class DenseSearcher:
    """Search a FAISS index dir with a query encoder (a model dir, an ONNX export or a Pyserini encoder).

    A model dir or export given as a path is configured by ``family`` and ``encoder_overrides``, then its own
    files, then the encoder config the index recorded (see :mod:`.index_config`).
    """

    def __init__(self, index_dir: str | Path, query_encoder: QueryEncoder | str | Path | None = None,
                 family: str | None = None, device: str = "cpu", ef_search: int | None = None,
                 batch_size: int = 64, mmap: bool = False, backend: str = "auto", precision: str = "fp32",
                 **encoder_overrides: Any):
        self.index_dir = Path(index_dir)
        self.index, row_docids, self.meta = read_index_dir(self.index_dir, mmap=mmap)
        self.docids, self.row_doc = _documents(row_docids, self.meta.num_docs)
        del row_docids
        self.rows_per_doc = max(1, int(np.bincount(self.row_doc).max())) if len(self.row_doc) else 1
        # ME-BERT rows folded in the scan when each document's m rows are adjacent (as encode writes them).
        adjacent = np.array_equal(self.row_doc, np.repeat(np.arange(self.num_docs), self.rows_per_doc))
        self._fold = self.rows_per_doc if adjacent else 1
        self._mapped = isinstance(self.index, MappedFlat)
        self._rows = None if self._mapped else flat.stored_rows(self.index)  # a view of the index's own rows
        self._hnsw = not self._mapped and isinstance(faiss.downcast_index(self.index), faiss.IndexHNSW)
        if ef_search is not None and ef_search < 1:
            raise ValueError(f"ef_search must be positive, got {ef_search}")
        self.ef_search = ef_search  # None: the index's own (stored at build), raised to the rows asked for
        if isinstance(query_encoder, (str, Path)):
            query_encoder = self.load_query_encoder(query_encoder, family, device, batch_size, encoder_overrides,
                                                    backend, precision)
        self.set_query_encoder(query_encoder)

    def load_query_encoder(self, path: str | Path, family: str | None = None, device: str = "cpu",
                           batch_size: int = 64, overrides: Mapping[str, Any] | None = None, backend: str = "auto",
                           precision: str = "fp32") -> DenseQueryEncoder:
        """The query encoder at ``path``, configured by ``family`` and ``overrides``, then its own files, then the
        encoder config this index recorded; a model dir's cached ONNX export when ``backend`` allows it."""
        return load_index_query_encoder(self.meta, self.index_dir, path, family, device, batch_size, overrides,
                                        backend, precision)

    def set_query_encoder(self, query_encoder: QueryEncoder | None) -> None:
        """Search with ``query_encoder`` (adapted once); one of another family or dimension is an error."""
        self.query_encoder = query_encoder
        self._encoding = (adapt_query_encoder(self.meta, self.index_dir, self.index.d, query_encoder)
                          if query_encoder is not None else None)

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
        k = min(k, max(self.num_docs, 1))  # more hits than documents: all of them, not a (n, k) allocation
        out_scores = np.full((len(vectors), k), -np.inf, dtype=np.float32)
        out_docs = np.full((len(vectors), k), -1, dtype=np.int64)
        scanned = self._mapped or (self._rows is not None and flat.scan_wins(len(vectors)))
        if scanned and self._fold == self.rows_per_doc:  # documents straight from the scan
            scores, docs = self._scan(vectors, k, self._fold, threads)
            out_scores[:, :docs.shape[1]], out_docs[:, :docs.shape[1]] = scores, docs
            return out_scores, out_docs
        rows_k = min(k * self.rows_per_doc, self.index.ntotal)
        if scanned:
            scores, rows = self._scan(vectors, rows_k, 1, threads)
        else:
            with flat.thread_limit(threads):
                scores, rows = self.index.search(vectors, rows_k, params=self._search_params(rows_k))
        docs = np.where(rows >= 0, self.row_doc[np.maximum(rows, 0)], -1)
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

    def _scan(self, vectors: np.ndarray, k: int, fold: int, threads: int | None) -> tuple[np.ndarray, np.ndarray]:
        """:mod:`.flat`'s blocked scan of the stored rows (or of the mapped file), ``fold`` rows per item."""
        if self._mapped:
            return flat.mapped_top_k(self.index, vectors, k, fold, threads)
        return flat.top_k(vectors, self._rows, k, fold, threads)

    def to_ranking(self, scores: np.ndarray, docs: np.ndarray) -> list[tuple[str, float]]:
        """One query's arrays as ``[(docid, score), ...]``."""
        return list(zip(*self._docids_scores(scores, docs)))

    def _docids_scores(self, scores: np.ndarray, docs: np.ndarray) -> tuple[list[str], list[float]]:
        keep = docs >= 0
        docids = self.docids
        return [docids[d] for d in docs[keep].tolist()], scores[keep].tolist()

    def to_results(self, scores: np.ndarray, docs: np.ndarray) -> list[DenseSearchResult]:
        """One query's arrays as Pyserini's hit objects."""
        return hit_list(*self._docids_scores(scores, docs))

    def search(self, query: str | np.ndarray, k: int = 10, threads: int | None = None) -> list[DenseSearchResult]:
        vectors = self.encode_queries([query]) if isinstance(query, str) else query
        scores, docs = self.search_vectors(vectors, k, threads)
        return self.to_results(scores[0], docs[0])

    def batch_search(self, queries: Sequence[str] | np.ndarray, q_ids: Sequence[str], k: int = 10,
                     threads: int | None = None) -> dict[str, list[DenseSearchResult]]:
        """Pyserini's ``FaissSearcher.batch_search``: all queries encoded at once, one FAISS search."""
        vectors = queries if isinstance(queries, np.ndarray) else self.encode_queries(queries)
        scores, docs = self.search_vectors(vectors, k, threads)
        with gc_paused():
            return {qid: self.to_results(scores[i], docs[i]) for i, qid in enumerate(q_ids)}

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
