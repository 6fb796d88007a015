"""Pyserini's hit objects (``DenseSearchResult``), many at a time.

A batch search returns one object per hit: 300 queries at k = 1000 are 300,000 objects, each
with its own ``__dict__``. Created while the cyclic garbage collector is running, every 700 of
them start a collection that also walks the ones made before, and building them took longer
than the search itself (0.9 s of a 3.7 s hybrid batch, profiled). They hold only a string and a
float, so they can form no cycle: the collector is paused while they are made.
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator, Sequence

from ..pyserini_compat import DenseSearchResult


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block (if it was on), then as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def hit_list(docids: Sequence[str], scores: Sequence[float]) -> list[DenseSearchResult]:
    """``[DenseSearchResult(docid, score), ...]``; call it inside :func:`gc_paused` when making many."""
    return list(map(DenseSearchResult, docids, scores))
