"""Pyserini's own CLIs running our encoder classes through the launcher."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from pyserini_dense_ext.encoders import ENCODER_CLASSES, load_model, load_query_encoder, register
from pyserini_dense_ext.launch import prepare_argv
from pyserini_dense_ext.search import DenseSearcher

from test_index_search import QUERIES, build

ROOT = Path(__file__).resolve().parents[1]


def launch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pyserini_dense_ext.launch", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_register_adds_our_classes_to_pyserini_maps():
    from pyserini.encode import document_encoder_class_map, query_encoder_class_map

    register()
    for name, (q, d) in ENCODER_CLASSES.items():
        assert query_encoder_class_map[name] is q and document_encoder_class_map[name] is d
    assert query_encoder_class_map["tct_colbert"].__module__.startswith("pyserini.")  # Pyserini's own untouched


def test_our_dirs_get_our_class_whatever_the_path_says(tiny_family_dirs, tmp_path):
    tricky = shutil.copytree(tiny_family_dirs["repbert"], tmp_path / "my-ance-dpr-model")
    assert prepare_argv("search.faiss", ["--encoder", str(tricky)])[-2:] == ["--encoder-class", "dense_ext"]
    assert prepare_argv("search.faiss", ["--encoder", str(tricky), "--encoder-class", "ance"])[-1] == "ance"
    plain = tmp_path / "plain"
    plain.mkdir()
    assert prepare_argv("search.faiss", ["--encoder", str(plain)]) == ["--encoder", str(plain)]
    with pytest.raises(ValueError, match="3 rows per document"):
        prepare_argv("encode", ["--encoder", str(tiny_family_dirs["mebert"])])


def test_mebert_onnx_document_export_is_refused_by_pyserini_encode(tiny_family_dirs, tmp_path):
    from pyserini_dense_ext.onnx import export_onnx

    doc = tmp_path / "mebert-d.onnx"
    export_onnx(tiny_family_dirs["mebert"], "document", doc, optimize_graph=False, check=False)
    with pytest.raises(ValueError, match="3 rows per document"):
        prepare_argv("encode", ["--encoder", str(doc)])
    query = tmp_path / "mebert-q.onnx"
    export_onnx(tiny_family_dirs["mebert"], "query", query, optimize_graph=False, check=False)
    assert prepare_argv("search.faiss", ["--encoder", str(query)])[-1] == "dense_ext.onnx"


def test_pyserini_search_faiss_runs_our_encoder(tiny_family_dirs, tiny_corpus, tmp_path):
    tricky = shutil.copytree(tiny_family_dirs["repbert"], tmp_path / "ance-like-name")
    index = build(tricky, tiny_corpus, tmp_path / "idx")
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(QUERIES)))
    run = tmp_path / "run.trec"
    result = launch("search.faiss", "--index", str(index), "--encoder", str(tricky), "--topics", str(topics),
                    "--output", str(run), "--hits", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line.split() for line in run.read_text().splitlines()]
    ours = DenseSearcher(index, load_query_encoder(tricky)).batch_search(QUERIES, [f"q{i}" for i in range(4)], k=5)
    for qid, hits in ours.items():
        assert [l[2] for l in lines if l[0] == qid] == [h.docid for h in hits]


def test_pyserini_encode_runs_our_document_encoder(tiny_family_dirs, tiny_corpus, tmp_path):
    import json

    collection = tmp_path / "collection"
    collection.mkdir()
    rows = [json.loads(line) for line in tiny_corpus.read_text().splitlines()]
    (collection / "docs.jsonl").write_text("".join(
        json.dumps({"id": r["_id"], "contents": r["text"]}) + "\n" for r in rows))
    out = tmp_path / "pyserini-index"
    result = launch("encode", "input", "--corpus", str(collection), "--fields", "text",
                    "output", "--embeddings", str(out), "--to-faiss",
                    "encoder", "--encoder", str(tiny_family_dirs["tct_colbert"]), "--fields", "text",
                    "--device", "cpu", "--dimension", "32", "--max-length", "512", "--batch-size", "4")
    assert result.returncode == 0, result.stderr[-2000:]
    index = faiss.read_index(str(out / "index"))
    model = load_model(tiny_family_dirs["tct_colbert"])
    expected = model.encode([r["text"] for r in rows], "document")
    np.testing.assert_allclose(index.reconstruct_n(0, index.ntotal), expected, atol=1e-5)


def test_launcher_help_and_unknown_module():
    assert launch("--help").returncode == 0
    bad = launch("search.lucene-nope")
    assert bad.returncode == 2 and "usage" in bad.stderr
