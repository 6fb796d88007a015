"""Every place this package touches Pyserini's Python API, for Pyserini 1.6 (tested) and 2.x.

Read from Pyserini's repository (tags pyserini-1.6.0 to 2.3.0 and the main branch), the API we
use is the same across them except:

- ``QueryEncoder.__init__(encoded_query_dir)`` sets ``has_encoded_query`` / ``embedding`` up to
  2.3.0; the main branch after it takes ``encoded_queries_dir`` and sets ``has_encoded_queries`` /
  ``embeddings``. :func:`query_encoder_shape` tells which from the signature.
- From 2.1.0 ``LuceneSearcher.set_rm3(use_python=True)`` runs RM3 in Python, so the Java
  searcher's ``use_rm3()`` is False while feedback is on; ``is_using_rm3()`` /
  ``is_using_rocchio()`` exist in every version and answer for both (:func:`uses_feedback`).

Everything else (``DenseSearchResult``, the encoder class maps, ``LuceneSearcher.object`` with
``get_similarity()`` / ``get_analyzer()``, ``LuceneIndexer``) is imported from here too, so a
future change has one place to go.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyserini.encode import DocumentEncoder, QueryEncoder
from pyserini.search.faiss import DenseSearchResult

__all__ = ["DenseSearchResult", "DocumentEncoder", "QueryEncoder", "QueryEncoderShape", "class_maps",
           "encoded_queries", "java_searcher", "lucene_indexer", "lucene_searcher_class", "query_encoder_shape",
           "run_main", "uses_feedback"]


@dataclass(frozen=True)
class QueryEncoderShape:
    """Names Pyserini's ``QueryEncoder`` uses for pre-encoded queries."""

    dir_parameter: str  # the __init__ argument naming the encoded-queries dir
    flag: str  # attribute: whether encoded queries were loaded
    table: str  # attribute: {query text: vector}


SHAPE_1_6 = QueryEncoderShape("encoded_query_dir", "has_encoded_query", "embedding")  # 1.6.0 ... 2.3.0
SHAPE_MAIN = QueryEncoderShape("encoded_queries_dir", "has_encoded_queries", "embeddings")  # main after 2.3.0


def query_encoder_shape(base: type = QueryEncoder) -> QueryEncoderShape:
    """The shape of ``base`` (Pyserini's ``QueryEncoder``), read from its ``__init__`` signature."""
    parameters = inspect.signature(base.__init__).parameters
    for shape in (SHAPE_1_6, SHAPE_MAIN):
        if shape.dir_parameter in parameters:
            return shape
    raise TypeError(f"{base.__module__}.{base.__qualname__}.__init__{inspect.signature(base.__init__)} takes "
                    "neither encoded_query_dir nor encoded_queries_dir: an unsupported Pyserini version")


def encoded_queries(encoder: Any, base: type = QueryEncoder) -> dict[str, np.ndarray] | None:
    """The ``{query text: vector}`` table a ``base`` subclass loaded in ``__init__``, or None."""
    shape = query_encoder_shape(base)
    return getattr(encoder, shape.table) if getattr(encoder, shape.flag, False) else None


def class_maps() -> tuple[dict[str, type], dict[str, type]]:
    """Pyserini's ``query_encoder_class_map`` and ``document_encoder_class_map`` (keys of ``--encoder-class``)."""
    from pyserini import encode

    return encode.query_encoder_class_map, encode.document_encoder_class_map


def lucene_searcher_class() -> type:
    """``pyserini.search.lucene.LuceneSearcher`` (importing it starts the JVM)."""
    from pyserini.search.lucene import LuceneSearcher

    return LuceneSearcher


def lucene_indexer(index_dir: str, args: list[str], threads: int) -> Any:
    """Pyserini's in-process ``LuceneIndexer`` (Anserini's ``SimpleIndexer``)."""
    from pyserini.index.lucene import LuceneIndexer

    return LuceneIndexer(index_dir, args=args, threads=threads)


def run_main(module: str, argv: list[str]) -> None:
    """Run ``python -m pyserini.<module> argv...`` in this process (``search.faiss``, ``encode``, ...)."""
    import runpy
    import sys

    sys.argv = [f"pyserini.{module}", *argv]
    runpy.run_module(f"pyserini.{module}", run_name="__main__", alter_sys=True)


def uses_feedback(searcher: Any) -> bool:
    """Whether a ``LuceneSearcher`` expands queries (RM3 or Rocchio), in Java or, from 2.1, in Python."""
    return bool(searcher.is_using_rm3()) or bool(searcher.is_using_rocchio())


def java_searcher(searcher: Any) -> Any:
    """The Anserini ``SimpleSearcher`` behind a ``LuceneSearcher`` (its similarity and analyzer)."""
    return searcher.object
