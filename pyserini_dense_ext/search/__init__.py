"""Searchers: dense (single- and multi-vector FAISS) and, in ``hybrid``, sparse + dense."""
from .dense import DenseSearcher

__all__ = ["DenseSearcher"]
