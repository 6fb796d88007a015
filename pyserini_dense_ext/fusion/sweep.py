"""Sweep fusion settings over fixed ranked lists: the pure part of ``python -m pyserini_dense_ext.tune``.

Each query's sparse and dense lists are pooled once (:func:`~.base.pool`) and re-scored for every
setting by the same :class:`~pyserini_dense_ext.fusion.Fusion` the hybrid searcher applies, so a
sweep costs a fusion and an evaluation per value, not a search, and a tuned value scores exactly
what ``search.hybrid`` with that value returns.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence


from ..eval.metrics import Qrels, evaluate
from ..progress import progress_iter
from . import METHODS, NORMALIZATIONS, Hits, Run, as_hits, get_method, pool, resolve, to_ranking

Lists = dict[str, tuple[Hits, Hits]]  # qid -> (sparse hits, dense hits)
Row = dict[str, Any]  # {"method": label, "value": swept value or None, metric: mean, ...}
Best = dict[str, dict[str, tuple[Any, float]]]  # {method label: {metric: (best value, score)}}


@dataclass(frozen=True)
class Variant:
    """A fusion method with a fixed normalisation; ``sweep`` names the parameter varied (or None)."""

    method: str
    normalization: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Variant":
        """``METHOD[:NORMALIZATION]``, e.g. ``linear:centred``."""
        method, _, norm = text.partition(":")
        get_method(method)
        if norm:
            if norm not in NORMALIZATIONS:
                raise ValueError(f"unknown normalisation {norm!r} in {text!r}; choose from {NORMALIZATIONS}")
            if "normalization" not in METHODS[method].defaults:
                raise ValueError(f"{text!r}: {method} does not normalise scores")
        return cls(method, norm or None)

    @property
    def label(self) -> str:
        return self.method + (f":{self.normalization}" if self.normalization else "")

    @property
    def sweep(self) -> str | None:
        return METHODS[self.method].sweep

    def params(self, value: float | None) -> dict[str, Any]:
        params: dict[str, Any] = {} if self.normalization is None else {"normalization": self.normalization}
        if self.sweep is not None and value is not None:
            params[self.sweep] = value
        return params


def lists_of_runs(sparse: Run, dense: Run, qids: set[str], depth: int) -> Lists:
    """The two runs' top-``depth`` hits of each judged query (a query a run lacks has an empty list there)."""
    return {q: (as_hits(sparse.get(q, [])[:depth]), as_hits(dense.get(q, [])[:depth])) for q in sorted(qids)}


def _alone(lists: Lists, qrels: Qrels, metrics: Sequence[str]) -> list[Row]:
    """The sparse and the dense list scored on their own."""
    return [{"method": name, "value": None, **evaluate({q: to_ranking(h[i]) for q, h in lists.items()}, qrels, metrics)}
            for i, name in enumerate(("sparse", "dense"))]


def sweep(lists: Lists, qrels: Qrels, variants: Sequence[Variant], alphas: Sequence[float],
          rrf_ks: Sequence[float], metrics: Sequence[str], k: int, progress: bool = True) -> list[Row]:
    """One row per (variant, value), plus the two lists alone."""
    pools = {q: pool([s, d], q) for q, (s, d) in lists.items()}
    grid = [(v, x) for v in variants for x in ({"alpha": alphas, "rrf_k": rrf_ks}.get(v.sweep or "", [None]))]
    rows = _alone(lists, qrels, metrics)
    for variant, value in progress_iter(grid, "sweep", "setting", progress):
        fused = resolve(variant.method, **variant.params(value)).fuse_pools(pools.values(), k)  # auto: calibrated
        run = {q: to_ranking(h) for q, h in zip(pools, fused)}
        rows.append({"method": variant.label, "value": value, **evaluate(run, qrels, metrics)})
    return rows


def best_values(rows: Sequence[Row], metrics: Sequence[str]) -> Best:
    """``{method: {metric: (best value, score)}}``; the first (smallest) value wins a tie."""
    best: Best = {}
    for row in rows:
        for m in metrics:
            current = best.setdefault(row["method"], {}).get(m)
            if current is None or row[m] > current[1]:
                best[row["method"]][m] = (row["value"], row[m])
    return best


def evaluate_tuned(lists: Lists, qrels: Qrels, best: Mapping[str, Mapping[str, tuple[Any, float]]],
                   variants: Sequence[Variant], metrics: Sequence[str], k: int) -> list[Row]:
    """Each variant at the value that won the first metric, and the two lists alone, on held-out queries."""
    rows = _alone(lists, qrels, metrics)
    for v in variants:
        value = best[v.label][metrics[0]][0]
        fusion = resolve(v.method, **v.params(value))
        fused = fusion.fuse_pools([fusion.pool([s, d], q) for q, (s, d) in lists.items()], k)
        run = {q: to_ranking(h) for q, h in zip(lists, fused)}
        rows.append({"method": v.label, "value": value, **evaluate(run, qrels, metrics)})
    return rows
