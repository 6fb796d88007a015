"""Exact inner-product top-k over flat and flat-fp16 rows at matrix-multiply speed, with FAISS's results.

**What FAISS does** (faiss 1.15, read from its source):

- ``IndexFlat::search`` (``faiss/IndexFlat.cpp``) calls ``knn_inner_product``
  (``faiss/utils/distances.cpp``). With fewer queries than OpenMP threads over a large database
  (``should_use_db_parallel``: ``nx < threads`` and ``ny >= max(10000, threads *
  distance_compute_blas_database_bs)``) it runs ``knn_db_parallel_impl``: each thread an sgemm
  over its slice of the rows. Otherwise ``dispatch_knn_ResultHandler``
  (``faiss/impl/ResultHandler.h``) picks how the top k are kept (k = 1: ``Top1``; k <
  ``distance_compute_min_k_reservoir`` = 100: a heap; else a reservoir) and
  ``Run_search_inner_product::f`` picks the kernel: if ``nx * d <
  distance_compute_blas_threshold`` (128,000 in 1.15; before faiss PR #5022 it was ``nx < 20``)
  ``exhaustive_inner_product_seq``, one SIMD dot product per (query, row) with the queries split
  over threads, so each thread streams the whole database from memory once per query; else
  ``exhaustive_inner_product_blas``, sgemm on blocks of ``distance_compute_blas_query_bs`` (4096)
  queries by ``distance_compute_blas_database_bs`` (1024) rows, each block's scores fed to the
  keeper. At d = 384 the sequential path takes every batch of 2 to 333 queries: a search of 300
  queries runs at ~1/15 of the machine's matrix-multiply speed (``docs/scale.md``).
- ``IndexScalarQuantizer::search`` (``faiss/IndexScalarQuantizer.cpp``), our ``flat-fp16``, has no
  BLAS path at all: each query scans every code with the quantiser's scanner (decode + dot
  product) into a heap, whatever the batch size.

**What this module does**: the rows are scanned in blocks of :data:`BLOCK_ROWS`; each block is
one matrix multiply of all queries by the block (numpy's BLAS; fp16 blocks first decoded to
float32 by FAISS's own ``ScalarQuantizer.decode``, exactly), and its scores go into FAISS's own
heaps (``float_minheap_array_t.addn``, the loop of FAISS's ``HeapBlockResultHandler``), which
are sorted at the end (``reorder``). So the top k and their order are FAISS's heap semantics: a
row enters when it beats the current k-th score (ties keep the earlier row), and equal scores
come out in FAISS's order. Scores equal FAISS's up to the last bits of float summation (another
sgemm, another order), which is how FAISS's own sequential and BLAS paths differ from each
other. ME-BERT indexes whose m rows per document are adjacent are folded in the same pass (each
document's score is its best row: the max over each m-column group) so the heaps hold documents.

:func:`scan_wins` is the dispatch rule (measured by ``bench/flat_search.py``, table in
``docs/scale.md``): from :data:`MIN_QUERIES` queries on, this scan beats FAISS's own search of
the same index; a single query stays with FAISS (its db-parallel sgemm is the same work).
Thread counts (FAISS's OpenMP, numpy's BLAS) are set for the call only and restored after:
FAISS and torch share one OpenMP runtime, so a count left behind would change torch's too.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import faiss
import numpy as np

if TYPE_CHECKING:
    from ..index.flat_file import MappedFlat

MIN_QUERIES = 2  # from this many queries per call on, the blocked scan beats FAISS's own search (docs/scale.md)
SCORE_BLOCK = 1 << 22  # scores per matrix multiply (16 MB): 300 queries x ~14,000 rows
MIN_BLOCK_ROWS, MAX_BLOCK_ROWS = 1024, 1 << 16
QUERY_BLOCK = 4096  # queries per pass over the rows (FAISS's distance_compute_blas_query_bs)
MIN_ITEMS_PER_THREAD = 4096  # a smaller index is scanned by one thread


def scan_wins(n_queries: int) -> bool:
    """Whether :func:`top_k` beats FAISS's own ``search`` of a flat or flat-fp16 index for this batch."""
    return n_queries >= MIN_QUERIES


@contextlib.contextmanager
def thread_limit(threads: int | None) -> Iterator[None]:
    """FAISS's OpenMP threads and numpy's BLAS threads at ``threads`` for the block, then as they were.

    FAISS and torch share one OpenMP runtime, so a count left behind would also change torch's
    thread count, and with it the summation order and the last bits of every later query vector
    (on near-tied scores that reorders hits between two searches of the same query).
    """
    if not threads:
        yield
        return
    from threadpoolctl import threadpool_limits

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        faiss.omp_set_num_threads(before)


def stored_rows(index: faiss.Index) -> np.ndarray | None:
    """An inner-product flat or fp16 index's rows as a numpy view ``(n, d)`` (float32 or float16), no copy;
    None for any other index. The view lives only as long as ``index``."""
    index = faiss.downcast_index(index)
    if index.metric_type != faiss.METRIC_INNER_PRODUCT or index.ntotal == 0:
        return None
    n, d = index.ntotal, index.d
    if isinstance(index, faiss.IndexFlat):
        return faiss.rev_swig_ptr(index.get_xb(), n * d).reshape(n, d)
    if isinstance(index, faiss.IndexScalarQuantizer) and index.sq.qtype == faiss.ScalarQuantizer.QT_fp16:
        return faiss.rev_swig_ptr(index.codes.data(), n * index.code_size).view(np.float16).reshape(n, d)
    return None


class _Heaps:
    """FAISS's min-heaps over ``(nq, k)`` numpy arrays: the top k largest scores per query."""

    def __init__(self, nq: int, k: int):
        self.scores = np.empty((nq, k), dtype=np.float32)
        self.ids = np.empty((nq, k), dtype=np.int64)
        self.heaps = faiss.float_minheap_array_t()
        self.heaps.nh, self.heaps.k = nq, k
        self.heaps.val, self.heaps.ids = faiss.swig_ptr(self.scores), faiss.swig_ptr(self.ids)
        self.heaps.heapify()

    def add(self, block_scores: np.ndarray, first_id: int) -> None:
        """Offer a C-contiguous float32 ``(nq, b)`` block whose column j is item ``first_id + j``."""
        self.heaps.addn(block_scores.shape[1], faiss.swig_ptr(block_scores), first_id, 0, len(block_scores))

    def add_with_ids(self, scores: np.ndarray, ids: np.ndarray) -> None:
        """Offer another top-k result ``(nq, k')`` (ids -1 where empty: never taken)."""
        self.heaps.addn_with_ids(scores.shape[1], faiss.swig_ptr(scores), faiss.swig_ptr(ids), ids.shape[1], 0,
                                 len(scores))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """Scores best first; FAISS's padding (``-3.4e38``, id -1) where there were fewer than k items."""
        self.heaps.reorder()
        return self.scores, self.ids


class _Scanner:
    """Blocks of stored rows in, heap offers out: one matrix multiply per block (fp16 decoded first)."""

    def __init__(self, queries: np.ndarray, k: int, dtype: np.dtype, fold: int, block: int):
        self.queries, self.fold = queries, fold
        nq, d = queries.shape
        self.heaps = _Heaps(nq, k)
        self.scores = np.empty(nq * block, dtype=np.float32)  # reshaped per block: C-contiguous
        self.folded = np.empty(nq * (block // fold), dtype=np.float32) if fold > 1 else None
        self.rows32 = np.empty((block, d), dtype=np.float32)
        self.decoder = faiss.ScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16) if dtype == np.float16 else None

    def add(self, first_row: int, rows: np.ndarray) -> None:
        n = len(rows)
        if self.decoder is not None:
            rows16 = np.ascontiguousarray(rows)
            self.decoder.decode_c(faiss.swig_ptr(rows16.view(np.uint8)), faiss.swig_ptr(self.rows32), n)
            rows = self.rows32[:n]
        elif not (rows.flags.aligned and rows.flags.c_contiguous):  # a mapped window: BLAS wants aligned rows
            np.copyto(self.rows32[:n], rows)
            rows = self.rows32[:n]
        nq = len(self.queries)
        scores = self.scores[:nq * n].reshape(nq, n)
        np.matmul(self.queries, rows.T, out=scores)
        if self.fold == 1:
            self.heaps.add(scores, first_row)
            return
        folded = self.folded[:nq * (n // self.fold)].reshape(nq, n // self.fold)
        np.max(scores.reshape(nq, n // self.fold, self.fold), axis=2, out=folded)
        self.heaps.add(folded, first_row // self.fold)


# (first row, stop row, rows per block) -> (first row of the block, its rows) for each block
RowBlocks = Callable[[int, int, int], Iterable[tuple[int, np.ndarray]]]
_POOL: list[ThreadPoolExecutor] = []
_BLAS: list[Any] = []


def _pool(threads: int) -> ThreadPoolExecutor:
    if not _POOL or _POOL[0]._max_workers < threads:
        _POOL[:] = [ThreadPoolExecutor(threads, thread_name_prefix="dense-ext-flat")]
    return _POOL[0]


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """numpy's BLAS on one thread while the scan's own threads run (restored after)."""
    if not _BLAS:
        from threadpoolctl import ThreadpoolController

        _BLAS.append(ThreadpoolController())
    with _BLAS[0].limit(limits=1, user_api="blas"):
        yield


def block_rows(n_queries: int, fold: int) -> int:
    """Rows per matrix multiply: about :data:`SCORE_BLOCK` scores per block, whole ME-BERT documents."""
    rows = min(MAX_BLOCK_ROWS, max(MIN_BLOCK_ROWS, SCORE_BLOCK // max(n_queries, 1)))
    return max(fold, rows - rows % fold)


def _search(blocks: RowBlocks, n_rows: int, dtype: np.dtype, queries: np.ndarray, k: int, fold: int,
            threads: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Split the rows over threads; each scans its range into its own heaps; merge. See the module docstring."""
    n_items = n_rows // fold
    if n_rows % fold:
        raise ValueError(f"{n_rows} rows do not fold into groups of {fold}")
    k = min(k, max(n_items, 1))
    workers = max(1, min(threads or faiss.omp_get_max_threads(), -(-n_items // MIN_ITEMS_PER_THREAD)))
    bounds = [fold * (n_items * t // workers) for t in range(workers + 1)]
    out_scores = np.empty((len(queries), k), dtype=np.float32)
    out_ids = np.empty((len(queries), k), dtype=np.int64)
    for q0 in range(0, len(queries), QUERY_BLOCK):
        part = np.ascontiguousarray(queries[q0:q0 + QUERY_BLOCK])
        block = block_rows(len(part), fold)

        def scan(t: int) -> tuple[np.ndarray, np.ndarray]:
            faiss.omp_set_num_threads(1)  # this worker's own OpenMP setting: the heaps stay on this thread
            scanner = _Scanner(part, k, dtype, fold, block)
            for first, rows in blocks(bounds[t], bounds[t + 1], block):
                scanner.add(first, rows)
            return scanner.heaps.result()

        with _single_threaded_blas():
            parts = list(_pool(workers).map(scan, range(workers)))
        if workers == 1:
            scores, ids = parts[0]
        else:
            merged = _Heaps(len(part), k)
            for scores, ids in parts:
                merged.add_with_ids(scores, ids)
            scores, ids = merged.result()
        out_scores[q0:q0 + len(part)], out_ids[q0:q0 + len(part)] = scores, ids
    return out_scores, out_ids


def top_k(queries: np.ndarray, rows: np.ndarray, k: int, fold: int = 1,
          threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner products of float32 ``queries`` ``(nq, d)`` over ``rows`` ``(n, d)`` (float32 or float16).

    With ``fold`` = m, rows ``i*m .. i*m + m - 1`` are item i and its score is their max. Returns
    float32 scores and int64 item ids ``(nq, min(k, items))``, best first. ``threads``: how many
    threads scan (default: FAISS's OpenMP count).
    """
    def blocks(start: int, stop: int, size: int) -> Iterator[tuple[int, np.ndarray]]:
        for first in range(start, stop, size):
            yield first, rows[first:min(first + size, stop)]

    return _search(blocks, len(rows), rows.dtype, np.ascontiguousarray(queries, dtype=np.float32), k, fold, threads)


def mapped_top_k(mapped: "MappedFlat", queries: np.ndarray, k: int, fold: int = 1,
                 threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` over a memory-mapped index file, one window at a time per thread."""
    return _search(mapped.windows, mapped.ntotal, mapped.dtype, np.ascontiguousarray(queries, dtype=np.float32), k,
                   fold, threads)
