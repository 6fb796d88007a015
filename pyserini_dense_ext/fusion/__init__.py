"""Rank fusion: pure functions over per-query ranked lists (no I/O).

Every method scores a :class:`~.base.Pool` (one query's lists merged over their union) and the
result is sorted by fused score, ties by docid. ``METHODS`` names each method once; the CLIs
take their choices, defaults and sweep parameter from it.

    fuse([bm25_run, dense_run], "linear", alpha=0.1, normalization="centred", k=1000)
    fuse_rankings([[("d1", 12.0), ("d2", 9.5)], [("d2", 0.8)]], "rrf")
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .base import Hits, Pool, Ranking, as_hits, pool, to_ranking, top_k
from .comb import combmnz, combsum
from .interleave import interleave
from .linear import linear
from .normalize import NORMALIZATIONS, normalize, normalize_list
from .rrf import rrf
from .weighted import weighted

Run = dict[str, Ranking]


@dataclass(frozen=True)
class Method:
    """A fusion method: its scoring function, how many lists it takes and what a sweep varies."""

    fn: Callable[..., np.ndarray]
    summary: str
    min_lists: int = 2
    max_lists: int | None = None
    sweep: str | None = None  # the parameter ``tune`` varies

    @property
    def defaults(self) -> dict[str, Any]:
        return {n: p.default for n, p in inspect.signature(self.fn).parameters.items() if n != "pool"}


METHODS: dict[str, Method] = {
    "linear": Method(linear, "min-fill linear, alpha*sparse + dense (TCT-ColBERT, Pyserini's HybridSearcher)",
                     max_lists=2, sweep="alpha"),
    "interleave": Method(interleave, "alternate a1, b1, a2, b2, ... keeping first positions (RepBERT)"),
    "weighted": Method(weighted, "weighted sum alpha*sparse + dense, absent adds 0 (ME-BERT)", sweep="alpha"),
    "rrf": Method(rrf, "reciprocal rank fusion, sum 1/(rrf_k + rank) (Cormack et al.)", sweep="rrf_k"),
    "combsum": Method(combsum, "sum of normalised scores (Fox and Shaw)"),
    "combmnz": Method(combmnz, "CombSUM times the number of lists returning the doc (Fox and Shaw)"),
}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown fusion method {name!r}; choose from {sorted(METHODS)}") from None


def check_params(method: str, params: dict[str, Any]) -> None:
    """Fail early on a parameter the method does not take (a typo would otherwise pass silently)."""
    unknown = sorted(set(params) - set(get_method(method).defaults))
    if unknown:
        raise ValueError(f"fusion method {method!r} takes {sorted(get_method(method).defaults) or 'no parameters'}, "
                         f"not {unknown}")
    norm = params.get("normalization")
    if norm is not None and norm not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {norm!r}; choose from {NORMALIZATIONS}")


def fuse_hits(lists: Sequence[Hits], method: str, k: int | None = None, qid: str | None = None,
              **params: Any) -> Hits:
    """One query's ranked lists as arrays in, fused arrays (docids, scores) out, best first."""
    m = get_method(method)
    if len(lists) < m.min_lists or (m.max_lists is not None and len(lists) > m.max_lists):
        wanted = m.min_lists if m.max_lists == m.min_lists else (
            f"{m.min_lists} to {m.max_lists}" if m.max_lists else f"at least {m.min_lists}")
        raise ValueError(f"fusion method {method!r} takes {wanted} ranked lists, got {len(lists)}")
    p = pool(lists, qid)
    if len(p.docids) == 0:
        return p.docids, np.empty(0)
    return top_k(p.docids, m.fn(p, **params), k)


def fuse_rankings(rankings: Sequence[Ranking], method: str, k: int | None = None, **params: Any) -> Ranking:
    """One query: ``[(docid, score), ...]`` lists (each best first) in, one fused list out."""
    check_params(method, params)
    return to_ranking(fuse_hits([as_hits(r) for r in rankings], method, k, **params))


def fuse(runs: Sequence[Run], method: str, k: int | None = None, depth: int | None = None,
         **params: Any) -> Run:
    """Fuse whole runs query by query.

    ``depth`` keeps each input's top hits only; ``k`` cuts the output. A query missing from
    some runs is fused from the runs that have it (a run with no hits for a query often
    omits it); queries keep the order in which the runs first name them.
    """
    check_params(method, params)
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be positive, got {depth}")
    if k is not None and k < 1:
        raise ValueError(f"k must be positive, got {k}")
    qids = list(dict.fromkeys(q for run in runs for q in run))
    fused: Run = {}
    for qid in qids:
        lists = [as_hits(run.get(qid, [])[:depth]) for run in runs]
        fused[qid] = to_ranking(fuse_hits(lists, method, k, qid=qid, **params))
    return fused


def missing_queries(runs: Sequence[Run]) -> list[tuple[int, list[str]]]:
    """For each run lacking queries that others have: (run index, those qids)."""
    every = set().union(*runs) if runs else set()
    return [(i, sorted(every - run.keys())) for i, run in enumerate(runs) if every - run.keys()]


__all__ = ["METHODS", "NORMALIZATIONS", "Hits", "Method", "Pool", "Ranking", "Run", "as_hits", "check_params",
           "combmnz", "combsum", "fuse", "fuse_hits", "fuse_rankings", "get_method", "interleave", "linear",
           "missing_queries", "normalize", "normalize_list", "pool", "rrf", "to_ranking", "top_k", "weighted"]
