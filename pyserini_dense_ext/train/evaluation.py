"""Dev-split ranking for training: score candidates with vectors, evaluate with our eval module."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..encoders.base import DenseModel
from ..eval import evaluate
from ..io.qrels import Qrels
from ..io.runs import Run
from .data import Corpus

CORPUS_DEPTH = 1000  # hits kept per query when the whole corpus is ranked (trec_eval's usual depth)


def score_candidates(query_vectors: np.ndarray, doc_vectors: np.ndarray) -> np.ndarray:
    """Inner products ``(nq, d) x (nd, d) -> (nq, nd)``; multi-vector documents ``(nd, m, d)`` score
    their best vector (ME-BERT's max over m), as a flat index of m rows per document does."""
    if doc_vectors.ndim == 3:
        return np.einsum("qd,nmd->qnm", query_vectors, doc_vectors).max(axis=2)
    return query_vectors @ doc_vectors.T


def rank_rows(query_vectors: np.ndarray, qids: Sequence[str], doc_vectors: np.ndarray, rows: Sequence[int],
              docids: Sequence[str], candidates: Mapping[str, Sequence[int]] | None) -> Run:
    """Each query's candidates (corpus rows) scored by its vector; without candidates, its top
    :data:`CORPUS_DEPTH` of all ``rows``. ``doc_vectors[i]`` is the vector of corpus row ``rows[i]``."""
    position = {r: i for i, r in enumerate(rows)}
    scores = score_candidates(query_vectors, doc_vectors)
    run: Run = {}
    for i, qid in enumerate(qids):
        if candidates is not None:
            cols = np.fromiter((position[r] for r in candidates[qid]), dtype=np.int64)
        else:
            k = min(CORPUS_DEPTH, len(rows))
            cols = np.argpartition(-scores[i], k - 1)[:k]
        run[qid] = [(docids[rows[c]], float(scores[i, c])) for c in cols.tolist()]
    return run


def rank_by_encoding(model: DenseModel, queries: Mapping[str, str], corpus: Corpus,
                     candidates: Mapping[str, Sequence[int]] | None, batch_size: int) -> Run:
    """Encode the dev queries and their candidate documents (every document without candidates) with
    the model as it is now, and rank: the dev ranking of a recipe that trains the document side."""
    rows = sorted(set().union(*candidates.values())) if candidates is not None else range(len(corpus))
    doc_vectors = model.encode([corpus.texts[r] for r in rows], "document", batch_size=batch_size)
    query_vectors = model.encode(list(queries.values()), "query", batch_size=batch_size)
    return rank_rows(query_vectors, list(queries), doc_vectors, list(rows), corpus.docids, candidates)


def rank_with_index(model: DenseModel, queries: Mapping[str, str], index_dir: str | Path, batch_size: int,
                    k: int = CORPUS_DEPTH) -> Run:
    """Encode the dev queries with the model as it is now and search a fixed index (flat is exact;
    ME-BERT rows take their max): the dev ranking of a recipe whose document vectors do not change
    (CODER). A recipe that trains the document side must re-encode instead (:func:`rank_by_encoding`)."""
    from ..search import DenseSearcher

    searcher = DenseSearcher(index_dir)
    vectors = model.encode(list(queries.values()), "query", batch_size=batch_size)
    scores, docs = searcher.search_vectors(vectors, min(k, searcher.num_docs))
    return {qid: searcher.to_ranking(scores[i], docs[i]) for i, qid in enumerate(queries)}


def dev_metrics(run: Run, qrels: Qrels, metrics: Sequence[str]) -> dict[str, float]:
    """Means over every dev query (``trec_eval -c``: a query the run misses counts 0)."""
    return evaluate(run, qrels, metrics, complete=True)
