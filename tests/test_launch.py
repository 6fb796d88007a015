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


def test_launcher_help_and_unsupported_modules(capsys):
    from pyserini_dense_ext.launch import main

    assert launch("--help").returncode == 0
    for module in ("search.lucene", "search.lucene-nope"):
        assert main([module, "--index", "x"]) == 2
        err = capsys.readouterr().err
        assert "usage" in err and f"error: {module} is not supported: the launcher runs only search.faiss, encode, " \
                                  "search.hybrid" in err


class Parsed(Exception):
    """Raised where a Pyserini CLI would start working: its arguments parsed."""


def parse_through_launcher(monkeypatch, module: str, args: list[str], stop: tuple[str, str]) -> list:
    """Run ``launch MODULE ARGS`` in-process up to Pyserini's first call after parsing; return every namespace
    Pyserini's parsers produced (a group's unknown argument would have been exit 2 instead)."""
    import argparse
    import importlib

    from pyserini_dense_ext.launch import main

    namespaces = []
    original = argparse.ArgumentParser.parse_args

    def recording(self, *a, **kw):
        namespaces.append(original(self, *a, **kw))
        return namespaces[-1]

    def stop_here(*a, **kw):
        raise Parsed()

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", recording)
    monkeypatch.setattr(importlib.import_module(stop[0]), stop[1], stop_here)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(Parsed):
        main([module, *args])
    return namespaces


def groups_in_every_order(groups: dict[str, list[str]]):
    import itertools

    for order in itertools.permutations(groups):
        yield order, [token for name in order for token in (name, *groups[name])]


def test_encoder_class_lands_in_the_encoder_group_in_every_order(tiny_family_dirs, tmp_path, monkeypatch):
    """It was appended at the end, so it landed in whichever group came last: 'unrecognized arguments'."""
    from pyserini_dense_ext.onnx import export_onnx

    document = tmp_path / "d.onnx"
    export_onnx(tiny_family_dirs["repbert"], "document", document, optimize_graph=False, check=False)
    for encoder, key in ((tiny_family_dirs["repbert"], "dense_ext"), (document, "dense_ext.onnx")):
        groups = {"input": ["--corpus", str(tmp_path)], "output": ["--embeddings", str(tmp_path / "e"), "--to-faiss"],
                  "encoder": ["--encoder", str(encoder), "--device", "cpu"]}
        for order, argv in groups_in_every_order(groups):
            parsed = parse_through_launcher(monkeypatch, "encode", argv, ("pyserini.util", "resolve_device"))
            assert [n.encoder_class for n in parsed if hasattr(n, "encoder_class")] == [key], order


def test_encoder_class_lands_in_the_dense_group_of_hybrid_in_every_order(tiny_family_dirs, tmp_path, monkeypatch):
    from pyserini_dense_ext.onnx import export_onnx

    query = tmp_path / "q.onnx"
    export_onnx(tiny_family_dirs["repbert"], "query", query, optimize_graph=False, check=False)
    for encoder, key in ((tiny_family_dirs["repbert"], "dense_ext"), (query, "dense_ext.onnx")):
        groups = {"dense": ["--index", "I", f"--encoder={encoder}"], "sparse": ["--index", "S"],
                  "fusion": ["--alpha", "0.05"], "run": ["--topics", "T", "--output", "O"]}
        for order, argv in groups_in_every_order(groups):
            parsed = parse_through_launcher(monkeypatch, "search.hybrid", argv,
                                            ("pyserini.query_iterator", "get_query_iterator"))
            assert [n.encoder_class for n in parsed if hasattr(n, "encoder_class")] == [key], order


def test_pyserini_hybrid_runs_our_onnx_query_encoder_with_fusion_last(tiny_family_dirs, tiny_corpus, tmp_path):
    """The issue's command: dense ... sparse ... fusion --alpha ... run ..., with a query export."""
    from pyserini.search.faiss import FaissSearcher
    from pyserini.search.hybrid import HybridSearcher
    from pyserini.search.lucene import LuceneSearcher

    from pyserini_dense_ext.index.lucene import build_lucene_index
    from pyserini_dense_ext.io import read_corpus, read_run
    from pyserini_dense_ext.onnx import OnnxQueryEncoder, export_onnx

    query = tmp_path / "q.onnx"
    export_onnx(tiny_family_dirs["repbert"], "query", query, optimize_graph=False, check=False)
    dense = build(tiny_family_dirs["repbert"], tiny_corpus, tmp_path / "dense")
    sparse = build_lucene_index(read_corpus(tiny_corpus), tmp_path / "bm25", progress=False)
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(QUERIES)))
    out = tmp_path / "run.trec"
    result = launch("search.hybrid", "dense", "--index", str(dense), "--encoder", str(query), "sparse", "--index",
                    str(sparse), "run", "--topics", str(topics), "--output", str(out), "--hits", "5",
                    "fusion", "--alpha", "0.05")
    assert result.returncode == 0, result.stderr[-2000:]
    lucene = LuceneSearcher(str(sparse))
    expected = HybridSearcher(FaissSearcher(str(dense), OnnxQueryEncoder(str(query))), lucene).batch_search(
        QUERIES, [f"q{i}" for i in range(len(QUERIES))], k0=1000, k=5, alpha=0.05)
    got = read_run(out)
    for qid, hits in expected.items():  # Pyserini orders equal scores by set iteration: compare as dicts
        assert dict(got[qid]) == pytest.approx({h.docid: float(h.score) for h in hits}, abs=1e-6)
