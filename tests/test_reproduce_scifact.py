"""Reproduce the published SciFact figures with the real MiniLM checkpoint and Pyserini's BM25.

References (not our own outputs): all-MiniLM-L6-v2 nDCG@10 0.6451 on SciFact test (MTEB);
Pyserini BM25 flat (k1=0.9, b=0.4) nDCG@10 0.6789 and R@100 0.9253 (Pyserini's BEIR figures).
"""
from __future__ import annotations

import pytest

from pyserini_dense_ext.encoders.presets import MINILM
from pyserini_dense_ext.eval.metrics import evaluate
from pyserini_dense_ext.io import read_qrels, read_topics
from pyserini_dense_ext.search import DenseSearcher

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


def test_the_index_record_configures_minilm_named_only_by_family(scifact_minilm_index, minilm_dir, test_split):
    """``search --family repbert`` on the MiniLM index once used RepBERT's 20 query tokens (nDCG@10 0.6045)."""
    topics, qrels = test_split
    searcher = DenseSearcher(scifact_minilm_index, minilm_dir, family="repbert")
    assert searcher.query_encoder.config.query_max_length == MINILM["query_max_length"]
    scores = evaluate(searcher.search_run(topics, k=1000, progress=False), qrels, ("ndcg@10",))
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


def test_hybrid_tuned_on_train_beats_bm25_and_dense_on_test(scifact, scifact_minilm_index, scifact_bm25_index,
                                                             minilm_dir, test_split):
    """Issue 3's claim: alpha tuned on the 809 train queries; the tuned hybrid wins on the 300 test queries."""
    from pyserini.search.lucene import LuceneSearcher

    from pyserini_dense_ext.fusion.sweep import Variant, best_values, sweep
    from pyserini_dense_ext.search.hybrid import HybridSearcher

    bm25 = LuceneSearcher(str(scifact_bm25_index))
    bm25.set_bm25(0.9, 0.4)
    hybrid = HybridSearcher(DenseSearcher(scifact_minilm_index, minilm_dir, **MINILM), bm25)
    train_qrels = read_qrels(scifact / "qrels" / "train.tsv")
    train = read_topics(scifact / "queries.jsonl", set(train_qrels))
    assert len(train) == 809
    variants = [Variant("linear"), Variant("weighted", "z-score")]
    grid = [0.0, 0.02, 0.05, 0.1, 0.3, 1.0, 3.0]
    rows = sweep(hybrid.search_lists(train, 1000, 2, progress=False), train_qrels, variants, grid, [], ("ndcg@10",),
                 k=1000, progress=False)
    best = best_values(rows, ("ndcg@10",))
    topics, qrels = test_split
    test_rows = sweep(hybrid.search_lists(topics, 1000, 2, progress=False), qrels, variants,
                      sorted({best[v.label]["ndcg@10"][0] for v in variants}), [], ("ndcg@10",), k=1000,
                      progress=False)
    alone = {r["method"]: r["ndcg@10"] for r in test_rows if r["value"] is None}
    assert alone["sparse"] == pytest.approx(0.6789, abs=0.002) and alone["dense"] == pytest.approx(0.6451, abs=0.005)
    for v in variants:
        tuned = best[v.label]["ndcg@10"][0]
        score = next(r["ndcg@10"] for r in test_rows if r["method"] == v.label and r["value"] == tuned)
        assert score > max(alone.values()), (v.label, tuned, score)
