"""Rank fusion: pure functions over per-query ranked lists (no I/O).

Every method scores a :class:`~.base.Pool` (one query's lists merged over their union) and the
result is sorted by fused score, ties by docid. ``METHODS`` names each method once; the CLIs
take their choices, defaults and sweep parameter from it. :func:`resolve` checks a method's
parameters once, where the method is chosen, and returns the :class:`Fusion` that every path
(runs, the hybrid searcher, the sweep) applies query by query without checking them again. A
method with ``calibrate`` (``auto``, the default) first estimates parameters from all the queries
fused together (:meth:`Fusion.fuse_pools`), then scores each query with them.

    fuse([bm25_run, dense_run], "linear", alpha=0.1, normalization="centred", k=1000)
    fuse_rankings([[("d1", 12.0), ("d2", 9.5)], [("d2", 0.8)]], "rrf")
    rrf60 = resolve("rrf", rrf_k=60); rrf60.fuse_hits([sparse_hits, dense_hits], k=10)
"""
from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .agreement import agreement
from .auto import auto
from .auto import calibrate as calibrate_auto
from .base import Hits, Pool, Ranking, as_hits, pool, to_ranking, top_k
from .borda import borda
from .comb import combmnz, combsum
from .dispersion import PREDICTORS, dispersion
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
    # Parameters estimated from all the queries fused together (``auto``), unless given.
    calibrate: Callable[[Sequence[Pool]], dict[str, Any]] | None = None
    estimates: tuple[str, ...] = ()

    @property
    def defaults(self) -> dict[str, Any]:
        return {n: p.default for n, p in inspect.signature(self.fn).parameters.items() if n != "pool"}

    def check_lists(self, name: str, n: int) -> None:
        if n < self.min_lists or (self.max_lists is not None and n > self.max_lists):
            wanted = self.min_lists if self.max_lists == self.min_lists else (
                f"{self.min_lists} to {self.max_lists}" if self.max_lists else f"at least {self.min_lists}")
            raise ValueError(f"fusion method {name!r} takes {wanted} ranked lists, got {n}")


METHODS: dict[str, Method] = {
    "linear": Method(linear, "min-fill linear, alpha*sparse + dense (TCT-ColBERT, Pyserini's HybridSearcher)",
                     max_lists=2, sweep="alpha"),
    "interleave": Method(interleave, "alternate a1, b1, a2, b2, ... keeping first positions (RepBERT)"),
    "weighted": Method(weighted, "weighted sum alpha*sparse + dense, absent adds 0 (ME-BERT)", sweep="alpha"),
    "rrf": Method(rrf, "reciprocal rank fusion, sum 1/(rrf_k + rank) (Cormack et al.)", sweep="rrf_k"),
    "combsum": Method(combsum, "sum of normalised scores (Fox and Shaw)"),
    "combmnz": Method(combmnz, "CombSUM times the number of lists returning the doc (Fox and Shaw)"),
    "borda": Method(borda, "Borda count: sum of (n - rank + 1) / n per list (Aslam and Montague)"),
    "dispersion": Method(dispersion, "z-scores weighted per query by each list's score dispersion (QPP: WIG, NQC)"),
    "agreement": Method(agreement, "equal z-score fusion gated per query by top-10 overlap, else the more "
                                   "confident list", max_lists=2),
    "auto": Method(auto, "the default: agreement's weight estimated once over all queries fused together",
                   max_lists=2, calibrate=calibrate_auto, estimates=("dense_weight",)),
}
DEFAULT_METHOD = "auto"


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown fusion method {name!r}; choose from {sorted(METHODS)}") from None


class UnknownParameters(ValueError):
    """Parameters a method does not take (a typo would otherwise pass silently)."""

    def __init__(self, method: str, unknown: list[str], takes: list[str]):
        self.method, self.unknown = method, unknown
        super().__init__(f"fusion method {method!r} takes {takes or 'no parameters'}, not {unknown}")


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_value(name: str, value: Any) -> None:
    """What each parameter may be; :func:`resolve` calls this once per parameter."""
    if name == "normalization" and value not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {value!r}; choose from {NORMALIZATIONS}")
    if name == "weight_on_dense" and not isinstance(value, bool):
        raise ValueError(f"weight_on_dense must be True or False, got {value!r}")
    if name == "alpha" and not _finite(value):
        raise ValueError(f"alpha must be a finite number, got {value!r}")
    if name == "rrf_k" and not (_finite(value) and value >= 0):
        raise ValueError(f"rrf_k must be non-negative, got {value!r}")
    if name == "weights" and not (isinstance(value, (list, tuple)) and value and all(map(_finite, value))):
        raise ValueError(f"weights must be a non-empty list of finite numbers, got {value!r}")
    if name == "predictor" and value not in PREDICTORS:
        raise ValueError(f"unknown predictor {value!r}; choose from {PREDICTORS}")
    if name == "dense_weight" and value is not None and not (_finite(value) and 0 <= value <= 1):
        raise ValueError(f"dense_weight must be in [0, 1], got {value!r}")
    if name == "tau" and not (_finite(value) and value > 0):
        raise ValueError(f"tau must be positive, got {value!r}")
    if name == "beta" and not (_finite(value) and value >= 0):
        raise ValueError(f"beta must be non-negative, got {value!r}")
    if name == "overlap_k" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"overlap_k must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Fusion:
    """A method with checked parameters, made by :func:`resolve`; applied to any number of queries."""

    name: str
    method: Method
    params: Mapping[str, Any] = field(default_factory=dict)

    def fuse_pool(self, p: Pool, k: int | None = None) -> Hits:
        """One query's pooled lists to fused (docids, scores), best first."""
        if len(p.docids) == 0:
            return p.docids, np.empty(0)
        return top_k(p.docids, self.method.fn(p, **self.params), k)

    def fuse_hits(self, lists: Sequence[Hits], k: int | None = None, qid: str | None = None) -> Hits:
        """One query's ranked lists as arrays in, fused arrays (docids, scores) out, best first."""
        return self.fuse_pools([self.pool(lists, qid)], k)[0]

    def pool(self, lists: Sequence[Hits], qid: str | None = None) -> Pool:
        """One query's ranked lists pooled, after checking that the method takes that many."""
        self.method.check_lists(self.name, len(lists))
        return pool(lists, qid)

    @property
    def calibrates(self) -> bool:
        """Whether the method still has parameters to estimate from the queries fused together."""
        return self.method.calibrate is not None and any(self.params.get(n) is None for n in self.method.estimates)

    def calibrated(self, pools: Sequence[Pool]) -> "Fusion":
        """This fusion with the parameters it estimates from ``pools`` filled in (itself when there are none)."""
        if not self.calibrates:
            return self
        estimated = self.method.calibrate(pools)
        return Fusion(self.name, self.method, {**self.params, **{n: estimated[n] for n in self.method.estimates
                                                                   if self.params.get(n) is None}})

    def fuse_pools(self, pools: Iterable[Pool], k: int | None = None) -> list[Hits]:
        """Queries fused together: calibrated once over all of them (``auto``), then each scored.

        Pools are consumed one at a time unless the method calibrates (then all are held at once).
        """
        fusion = self
        if self.calibrates:
            pools = list(pools)
            fusion = self.calibrated(pools)
        return [fusion.fuse_pool(p, k) for p in pools]


def resolve(method: str | Fusion, **params: Any) -> Fusion:
    """The method named ``method`` with ``params`` checked (names, values); a :class:`Fusion` passes through."""
    if isinstance(method, Fusion):
        if params:
            raise ValueError(f"{sorted(params)} given beside an already resolved {method.name!r} fusion")
        return method
    m = get_method(method)
    takes = m.defaults
    unknown = sorted(set(params) - set(takes))
    if unknown:
        raise UnknownParameters(method, unknown, sorted(takes))
    for name, value in params.items():
        check_value(name, value)
    return Fusion(method, m, dict(params))


def fuse_hits(lists: Sequence[Hits], method: str | Fusion, k: int | None = None, qid: str | None = None,
              **params: Any) -> Hits:
    """One query's ranked lists as arrays in, fused arrays (docids, scores) out, best first."""
    return resolve(method, **params).fuse_hits(lists, k, qid)


def fuse_rankings(rankings: Sequence[Ranking], method: str | Fusion, k: int | None = None, **params: Any) -> Ranking:
    """One query: ``[(docid, score), ...]`` lists (each best first) in, one fused list out."""
    return to_ranking(resolve(method, **params).fuse_hits([as_hits(r) for r in rankings], k))


def fuse(runs: Sequence[Run], method: str | Fusion, k: int | None = None, depth: int | None = None,
         **params: Any) -> Run:
    """Fuse whole runs query by query.

    ``depth`` keeps each input's top hits only; ``k`` cuts the output. A query missing from
    some runs is fused from the runs that have it (a run with no hits for a query often
    omits it); queries keep the order in which the runs first name them.
    """
    fusion = resolve(method, **params)
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be positive, got {depth}")
    if k is not None and k < 1:
        raise ValueError(f"k must be positive, got {k}")
    qids = list(dict.fromkeys(q for run in runs for q in run))
    pools = (fusion.pool([as_hits(run.get(qid, [])[:depth]) for run in runs], qid) for qid in qids)
    return {qid: to_ranking(hits) for qid, hits in zip(qids, fusion.fuse_pools(pools, k))}


def missing_queries(runs: Sequence[Run]) -> list[tuple[int, list[str]]]:
    """For each run lacking queries that others have: (run index, those qids)."""
    every = set().union(*runs) if runs else set()
    return [(i, sorted(every - run.keys())) for i, run in enumerate(runs) if every - run.keys()]


__all__ = ["DEFAULT_METHOD", "METHODS", "NORMALIZATIONS", "PREDICTORS", "Fusion", "Hits", "Method", "Pool", "Ranking",
           "Run", "UnknownParameters", "agreement", "as_hits", "auto", "borda", "combmnz", "combsum", "dispersion",
           "fuse", "fuse_hits", "fuse_rankings", "get_method", "interleave", "linear", "missing_queries", "normalize",
           "normalize_list", "pool", "resolve", "rrf", "to_ranking", "top_k", "weighted"]
