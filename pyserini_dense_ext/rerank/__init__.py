"""Reranking a first-stage run (any of BM25, dense, hybrid): ``python -m pyserini_dense_ext.rerank``.

Two scorers. ``dense`` (CODER's M_F -> CODER): any query encoder against an index's fixed document
vectors, nothing re-encoded but the queries::

    from pyserini_dense_ext.rerank import Reranker
    reranker = Reranker("indexes/scifact-minilm", "models/coder-minilm")
    hits = reranker.search(query, lucene.search(query, k=1000))      # Pyserini hits in, Pyserini results out
    run = reranker.rerank_run(topics, read_run("runs/bm25.trec"))   # whole runs, batched

``colbert``: a ColBERT dir's MaxSim over token vectors (:func:`pyserini_dense_ext.encoders.colbert.rerank`),
the candidate documents encoded from the corpus.
"""
from .candidates import Candidates, candidates_from_run, docids_to_ids
from .reranker import Reranker
from .scoring import candidate_scores, max_row_scores, sort_by_score

__all__ = ["Candidates", "Reranker", "candidate_scores", "candidates_from_run", "docids_to_ids", "max_row_scores",
           "sort_by_score"]
