"""CODER on SciFact with the real MiniLM (slow): a short run of the recipe beats the base model on the test
queries, single-stage and reranking, and reranking the base's list is CODER's own ranking restricted to it.

Trained on the 809 training queries (20% held out as dev) for 60 steps at the dev-chosen learning rate
(docs/coder.md has the full run and its numbers); the base MiniLM's nDCG@10 on the 300 test queries is the
matrix's row coder-base (repro/coder.yaml).
"""
from __future__ import annotations

import pytest

from pyserini_dense_ext.eval.metrics import evaluate
from pyserini_dense_ext.io import read_qrels, read_topics, write_run
from pyserini_dense_ext.repro import expected
from pyserini_dense_ext.rerank import Reranker
from pyserini_dense_ext.search import DenseSearcher
from pyserini_dense_ext.train.__main__ import main as train_main

pytestmark = pytest.mark.slow
BASE_NDCG10, BASE_TOLERANCE = expected("coder-base", "ndcg@10")


@pytest.fixture(scope="module")
def coder_model(scifact, scifact_minilm_index, minilm_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("coder-scifact")
    train_qrels = read_qrels(scifact / "qrels" / "train.tsv")
    base = DenseSearcher(scifact_minilm_index, minilm_dir, family="repbert")  # the index's record configures it
    run = base.search_run(read_topics(scifact / "queries.jsonl", set(train_qrels)), k=1000, progress=False)
    write_run(root / "dense.train.trec", run)
    out = root / "model"
    assert train_main(["coder", "--model", str(minilm_dir), "--family", "repbert", "--index",
                       str(scifact_minilm_index), "--vectors-cache", str(root / "vectors"), "--data", str(scifact),
                       "--negatives", str(root / "dense.train.trec"), "--output", str(out), "--max-steps", "60",
                       "--learning-rate", "1e-4", "--eval-steps", "0", "--quiet", "--no-plot"]) == 0
    return out, root


def test_coder_beats_the_base_model_single_stage_and_reranking(coder_model, scifact, scifact_minilm_index,
                                                               minilm_dir):
    model, root = coder_model
    qrels = read_qrels(scifact / "qrels" / "test.tsv")
    topics = read_topics(scifact / "queries.jsonl", set(qrels))
    base_run = DenseSearcher(scifact_minilm_index, minilm_dir, family="repbert").search_run(topics, 1000, progress=False)
    assert evaluate(base_run, qrels, ["ndcg@10"])["ndcg@10"] == pytest.approx(BASE_NDCG10, abs=BASE_TOLERANCE)
    single = DenseSearcher(scifact_minilm_index, model).search_run(topics, 1000, progress=False)
    reranked = Reranker(scifact_minilm_index, model, vectors_cache=root / "vectors").rerank_run(topics, base_run,
                                                                                               progress=False)
    single_scores, rerank_scores = evaluate(single, qrels, ["ndcg@10"]), evaluate(reranked, qrels, ["ndcg@10"])
    assert single_scores["ndcg@10"] > BASE_NDCG10 + 0.03
    assert rerank_scores["ndcg@10"] > BASE_NDCG10 + 0.03
    for qid in topics:  # reranking the base's list = CODER's own ranking restricted to that list
        candidates = {d for d, _ in base_run[qid]}
        expected = [(d, s) for d, s in single[qid] if d in candidates][:10]
        got = reranked[qid][:10]
        assert [d for d, _ in got] == [d for d, _ in expected]
        assert max(abs(a - b) for (_, a), (_, b) in zip(got, expected)) < 1e-5
