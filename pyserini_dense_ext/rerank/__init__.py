"""Reranking a first-stage run: ``python -m pyserini_dense_ext.rerank --scorer NAME``.

Scorers: ``colbert`` re-scores each query's top candidates by ColBERT's MaxSim over token vectors
(:func:`pyserini_dense_ext.encoders.colbert.rerank`), encoding the candidate documents from the corpus.
"""
