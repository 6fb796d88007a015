"""Pyserini touchpoints in both API shapes: 1.6 (installed, tested) and 2.x (fakes copying its shape).

The 2.x fakes copy Pyserini's code as read from its repository: ``QueryEncoder`` on the main
branch after 2.3.0 (``encoded_queries_dir``, ``has_encoded_queries``, ``embeddings``) and
``LuceneSearcher.is_using_rm3`` from 2.1.0 (``self.object.use_rm3() or self.rm3``, where
``set_rm3(use_python=True)`` sets ``self.rm3`` and leaves the Java searcher's RM3 off).
"""
from __future__ import annotations

import numpy as np
import pytest

from pyserini_dense_ext import pyserini_compat as compat
from pyserini_dense_ext.encoders.encoded_queries import load_encoded_queries, save_encoded_queries


class MainQueryEncoder:
    """Pyserini's ``QueryEncoder`` on the main branch after 2.3.0."""

    def __init__(self, encoded_queries_dir: str = None):
        self.has_model = False
        self.has_encoded_queries = False
        if encoded_queries_dir:
            self.embeddings = self._load_embeddings(encoded_queries_dir)
            self.has_encoded_queries = True

    _load_embeddings = staticmethod(load_encoded_queries)


class Searcher21:
    """The feedback surface of Pyserini 2.1's ``LuceneSearcher`` (Java searcher plus Python RM3)."""

    class Java:
        def __init__(self):
            self.rm3 = self.rocchio = False

        def use_rm3(self):
            return self.rm3

        def use_rocchio(self):
            return self.rocchio

    def __init__(self):
        self.object, self.rm3, self.rocchio = self.Java(), None, None

    def set_rm3(self, use_python: bool = False):
        if use_python:
            self.rm3 = object()  # Pyserini's PyseriniRm3 instance
        else:
            self.object.rm3 = True

    def is_using_rm3(self):
        return self.object.use_rm3() or self.rm3

    def is_using_rocchio(self):
        return self.object.use_rocchio() or self.rocchio


def test_query_encoder_shapes(tmp_path):
    from pyserini.encode import QueryEncoder

    assert compat.query_encoder_shape(QueryEncoder) == compat.SHAPE_1_6  # the installed Pyserini
    assert compat.query_encoder_shape(MainQueryEncoder) == compat.SHAPE_MAIN
    with pytest.raises(TypeError, match="unsupported Pyserini version"):
        compat.query_encoder_shape(type("Other", (), {"__init__": lambda self, path=None: None}))
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    directory = str(save_encoded_queries(tmp_path / "q", ["a", "b"], vectors))
    for base in (QueryEncoder, MainQueryEncoder):
        encoder = type("Ours", (base,), {"_load_embeddings": staticmethod(load_encoded_queries)})(directory)
        table = compat.encoded_queries(encoder, base)
        assert list(table) == ["a", "b"] and np.array_equal(table["b"], vectors[1])
        assert compat.encoded_queries(base(), base) is None


def test_our_query_encoder_takes_either_spelling_of_the_encoded_queries_dir(tmp_path):
    from pyserini_dense_ext.encoders import DenseQueryEncoder

    vectors = np.eye(3, dtype=np.float32)
    directory = str(save_encoded_queries(tmp_path / "q", ["a", "b", "c"], vectors))
    for kwargs in ({"encoded_query_dir": directory}, {"encoded_queries_dir": directory}):
        encoder = DenseQueryEncoder(**kwargs)  # Pyserini main's load_encoded_queries calls cls(encoded_queries_dir=...)
        assert np.array_equal(encoder.encode_batch(["c", "a"]), vectors[[2, 0]])


def test_feedback_is_seen_in_java_and_in_python():
    for kind in ("java", "python", "rocchio", None):
        searcher = Searcher21()
        if kind == "rocchio":
            searcher.object.rocchio = True
        elif kind is not None:
            searcher.set_rm3(use_python=kind == "python")
        assert compat.uses_feedback(searcher) is (kind is not None)
        if kind == "python":  # what ArraySparse used to ask, and why it would have run plain BM25 instead of RM3
            assert not searcher.object.use_rm3()


def test_array_bm25_is_used_only_without_feedback(tiny_corpus, tmp_path):
    import json

    from pyserini_dense_ext.io import read_corpus
    from pyserini_dense_ext.search.hybrid.sparse import ArraySparse

    index = str(tmp_path / "bm25")  # with document vectors, which Anserini's RM3 needs
    indexer = compat.lucene_indexer(index, ["-index", index, "-storeDocvectors"], threads=1)
    indexer.add_batch_raw([json.dumps({"id": d.docid, "contents": d.contents}) for d in read_corpus(tiny_corpus)])
    indexer.close()
    searcher = compat.lucene_searcher_class()(index)
    assert ArraySparse.supports(searcher)
    searcher.set_rm3()
    assert not ArraySparse.supports(searcher)
    searcher.unset_rm3()
    # Pyserini 2.1's Python RM3: the Java searcher's RM3 stays off, is_using_rm3() says on.
    searcher.is_using_rm3 = lambda: searcher.object.use_rm3() or object()
    assert not searcher.object.use_rm3() and not ArraySparse.supports(searcher)
