"""Sparse + dense hybrid search: Pyserini's ``HybridSearcher`` interface with every fusion method.

``HybridSearcher(dense_searcher, sparse_searcher)`` takes any of our ``DenseSearcher`` dirs
(flat, HNSW, ME-BERT multi-vector) or a Pyserini ``FaissSearcher``, and a Pyserini
``LuceneSearcher`` (BM25 over plain or docT5query-expanded text) or any other Pyserini sparse
searcher. ``search``/``batch_search`` keep Pyserini's arguments and defaults (``k0``, ``k``,
``alpha``, ``normalization``, ``weight_on_dense``) and add ``fusion=`` (see
``pyserini_dense_ext.fusion.METHODS``): with ``fusion="linear"`` the scores are Pyserini's
(``normalization=True`` is its centred normalisation), without its division by zero. Without
``fusion=`` a call that gives any of Pyserini's ``alpha``/``normalization``/``weight_on_dense``
gets Pyserini's linear fusion, as in Pyserini; any other call gets ``auto``
(:mod:`pyserini_dense_ext.fusion.auto`), whose dense weight is estimated over the queries of the
call (one query alone is its own collection).

The batch path never builds a Python object per intermediate hit: all queries are encoded in
one batched call and searched with one FAISS call, BM25 runs on Lucene threads and comes back
as arrays (:mod:`.sparse`), and each query is fused with numpy. :func:`build_hybrid` opens both
indexes the way the hybrid and tune commands do.
"""
from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ...fusion import DEFAULT_METHOD, METHODS, Fusion, Hits, get_method, resolve
from ...fusion.sweep import Lists
from ...io.errors import InputError
from ...io.runs import Run
from ...progress import progress_bar
from ...pyserini_compat import DenseSearchResult
from ..maxp import max_passage
from ..results import gc_paused, hit_list
from .sources import BatchSearcher, HitSource, dense_source
from .sparse import sparse_source


def unnamed_method(alpha: float | None = None, normalization: bool | str | None = None,
                   weight_on_dense: bool | None = False) -> str:
    """The method a call that names none gets: Pyserini's ``linear`` when any of Pyserini's fusion
    arguments is given (their meaning in Pyserini's ``HybridSearcher``), else ``auto``."""
    return "linear" if alpha is not None or normalization is not None or weight_on_dense else DEFAULT_METHOD


def pyserini_fusion(fusion: str | Fusion | None, alpha: float | None = None, normalization: bool | str | None = None,
                    weight_on_dense: bool = False, **extra: Any) -> Fusion:
    """Map Pyserini-style arguments onto what method ``fusion`` takes, and resolve it.

    ``fusion=None``: Pyserini's ``linear`` when any of Pyserini's fusion arguments is given (what
    they mean in Pyserini's ``HybridSearcher``), else ``auto``. ``alpha=None`` and
    ``normalization=None`` mean the method's own default; ``normalization`` ``True``/``False`` are
    Pyserini's flag (centred / none). Passing a setting the method does not use (alpha to RRF,
    say) is an error rather than silently ignored.
    """
    if fusion is None:
        fusion = unnamed_method(alpha, normalization, weight_on_dense)
    given = {k: v for k, v in dict(extra, alpha=alpha, normalization=normalization).items() if v is not None}
    if isinstance(fusion, Fusion):  # already resolved: settings beside it are an error (resolve says so)
        return resolve(fusion, **given, **({"weight_on_dense": True} if weight_on_dense else {}))
    params = dict(extra)
    if alpha is not None:
        params["alpha"] = alpha
    if normalization is not None:
        if isinstance(normalization, bool):
            normalization = "centred" if normalization else "none"
        params["normalization"] = normalization
    if weight_on_dense:
        params["weight_on_dense"] = True
    if params.get("normalization") == "none" and "normalization" not in get_method(fusion).defaults:
        del params["normalization"]  # Pyserini's default False means "no normalisation": true of rank methods
    return resolve(fusion, **params)


def fusion_params(fusion: str, alpha: float | None = None, normalization: bool | str | None = None,
                  weight_on_dense: bool = False, **extra: Any) -> dict[str, Any]:
    """The checked parameters :func:`pyserini_fusion` gives method ``fusion``."""
    return dict(pyserini_fusion(fusion, alpha, normalization, weight_on_dense, **extra).params)


def check_same_documents(dense_searcher: Any, sparse_searcher: Any) -> None:
    """Refuse a dense and a sparse index of different collections, where both record a corpus fingerprint
    (our index dirs and our Lucene builds do): their fusion would silently mix two collections.

    Both record the documents before any passage split or docT5query expansion, so a dense index of
    documents and an expanded or split BM25 index of the same collection pass."""
    from ...index.lucene import META_FILE, LuceneRecord

    dense_corpus = getattr(dense_searcher, "corpus", None)
    sparse_dir = getattr(sparse_searcher, "index_dir", None)
    if dense_corpus is None or not isinstance(sparse_dir, (str, Path)):
        return
    record = LuceneRecord.of(sparse_dir)
    if record is not None and record.corpus is not None and record.corpus != dense_corpus:
        raise InputError(Path(sparse_dir) / META_FILE, "indexes other documents than the dense index "
                                                       f"{getattr(dense_searcher, 'index_dir', '')} (their corpus "
                                                       "fingerprints differ): build both from one corpus",
                         field="corpus")


class HybridSearcher:
    """Fuse a dense searcher's and a sparse searcher's top-k0 lists per query (sparse first, dense second).

    With ``max_passage_delimiter`` (indexes of passages ``docid#k``, built with ``--passages``) each
    side's k0 passages are first folded into documents by their best passage (MaxP, with Pyserini's
    ``--max-passage`` rule, :mod:`~pyserini_dense_ext.search.maxp`), so the fusion and its k results
    are documents, and a document gets its best dense and its best BM25 passage whichever passages
    they are. (Pyserini's hybrid instead fuses passage lists and folds the fused list.)
    """

    def __init__(self, dense_searcher: BatchSearcher, sparse_searcher: BatchSearcher,
                 max_passage_delimiter: str | None = None):
        if max_passage_delimiter is not None and not max_passage_delimiter:
            raise ValueError("the max-passage delimiter must not be empty")
        check_same_documents(dense_searcher, sparse_searcher)
        self.dense_searcher = dense_searcher
        self.sparse_searcher = sparse_searcher
        self.max_passage_delimiter = max_passage_delimiter
        # Each side adapted once to the array interface (see .sources): no per-call checks of what it is.
        self._dense: HitSource = dense_source(dense_searcher)
        self._sparse: HitSource = sparse_source(sparse_searcher)
        self.timings: dict[str, float] = {}
        self.fusion_params: dict[str, Any] = {}  # the last fusion's parameters, estimated ones (auto) included

    # -- the two retrievers, as arrays ---------------------------------------------------------
    def _tick(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - start
        return now

    def _documents(self, hits: list[Hits]) -> list[Hits]:
        """Passages folded into documents by their best passage, when the sides hold passages."""
        if self.max_passage_delimiter is None:
            return hits
        return [max_passage(docids, scores, None, self.max_passage_delimiter) for docids, scores in hits]

    def dense_hits(self, queries: Sequence[str], k0: int, threads: int = 1) -> list[Hits]:
        """Top-k0 (docids, scores) per query from the dense side (with MaxP: the documents of its top-k0 passages)."""
        start = time.perf_counter()
        encoded = self._dense.encode(queries)
        start = self._tick("encode", start)
        out = self._documents(self._dense.hits(encoded, k0, threads))
        self._tick("dense", start)
        return out

    def sparse_hits(self, queries: Sequence[str], k0: int, threads: int = 1) -> list[Hits]:
        """Top-k0 (docids, scores) per query from the sparse side (with MaxP: the documents of its top-k0 passages)."""
        start = time.perf_counter()
        out = self._documents(self._sparse.hits(self._sparse.encode(queries), k0, threads))
        self._tick("sparse", start)
        return out

    def both_hits(self, queries: Sequence[str], k0: int, threads: int = 1) -> tuple[list[Hits], list[Hits]]:
        """(sparse, dense) top-k0 hits per query, the sparse side searched on a thread of its own while the
        dense side encodes and searches: BM25's Python work (parsing Lucene's top docs, mapping ids) then
        overlaps the query encoder's, which runs without holding the GIL."""
        start = time.perf_counter()
        with ThreadPoolExecutor(1, thread_name_prefix="dense-ext-sparse") as pool:
            sparse = pool.submit(_detached, self.sparse_hits, queries, k0, threads)
            dense = self.dense_hits(queries, k0, threads)
            out = sparse.result(), dense
        self._tick("retrieve", start)
        return out

    def _chunks(self, topics: Mapping[str, str], k0: int, threads: int, chunk_size: int, progress: bool,
                desc: str) -> Iterator[tuple[list[str], list[Hits], list[Hits]]]:
        """(qids, sparse hits, dense hits) for each chunk of topics, with a progress bar."""
        if k0 < 1:
            raise ValueError(f"k0 must be positive, got {k0}")
        qids, texts = list(topics), list(topics.values())
        with progress_bar(len(qids), desc, "query", progress) as bar:
            for start in range(0, len(qids), chunk_size):
                chunk = slice(start, start + chunk_size)
                yield (qids[chunk], *self.both_hits(texts[chunk], k0, threads))
                bar.update(len(texts[chunk]))

    def search_lists(self, topics: Mapping[str, str], k0: int = 1000, threads: int = 1, chunk_size: int = 512,
                     progress: bool = True) -> Lists:
        """Both sides' top-k0 hits of every topic, unfused (what a sweep over fusion settings re-scores)."""
        out: Lists = {}
        for qids, sparse, dense in self._chunks(topics, k0, threads, chunk_size, progress, "searching sparse + dense"):
            out.update({q: (s, d) for q, s, d in zip(qids, sparse, dense)})
        return out

    # -- fused search --------------------------------------------------------------------------
    def search_hits(self, queries: Sequence[str], k0: int = 10, k: int = 10, threads: int = 1,
                    fusion: str | Fusion = DEFAULT_METHOD, qids: Sequence[str] | None = None,
                    **params: Any) -> list[Hits]:
        """Fused (docids, scores) per query, best first, ties by docid; ``params`` as the method takes them."""
        if k0 < 1 or k < 1:
            raise ValueError(f"k0 and k must be positive, got k0={k0}, k={k}")
        fusion = resolve(fusion, **params)
        queries = list(queries)
        sparse, dense = self.both_hits(queries, k0, threads)
        return self._fuse(fusion, sparse, dense, k, qids if qids is not None else [None] * len(queries))

    def _fuse(self, fusion: Fusion, sparse: list[Hits], dense: list[Hits], k: int,
              qids: Sequence[str | None]) -> list[Hits]:
        """The queries fused together: ``auto`` estimates its weight over all of them."""
        start = time.perf_counter()
        pools = [fusion.pool([s, d], q) for s, d, q in zip(sparse, dense, qids)]
        fusion = fusion.calibrated(pools)
        self.fusion_params = dict(fusion.params)
        fused = fusion.fuse_pools(pools, k)
        self._tick("fuse", start)
        return fused

    def search(self, query: str, k0: int = 10, k: int = 10, alpha: float | None = None,
               normalization: bool | str | None = None, weight_on_dense: bool = False, fusion: str | None = None,
               **fusion_options: Any) -> list[DenseSearchResult]:
        """One query, as Pyserini's ``HybridSearcher.search`` (``fusion=None``: see :func:`pyserini_fusion`)."""
        chosen = pyserini_fusion(fusion, alpha, normalization, weight_on_dense, **fusion_options)
        docids, scores = self.search_hits([query], k0, k, 1, chosen)[0]
        return hit_list(docids.tolist(), scores.tolist())

    def batch_search(self, queries: Sequence[str], q_ids: Sequence[str], k0: int = 10, k: int = 10,
                     threads: int = 1, alpha: float | None = None, normalization: bool | str | None = None,
                     weight_on_dense: bool = False, fusion: str | None = None,
                     **fusion_options: Any) -> dict[str, list[DenseSearchResult]]:
        """Pyserini's ``HybridSearcher.batch_search``, same arguments, plus ``fusion`` (see :func:`pyserini_fusion`)."""
        if len(queries) != len(q_ids):
            raise ValueError(f"got {len(queries)} queries but {len(q_ids)} query ids")
        chosen = pyserini_fusion(fusion, alpha, normalization, weight_on_dense, **fusion_options)
        fused = self.search_hits(queries, k0, k, threads, chosen, qids=q_ids)
        with gc_paused():
            return {qid: hit_list(docids.tolist(), scores.tolist()) for qid, (docids, scores) in zip(q_ids, fused)}

    def search_run(self, topics: Mapping[str, str], k0: int = 1000, k: int = 1000, threads: int = 1,
                   fusion: str | Fusion = DEFAULT_METHOD, chunk_size: int = 512, progress: bool = True,
                   **params: Any) -> Run:
        """Every topic, in chunks with a progress bar; ``params`` as the method takes them. Returns a Run.

        A fusion that estimates its parameters over its queries (``auto``) keeps every chunk's lists
        and fuses once all topics are searched, so the estimate covers all of them, as ``fuse`` does.
        """
        fusion = resolve(fusion, **params)
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        run: Run = {}
        held: tuple[list[str], list[Hits], list[Hits]] = ([], [], [])
        for qids, sparse, dense in self._chunks(topics, k0, threads, chunk_size, progress,
                                                f"hybrid search ({fusion.name})"):
            if fusion.calibrates:
                for kept, new in zip(held, (qids, sparse, dense)):
                    kept.extend(new)
            else:
                run.update(_as_run(qids, self._fuse(fusion, sparse, dense, k, qids)))
        if fusion.calibrates:
            run.update(_as_run(held[0], self._fuse(fusion, held[1], held[2], k, held[0])))
        return run


def _detached(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` on a worker thread that leaves the JVM (if it used it) when done."""
    try:
        return fn(*args)
    finally:
        if "jnius" in sys.modules:
            sys.modules["jnius"].detach()


def _as_run(qids: Sequence[str], fused: Sequence[Hits]) -> Run:
    return {qid: list(zip(docids.tolist(), scores.tolist())) for qid, (docids, scores) in zip(qids, fused)}


def build_hybrid(dense_index: str | Path, encoder: str | Path, sparse_index: str | Path, *,
                 bm25: tuple[float, float] = (0.9, 0.4), language: str = "en", family: str | None = None,
                 device: str = "cpu", ef_search: int | None = None, batch_size: int = 64, mmap: bool = False,
                 backend: str = "auto", precision: str = "fp32", max_passage_delimiter: str | None = None,
                 **encoder_overrides: Any) -> HybridSearcher:
    """A :class:`HybridSearcher` over a FAISS index dir (queries encoded by ``encoder``) and a Lucene index dir;
    ``max_passage_delimiter`` folds passages into documents (MaxP) on each side."""
    from ... import pyserini_compat as compat
    from ...io.errors import InputError
    from .. import DenseSearcher

    sparse_dir = Path(sparse_index)
    if not sparse_dir.is_dir() or not any(sparse_dir.glob("segments_*")):
        raise InputError(sparse_dir, "is not a Lucene index dir (no segments_N file)")
    lucene = compat.lucene_searcher_class()(str(sparse_dir))
    lucene.set_bm25(*bm25)
    if language != "en":
        lucene.set_language(language)
    dense = DenseSearcher(dense_index, encoder, family=family, device=device, ef_search=ef_search,
                          batch_size=batch_size, mmap=mmap, backend=backend, precision=precision, **encoder_overrides)
    return HybridSearcher(dense, lucene, max_passage_delimiter)


__all__ = ["METHODS", "HybridSearcher", "Lists", "build_hybrid", "fusion_params", "pyserini_fusion",
           "unnamed_method"]
