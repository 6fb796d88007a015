"""Reproduce the published SciFact figures with the real MiniLM checkpoint and Pyserini's BM25.

References (not our own outputs): all-MiniLM-L6-v2 nDCG@10 0.6451 on SciFact test (MTEB);
Pyserini BM25 flat (k1=0.9, b=0.4) nDCG@10 0.6789 and R@100 0.9253 (Pyserini's BEIR figures).
Expected values come from the reproduction matrix (repro/scifact.yaml), which the README and
docs tables are generated from; its hybrid rows and the search.hybrid --help example are checked
against what the tune command prints.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyserini_dense_ext.encoders.presets import MINILM
from pyserini_dense_ext.eval.metrics import evaluate
from pyserini_dense_ext.io import read_qrels, read_topics
from pyserini_dense_ext.repro import expected, load
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
    for metric in ("ndcg@10", "recall@100"):
        value, tolerance = expected("scifact-minilm", metric)
        assert scores[metric] == pytest.approx(value, abs=tolerance)


def test_the_index_record_configures_minilm_named_only_by_family(scifact_minilm_index, minilm_dir, test_split):
    """``search --family repbert`` on the MiniLM index once used RepBERT's 20 query tokens (nDCG@10 0.6045)."""
    topics, qrels = test_split
    searcher = DenseSearcher(scifact_minilm_index, minilm_dir, family="repbert")
    assert searcher.query_encoder.config.query_max_length == MINILM["query_max_length"]
    scores = evaluate(searcher.search_run(topics, k=1000, progress=False), qrels, ("ndcg@10",))
    value, tolerance = expected("scifact-minilm", "ndcg@10")
    assert scores["ndcg@10"] == pytest.approx(value, abs=tolerance)


def test_bm25_reproduces_pyserini_beir_flat(scifact_bm25_index, test_split):
    from pyserini.search.lucene import LuceneSearcher

    topics, qrels = test_split
    searcher = LuceneSearcher(str(scifact_bm25_index))
    searcher.set_bm25(0.9, 0.4)
    hits = searcher.batch_search(list(topics.values()), list(topics), k=1000, threads=2)
    run = {q: [(h.docid, h.score) for h in hits[q]] for q in topics}
    scores = evaluate(run, qrels, ("ndcg@10", "recall@100"))
    for metric in ("ndcg@10", "recall@100"):
        value, tolerance = expected("scifact-bm25", metric)
        assert scores[metric] == pytest.approx(value, abs=tolerance)


ROOT = Path(__file__).resolve().parents[1]


def numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+\.\d+|\d+", cell)]


@pytest.fixture(scope="module")
def tuned(scifact, scifact_minilm_index, scifact_bm25_index, minilm_dir, tmp_path_factory):
    """docs/hybrid.md's tune command (tuned on the 809 train queries, scored on the 300 test queries), and the
    untuned Pyserini defaults from the runs it saved: {csv name: {method: row}}."""
    import csv

    from pyserini_dense_ext.tune import main as tune_main

    out = tmp_path_factory.mktemp("tune")
    recipe = ["--family", "repbert", "--pooling", "mean", "--l2-norm", "--query-max-length", "256",
              "--doc-segment-id", "0"]
    assert tune_main(["dense", "--index", str(scifact_minilm_index), "--encoder", str(minilm_dir), *recipe,
                      "sparse", "--index", str(scifact_bm25_index), "--k1", "0.9", "--b", "0.4",
                      "tune", "--topics", str(scifact / "queries.jsonl"), "--qrels", str(scifact / "qrels/train.tsv"),
                      "--eval-qrels", str(scifact / "qrels/test.tsv"), "--csv", str(out / "sweep.csv"),
                      "--save-runs", str(out / "runs"), "--threads", "2", "--no-plot", "--quiet"]) == 0
    assert tune_main(["tune", "--runs", str(out / "runs/sparse.eval.trec"), str(out / "runs/dense.eval.trec"),
                      "--qrels", str(scifact / "qrels/test.tsv"), "--methods", "linear", "rrf", "--alphas", "0.1",
                      "--rrf-ks", "60", "--csv", str(out / "untuned.csv"), "--no-plot", "--quiet"]) == 0

    def read(name):
        rows = {}
        for r in csv.DictReader((out / name).open()):
            rows.setdefault(r["method"], []).append(r)
        return rows

    test = {m: rs[0] for m, rs in read("sweep.eval.csv").items()}
    train = {m: next(r for r in rs if r["value"] == test[m]["value"]) for m, rs in read("sweep.csv").items()}
    return {"train": train, "test": test, "untuned": {m: rs[0] for m, rs in read("untuned.csv").items()}}


TUNE_METRICS = ("ndcg@10", "recall@100")  # the metrics tune's CSV holds


def test_matrix_hybrid_rows_are_what_tune_reports(tuned):
    """Every SciFact hybrid row of the matrix (README's and docs/hybrid.md's tables): tune's chosen value, its train
    and test scores; the untuned rows from the saved runs; BM25 and dense as tune scored them."""
    def score(split: str, method: str, metric: str) -> float:
        return round(float(tuned[split][method][metric]), 4)

    rows = load().rows
    checked = 0
    for row in rows.values():
        method, split = (row.notes["tune"], "test") if "tune" in row.notes else (row.notes.get("untuned"), "untuned")
        if row.name in ("scifact-bm25", "scifact-minilm"):
            method, split = ("sparse" if row.name == "scifact-bm25" else "dense"), "test"
        if method is None:
            continue
        assert set(TUNE_METRICS) <= set(row.expected), row.name
        for metric in TUNE_METRICS:  # what tune reports (a row may state more, e.g. BM25's R@1000: repro checks it)
            value = row.expected[metric]
            assert score(split, method, metric) == pytest.approx(value, abs=row.tolerance), (row.name, metric)
        if split == "test":
            assert numbers(row.notes["train"]) == [score("train", method, "ndcg@10")], row.name
            stated = numbers(row.notes["value"])
            assert stated == ([float(tuned["test"][method]["value"])] if tuned["test"][method]["value"] else []), \
                row.name
        checked += 1
    assert checked == 13


def test_hybrid_tuned_on_train_beats_bm25_and_dense_on_test(tuned):
    """Every fused run beats both BM25 and dense alone on test nDCG@10 and R@100 (docs/hybrid.md)."""
    test = tuned["test"]
    for method, row in (("sparse", "scifact-bm25"), ("dense", "scifact-minilm")):
        value, tolerance = expected(row, "ndcg@10")
        assert float(test[method]["ndcg@10"]) == pytest.approx(value, abs=tolerance)
    for method, row in test.items():
        if method in ("sparse", "dense"):
            continue
        for metric in ("ndcg@10", "recall@100"):
            assert float(row[metric]) > max(float(test["sparse"][metric]), float(test["dense"][metric])), \
                (method, metric)


def test_hybrid_help_example_scores_what_it_says(scifact, scifact_minilm_index, scifact_bm25_index, minilm_dir,
                                                  tuned, tmp_path, capsys):
    """Each command of search.hybrid --help's examples, run as written (paths filled in), scores the nDCG@10 its
    comment states: the default fusion (auto) and Pyserini's linear fusion at the alpha tune picks on train."""
    from pyserini_dense_ext.io import read_run
    from pyserini_dense_ext.search.hybrid.__main__ import EXAMPLE, main

    qrels = read_qrels(scifact / "qrels" / "test.tsv")
    commands = [block for block in EXAMPLE.split("\n\n") if "python -m pyserini_dense_ext.search.hybrid" in block]
    assert len(commands) == 2
    for block in commands:
        stated = float(re.search(r"scores nDCG@10 (\d\.\d{4})", block).group(1))
        command = " ".join(block.split("python -m pyserini_dense_ext.search.hybrid")[1].split("\\"))
        argv = command.replace("indexes/scifact-minilm", str(scifact_minilm_index)).replace(
            "indexes/scifact-bm25", str(scifact_bm25_index)).replace("MODEL_DIR", str(minilm_dir)).replace(
            "../shared/data/scifact", str(scifact)).replace("runs/scifact.hybrid.trec", str(tmp_path / "run.trec")).split()
        assert main(argv + ["--quiet"]) == 0
        assert round(evaluate(read_run(tmp_path / "run.trec"), qrels, ("ndcg@10",))["ndcg@10"], 4) == stated
    assert "fusion" not in commands[0].split("python -m")[1] and "--alpha 1 --normalization centred" in commands[1]
    assert float(tuned["test"]["linear:centred"]["value"]) == 1
