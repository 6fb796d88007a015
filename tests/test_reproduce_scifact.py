"""Reproduce the published SciFact figures with the real MiniLM checkpoint and Pyserini's BM25.

References (not our own outputs): all-MiniLM-L6-v2 nDCG@10 0.6451 on SciFact test (MTEB);
Pyserini BM25 flat (k1=0.9, b=0.4) nDCG@10 0.6789 and R@100 0.9253 (Pyserini's BEIR figures).
"""
from __future__ import annotations

import pytest

from pyserini_dense_ext.eval.metrics import evaluate
from pyserini_dense_ext.io import read_qrels, read_topics
from pyserini_dense_ext.search import DenseSearcher

from conftest import MINILM

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def test_split(scifact):
    qrels = read_qrels(scifact / "qrels" / "test.tsv")
    return read_topics(scifact / "queries.jsonl", set(qrels)), qrels


def test_minilm_dense_reproduces_mteb(scifact_minilm_index, minilm_dir, test_split):
    topics, qrels = test_split
    assert len(topics) == 300
    searcher = DenseSearcher(scifact_minilm_index, minilm_dir, **MINILM)
    scores = evaluate(searcher.search_run(topics, k=1000, progress=False), qrels, ("ndcg@10", "recall@100"))
    assert scores["ndcg@10"] == pytest.approx(0.6451, abs=0.005)


def test_bm25_reproduces_pyserini_beir_flat(scifact_bm25_index, test_split):
    from pyserini.search.lucene import LuceneSearcher

    topics, qrels = test_split
    searcher = LuceneSearcher(str(scifact_bm25_index))
    searcher.set_bm25(0.9, 0.4)
    hits = searcher.batch_search(list(topics.values()), list(topics), k=1000, threads=2)
    run = {q: [(h.docid, h.score) for h in hits[q]] for q in topics}
    scores = evaluate(run, qrels, ("ndcg@10", "recall@100"))
    assert scores["ndcg@10"] == pytest.approx(0.6789, abs=0.002)
    assert scores["recall@100"] == pytest.approx(0.9253, abs=0.002)
