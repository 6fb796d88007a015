"""ONNX with the real MiniLM on SciFact test: fp32 parity and identical top-10 vs Pyserini, int8 effectiveness.

Document vectors (torch fp32) come from the ``scifact_minilm_index`` fixture, reused from the test cache
while its fingerprints match SciFact and the model.
"""
from __future__ import annotations

import re
from pathlib import Path

import faiss
import numpy as np
import pytest

from pyserini_dense_ext.encoders import load_model
from pyserini_dense_ext.index import read_index_dir
from pyserini_dense_ext.io.corpus import read_corpus
from pyserini_dense_ext.io.qrels import read_qrels
from pyserini_dense_ext.io.topics import read_topics
from pyserini_dense_ext.onnx import OnnxQueryEncoder, export_onnx, load_onnx
from pyserini_dense_ext.repro import expected

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

OPTIONS = dict(family="repbert", pooling="mean", l2_norm=True, doc_segment_id=0, query_max_length=256,
               doc_max_length=256)


@pytest.fixture(scope="module")
def setup(minilm_dir, scifact, scifact_minilm_index, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx-minilm")
    paths = {p: out / f"query-{p}.onnx" for p in ("fp32", "int8")}
    for precision, path in paths.items():
        export_onnx(minilm_dir, "query", path, precision=precision, check=False, **OPTIONS)
    torch_model = load_model(minilm_dir, **OPTIONS)
    qrels = read_qrels(scifact / "qrels" / "test.tsv")
    topics = read_topics(scifact / "queries.jsonl", qids=set(qrels))
    docs = read_corpus(scifact / "corpus.jsonl")
    index, docids, _ = read_index_dir(scifact_minilm_index)
    assert docids == [d.docid for d in docs]
    return dict(paths=paths, torch=torch_model, topics=topics, qrels=qrels, docs=docs, index_dir=scifact_minilm_index,
                doc_vectors=index.reconstruct_n(0, index.ntotal), scifact=scifact)


def test_document_export_matches_torch(setup, minilm_dir, tmp_path):
    path = tmp_path / "document.onnx"
    export_onnx(minilm_dir, "document", path, check=False, **OPTIONS)
    texts = [d.contents for d in setup["docs"][:64]]
    got = load_onnx(path).encode(texts, "document")
    assert np.abs(got - setup["torch"].encode(texts, "document")).max() <= 1e-4


def test_fp32_queries_match_torch_and_give_pyserinis_top10(setup, minilm_dir):
    from pyserini.encode import AutoQueryEncoder
    from pyserini.search.faiss import FaissSearcher

    qids, texts = list(setup["topics"]), list(setup["topics"].values())
    onnx_vectors = load_onnx(setup["paths"]["fp32"]).encode(texts, "query")
    assert np.abs(onnx_vectors - setup["torch"].encode(texts, "query")).max() <= 1e-4

    ours = FaissSearcher(str(setup["index_dir"]), OnnxQueryEncoder(str(setup["paths"]["fp32"])))
    theirs = FaissSearcher(str(setup["index_dir"]), AutoQueryEncoder(str(minilm_dir), pooling="mean", l2_norm=True))
    got, expected = ours.batch_search(texts, qids, k=10), theirs.batch_search(texts, qids, k=10)
    assert len(expected) == 300
    for qid in qids:
        assert [h.docid for h in got[qid]] == [h.docid for h in expected[qid]], qid
        np.testing.assert_allclose([h.score for h in got[qid]], [h.score for h in expected[qid]], atol=1e-4)


def ndcg10(vectors: np.ndarray, setup) -> float:
    from pyserini_dense_ext.eval.metrics import evaluate

    docids = [d.docid for d in setup["docs"]]
    scores, rows = faiss.knn(vectors, setup["doc_vectors"], 10, metric=faiss.METRIC_INNER_PRODUCT)
    run = {qid: [(docids[r], float(s)) for r, s in zip(rows[i], scores[i])] for i, qid in enumerate(setup["topics"])}
    return evaluate(run, setup["qrels"], ["ndcg@10"])["ndcg@10"]


def doc_row(path: Path, first_cell: str) -> list[list[float]]:
    """The numbers in each cell after the first of the Markdown table row of ``path`` starting with ``first_cell``."""
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] == first_cell:
            return [[float(x) for x in re.findall(r"\d+\.\d+", c)] for c in cells[1:]]
    raise AssertionError(f"{path}: no table row {first_cell!r}")


@pytest.mark.parametrize("batch_size", [1, 32, 300])
def test_int8_keeps_effectiveness(setup, batch_size):
    """Activations are quantised per batch, so int8 vectors depend a little on the batch: check 1, 32 and all at
    once, and that docs/onnx.md's table states what this measures."""
    texts = list(setup["topics"].values())
    torch_vectors = setup["torch"].encode(texts, "query")
    fp32 = load_onnx(setup["paths"]["fp32"]).encode(texts, "query", batch_size=batch_size)
    int8 = load_onnx(setup["paths"]["int8"]).encode(texts, "query", batch_size=batch_size)
    cosine = (torch_vectors * int8).sum(1) / np.linalg.norm(torch_vectors, axis=1) / np.linalg.norm(int8, axis=1)
    assert cosine.min() >= 0.99
    ndcg_fp32, ndcg_int8 = ndcg10(fp32, setup), ndcg10(int8, setup)
    value, tolerance = expected("scifact-onnx-fp32", "ndcg@10")  # = Pyserini's score for this recipe (pyserini.encode)
    assert ndcg_fp32 == pytest.approx(value, abs=tolerance)
    assert abs(ndcg_int8 - ndcg_fp32) <= 0.005
    stated = doc_row(ROOT / "docs/onnx.md", str(batch_size) if batch_size < 300 else "300 (all at once)")
    assert stated == [[round(float(cosine.min()), 3), round(float(cosine.mean()), 3)], [round(ndcg_int8, 4)],
                      [round(ndcg_fp32, 4)]]


def test_readme_int8_row_is_what_the_search_command_scores(setup, tmp_path):
    """The matrix's (so README's) ONNX int8 rows: python -m pyserini_dense_ext.search at --batch-size 32 (its default)
    and 1; the command encodes 256 queries per chunk, so its batches are not those of one 300-query encode call."""
    from pyserini_dense_ext.eval.metrics import evaluate
    from pyserini_dense_ext.io import read_run
    from pyserini_dense_ext.search.__main__ import main

    scores = []
    for batch_size in (32, 1):
        out = tmp_path / f"int8-{batch_size}.trec"
        assert main(["--index", str(setup["index_dir"]), "--encoder", str(setup["paths"]["int8"]), "--topics",
                     str(setup["scifact"] / "queries.jsonl"), "--qids-from", str(setup["scifact"] / "qrels/test.tsv"),
                     "--batch-size", str(batch_size), "--output", str(out), "--quiet"]) == 0
        scores.append(round(evaluate(read_run(out), setup["qrels"], ["ndcg@10"])["ndcg@10"], 4))
    assert [expected(row, "ndcg@10")[0] for row in ("scifact-onnx-int8", "scifact-onnx-int8-batch1")] == scores
    stated = re.search(r"it scores (\d\.\d{4}) at its default\s+`--batch-size 32` and (\d\.\d{4}) at `--batch-size 1`",
                       (ROOT / "docs/onnx.md").read_text(encoding="utf-8"))
    assert [float(x) for x in stated.groups()] == scores
