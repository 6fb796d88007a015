"""BM25 hits of a Pyserini ``LuceneSearcher`` as arrays, identical to its ``batch_search``, without its cost.

At k=1000 ``LuceneSearcher.batch_search`` spends its time outside BM25: Anserini loads every
hit's stored document (``ScoredDocs.fromTopDocs``, raw text included) only to read its id, and
pyjnius then builds one Python proxy per hit. Here each query runs the same Lucene query
(Anserini's ``BagOfWordsQueryGenerator`` with the searcher's own analyzer and similarity) on a
Lucene ``IndexSearcher`` over the same index, the top docs come back as one JSON string per
query (Jackson, shipped in Anserini's jar) parsed by numpy, and Lucene doc numbers are mapped to
collection ids once per document through the ``id`` doc values.

What Anserini's ``SimpleSearcher._search`` does, and so what :meth:`ArraySparse.hits` reproduces:

1. Top k by score, ties by collection id (``BREAK_SCORE_TIES_BY_DOCID``), unless the index
   predates Lucene 9 (then Lucene's own order: ties by internal doc number). We ask Lucene for
   k + 1 hits by score alone and re-sort by (score, id): exact whenever the k-th score beats
   the (k+1)-th; a query with a tie across the cut-off is searched again with Anserini's sort.
2. ``ScoreTiesAdjusterReranker`` (:func:`adjust_score_ties`): scores rounded to 1e-4, and the
   i-th member of a run of near-equal scores lowered by i * 1e-6. Not for indexes written by
   Lucene 8: ``SimpleSearcher._search`` sets ``arbitraryScoreTieBreak`` for them, and the
   adjuster then returns the scores unchanged (read from Anserini 1.7.1's bytecode; tested on a
   Lucene 8.11 index written by Anserini 0.14.3, ``tests/data/lucene8-bm25``).

Searchers with RM3 or Rocchio feedback, impact searchers and anything else go through their own
``batch_search`` (:class:`~.sources.BatchSearchHits`), so the results never depend on which path ran.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import numpy as np

from ... import pyserini_compat as compat
from ...fusion.base import Hits
from .sources import BatchSearcher, BatchSearchHits, HitSource

_F32 = np.float32


def adjust_score_ties(scores: np.ndarray) -> np.ndarray:
    """Anserini's ``ScoreTiesAdjusterReranker`` (1.7.1) on float32 scores already in rank order.

    Java: ``s[i] = (float) (Math.round(s[i] * 10000.0) / 10000.0)`` (a double product, read from
    the class file's constant pool), then a running count ``dup`` of hits whose predecessor's
    (already lowered) score is within ``1e-4f``, ``s[i] -= 1e-6f * dup``. The loop is
    sequential; we iterate the vectorised update to its fixed point, which is unique (position
    i depends only on positions before it) and is reached in a couple of rounds.
    """
    s = np.asarray(scores, dtype=_F32)
    # Math.round(y) is floor(y + 1/2) computed exactly (ties up); y - floor(y) is exact in double,
    # where y + 0.5 could round up to the next integer.
    y = s.astype(np.float64) * 10000.0
    whole = np.floor(y)
    rounded = ((whole + (y - whole >= 0.5)) / 10000.0).astype(_F32)
    n = len(rounded)
    if n == 0:
        return rounded
    lowered = rounded.copy()
    for _ in range(n + 1):
        breaks = np.ones(n, dtype=bool)
        breaks[1:] = (lowered[:-1] - rounded[1:]) > _F32(1e-4)
        start = np.maximum.accumulate(np.where(breaks, np.arange(n), 0))
        dup = np.arange(n) - start
        new = rounded - _F32(1e-6) * dup.astype(_F32)
        if np.array_equal(new, lowered):
            break
        lowered = new
    return lowered


def _map_threads(fn: Callable[[Any], Any], items: Sequence[Any], threads: int) -> list[Any]:
    """``[fn(x) for x in items]`` on up to ``threads`` threads, each detached from the JVM when done."""
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    import jnius

    results: list[Any] = [None] * len(items)
    errors: list[BaseException] = []
    lock = threading.Lock()
    cursor = iter(range(len(items)))

    def work() -> None:
        try:
            while True:
                with lock:
                    i = next(cursor, None)
                if i is None or errors:
                    return
                results[i] = fn(items[i])
        except BaseException as e:  # surfaced in the calling thread below
            errors.append(e)
        finally:
            jnius.detach()

    workers = [threading.Thread(target=work, daemon=True) for _ in range(min(threads, len(items)))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return results


class ArraySparse:
    """A ``LuceneSearcher``'s BM25 (or QLD) search returning arrays; see the module docstring."""

    def __init__(self, searcher: Any):
        from jnius import autoclass, cast

        self.searcher = searcher
        self._autoclass, self._cast = autoclass, cast
        paths, fs_directory = autoclass("java.nio.file.Paths"), autoclass("org.apache.lucene.store.FSDirectory")
        self.reader = autoclass("org.apache.lucene.index.DirectoryReader").open(
            fs_directory.open(paths.get(str(searcher.index_dir))))
        description = self.reader.toString()
        self.lucene8 = "lucene.version=9" not in description and "lucene.version=10" not in description
        self.generator = autoclass("io.anserini.search.query.BagOfWordsQueryGenerator")()
        sort_field = autoclass("org.apache.lucene.search.SortField")
        self.sort = autoclass("org.apache.lucene.search.Sort")(
            sort_field.FIELD_SCORE, sort_field("id", autoclass("org.apache.lucene.search.SortField$Type").STRING_VAL))
        self.mapper = self._top_docs_mapper()
        self.num_docs = int(self.reader.maxDoc())
        self._ids = np.full(self.num_docs, None, dtype=object)  # Lucene doc number -> collection id, filled lazily
        self._have = np.zeros(self.num_docs, dtype=bool)

    @staticmethod
    def supports(searcher: Any) -> bool:
        """Plain ``LuceneSearcher`` over a local dir, no query expansion (in Java or, Pyserini >= 2.1, Python)."""
        return (type(searcher) is compat.lucene_searcher_class() and bool(searcher.index_dir)
                and not compat.uses_feedback(searcher))

    def _top_docs_mapper(self) -> Any:
        """A Jackson mapper writing ``TopDocs`` as ``[[[score, doc], ...]]`` and nothing else."""
        ac = self._autoclass
        mapper = ac("com.fasterxml.jackson.databind.ObjectMapper")()
        shape = ac("com.fasterxml.jackson.annotation.JsonFormat$Value").forShape(
            ac("com.fasterxml.jackson.annotation.JsonFormat$Shape").ARRAY)
        ignore = ac("com.fasterxml.jackson.annotation.JsonIgnoreProperties$Value")
        java_class = ac("java.lang.Class")
        for name, dropped in (("org.apache.lucene.search.TopDocs", ("totalHits",)),
                              ("org.apache.lucene.search.TopFieldDocs", ("totalHits", "fields")),
                              ("org.apache.lucene.search.ScoreDoc", ("shardIndex",)),
                              ("org.apache.lucene.search.FieldDoc", ("shardIndex", "fields"))):
            names = ac("java.util.HashSet")()
            for d in dropped:
                names.add(d)
            override = mapper.configOverride(java_class.forName(name))
            override.setFormat(shape)
            override.setIgnorals(ignore.forIgnoredProperties(names))
        return mapper

    def _index_searcher(self) -> Any:
        # The similarity is read on every batch: the user may call set_bm25 between searches.
        searcher = self._autoclass("org.apache.lucene.search.IndexSearcher")(
            self._cast("org.apache.lucene.index.IndexReader", self.reader))
        searcher.setSimilarity(compat.java_searcher(self.searcher).get_similarity())
        return searcher

    def _parse(self, top_docs: Any) -> tuple[np.ndarray, np.ndarray]:
        text = self.mapper.writeValueAsString(top_docs)
        if text.startswith("[[]"):
            return np.empty(0, dtype=_F32), np.empty(0, dtype=np.int64)
        flat = np.fromstring(text.translate(_BRACKETS), sep=",")
        # Jackson writes the shortest decimal that reads back as the same float32.
        return flat[0::2].astype(_F32), flat[1::2].astype(np.int64)

    def _search_one(self, searcher: Any, analyzer: Any, text: str, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """(float32 scores, Lucene doc numbers, already in Anserini's order?)."""
        query = self.generator.buildQuery("contents", analyzer, text)
        if self.lucene8:
            scores, docs = self._parse(searcher.search(query, k))
            return scores, docs, True
        scores, docs = self._parse(searcher.search(query, k + 1))
        if len(scores) <= k or scores[k - 1] > scores[k]:
            return scores[:k], docs[:k], False
        scores, docs = self._parse(searcher.search(query, k, self.sort, True))
        return scores, docs, True

    def collection_ids(self, docs: np.ndarray) -> np.ndarray:
        """Collection ids of Lucene doc numbers, read once per document (``id`` doc values, else stored)."""
        missing = np.unique(docs[~self._have[docs]])
        if len(missing):
            values = self._autoclass("org.apache.lucene.index.MultiDocValues").getBinaryValues(self.reader, "id")
            if values is not None:
                for d in missing.tolist():  # increasing, as doc-values iterators require
                    if values.advanceExact(d):
                        self._ids[d] = values.binaryValue().utf8ToString()
            stored = self.reader.storedFields()
            for d in missing.tolist():
                if self._ids[d] is None:
                    self._ids[d] = stored.document(d).get("id")
            self._have[missing] = True
        return self._ids[docs].astype(str) if len(docs) else np.array([], dtype=str)

    def encode(self, queries: Sequence[str]) -> list[str]:
        return list(queries)  # Lucene analyses each query itself

    def hits(self, queries: Sequence[str], k: int, threads: int = 1) -> list[Hits]:
        """Per query (docids, float64 scores) exactly as ``LuceneSearcher.batch_search(..., k)`` returns them."""
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        searcher, analyzer = self._index_searcher(), compat.java_searcher(self.searcher).get_analyzer()
        chunk = max(1, -(-len(queries) // (4 * max(1, threads))))
        chunks = [list(queries[i:i + chunk]) for i in range(0, len(queries), chunk)]
        raw = [r for part in _map_threads(lambda texts: [self._search_one(searcher, analyzer, t, k) for t in texts],
                                          chunks, threads) for r in part]
        out = []
        for scores, docs, ordered in raw:
            ids = self.collection_ids(docs)
            if not ordered:
                order = np.lexsort((ids, -scores))
                scores, ids = scores[order], ids[order]
            # Anserini flags pre-Lucene-9 indexes "arbitraryScoreTieBreak" and skips the adjuster for them.
            out.append((ids, (scores if self.lucene8 else adjust_score_ties(scores)).astype(np.float64)))
        return out


_BRACKETS = str.maketrans("[]", "  ")


def sparse_source(searcher: BatchSearcher) -> HitSource:
    """The array path when it reproduces ``batch_search`` exactly, else ``batch_search`` itself."""
    return ArraySparse(searcher) if ArraySparse.supports(searcher) else BatchSearchHits(searcher)
