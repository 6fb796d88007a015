"""Ranking metrics that reproduce ``trec_eval`` (9.0.x, the binary Anserini/Pyserini ship) to the digit.

What ``trec_eval`` does, and so what this module does (checked against the binary in tests/test_eval.py):

* Each query's hits are re-sorted by score descending, ties broken by docid in *descending* byte order
  (``form_res_rels.c: comp_sim_docno``); the rank column of the file is ignored.
* Scores are held as C ``float``: two scores equal in float32 are a tie, even if they differ as doubles.
* A document is relevant when its grade is >= 1; unjudged documents and negative grades count as 0.
* nDCG (``ndcg_cut``): gain = grade, discount log2(rank + 1); the ideal ranking is the query's judged grades
  sorted descending (Jarvelin & Kekalainen 2002, with the Burges-style discount of trec_eval >= 9.0.4).
* A query is averaged when it has both judgements and hits. Queries whose judgements are all grade 0
  still count (every metric is 0 for them). With ``complete`` (``trec_eval -c``) every judged query counts,
  those absent from the run scoring 0.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

Run = Mapping[str, Sequence[tuple[str, float]]]
Qrels = Mapping[str, Mapping[str, int]]

KINDS = ("ndcg", "mrr", "recall", "map", "p")
DEFAULT_METRICS = ("ndcg@10", "mrr@10", "recall@100", "recall@1000", "map")
_PATTERN = re.compile(r"^(ndcg|mrr|recall|map|p)(?:@(\d+))?$")


@dataclass(frozen=True)
class Metric:
    """One metric at an optional cutoff ``k`` (``None``: the whole ranking)."""

    kind: str
    k: int | None = None

    @property
    def name(self) -> str:
        return self.kind if self.k is None else f"{self.kind}@{self.k}"

    def __str__(self) -> str:
        return self.name


def parse_metric(name: str | Metric) -> Metric:
    """``"nDCG@10"`` -> ``Metric("ndcg", 10)``; unknown names and non-positive cutoffs raise ``ValueError``.

    Forms: ``ndcg[@k]``, ``mrr[@k]`` (trec_eval ``recip_rank`` under ``-M k``), ``recall[@k]``,
    ``map[@k]`` (``map`` / ``map_cut.k``) and ``p@k``; case is ignored.
    """
    if isinstance(name, Metric):
        return name
    match = _PATTERN.match(name.strip().lower())
    if match is None:
        raise ValueError(f"unknown metric {name!r}; use ndcg@k, mrr@k, recall@k, map, map@k or p@k "
                         f"(k a positive integer, e.g. ndcg@10)")
    kind, k = match.group(1), match.group(2)
    if k is None and kind == "p":
        raise ValueError(f"metric {name!r} needs a cutoff, e.g. p@10")
    if k is not None and int(k) <= 0:
        raise ValueError(f"metric {name!r}: the cutoff must be a positive integer")
    return Metric(kind, None if k is None else int(k))


def parse_metrics(names: Iterable[str | Metric]) -> list[Metric]:
    """Parse several names, dropping repeats but keeping order."""
    return list(dict.fromkeys(parse_metric(n) for n in names))


def trec_order(hits: Sequence[tuple[str, float]]) -> list[str]:
    """Docids in trec_eval's order: float32 score descending, then docid descending (byte order).

    ``np.lexsort`` gives (score asc, docid asc); reversing it gives trec_eval's order. Python ``str``
    order is code-point order, which equals the byte order ``strcmp`` sees in UTF-8.
    """
    if not hits:
        return []
    docids = np.array([d for d, _ in hits])
    scores = np.array([s for _, s in hits], dtype=np.float32)
    return docids[np.lexsort((docids, scores))[::-1]].tolist()


def _discounts(n: int) -> np.ndarray:
    """1 / log2(rank + 1) for ranks 1..n, float64."""
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def query_metrics(ranked_grades: np.ndarray, judged_grades: np.ndarray, metrics: Sequence[Metric]) -> list[float]:
    """Every metric for one query.

    ``ranked_grades``: int64 (n,), the grade of each retrieved doc in ranked order (0 if unjudged);
    ``judged_grades``: int64 (m,), all grades the query's judgements hold (for the ideal ranking and R).
    """
    n = len(ranked_grades)
    relevant = ranked_grades >= 1
    num_rel = int(np.count_nonzero(judged_grades >= 1))
    rel_cum = np.cumsum(relevant)
    out = []
    for m in metrics:
        k = n if m.k is None else min(m.k, n)
        if m.kind == "p":
            out.append(float(rel_cum[k - 1]) / m.k if k else 0.0)
        elif num_rel == 0:
            out.append(0.0)  # trec_eval: no relevant doc means 0, not undefined
        elif m.kind == "recall":
            out.append(float(rel_cum[k - 1]) / num_rel if k else 0.0)
        elif m.kind == "mrr":
            first = np.flatnonzero(relevant[:k])
            out.append(1.0 / (first[0] + 1) if len(first) else 0.0)
        elif m.kind == "map":
            ranks = np.flatnonzero(relevant[:k]) + 1
            out.append(float(np.sum(rel_cum[ranks - 1] / ranks)) / num_rel)
        else:  # ndcg
            gains = np.clip(ranked_grades[:k], 0, None)
            dcg = float(gains @ _discounts(k))
            ideal = np.sort(judged_grades[judged_grades > 0])[::-1]
            ideal = ideal if m.k is None else ideal[: m.k]
            out.append(dcg / float(ideal @ _discounts(len(ideal))))
    return out


def evaluate_per_query(run: Run, qrels: Qrels, metrics: Iterable[str | Metric] = DEFAULT_METRICS,
                       complete: bool = False) -> dict[str, dict[str, float]]:
    """``{qid: {metric name: value}}`` for exactly the queries trec_eval would average, in qid order.

    Those are the judged queries with at least one hit or, with ``complete`` (``-c``), all judged queries.
    Raises ``ValueError`` when no query has both hits and judgements (trec_eval exits 7 there).
    """
    parsed = parse_metrics(metrics)
    if not parsed:
        raise ValueError("no metrics requested")
    names = [m.name for m in parsed]
    qids = sorted(q for q in qrels if run.get(q) or complete)
    if not any(run.get(q) for q in qids):
        raise ValueError("no query has both hits in the run and judgements in the qrels")
    per_query = {}
    for qid in qids:
        judged = qrels[qid]
        ranked = np.array([judged.get(d, 0) for d in trec_order(run.get(qid) or ())], dtype=np.int64)
        values = query_metrics(ranked, np.fromiter(judged.values(), dtype=np.int64, count=len(judged)), parsed)
        per_query[qid] = dict(zip(names, values))
    return per_query


def mean_metrics(per_query: Mapping[str, Mapping[str, float]], metrics: Iterable[str | Metric]) -> dict[str, float]:
    """Arithmetic mean of each metric over the queries in ``per_query``."""
    names = [m.name for m in parse_metrics(metrics)]
    return {n: float(np.mean([v[n] for v in per_query.values()])) for n in names}


def evaluate(run: Run, qrels: Qrels, metrics: Iterable[str | Metric] = DEFAULT_METRICS,
             complete: bool = False) -> dict[str, float]:
    """``{metric name: mean}`` as ``trec_eval [-c]`` reports it (names canonical, e.g. ``"ndcg@10"``)."""
    metrics = parse_metrics(metrics)
    return mean_metrics(evaluate_per_query(run, qrels, metrics, complete), metrics)
