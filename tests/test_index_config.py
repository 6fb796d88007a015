"""An index's recorded encoder config is the default for its query side; contradictions warn or fail."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pyserini_dense_ext.encode.__main__ import main as encode_main
from pyserini_dense_ext.encoders import EncoderConfig, load_model
from pyserini_dense_ext.io import InputError, read_run
from pyserini_dense_ext.search import DenseSearcher

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ["protein in cells", "cancer gene risk", "wing flow over the aircraft wing at mach two", "hello"]
# Off RepBERT's paper defaults (no L2 norm, 20 query tokens, document segment 1), as MiniLM's settings are.
SETTINGS = dict(l2_norm=True, query_max_length=6, doc_segment_id=0)
FLAGS = ["--l2-norm", "--query-max-length", "6", "--doc-segment-id", "0"]


@pytest.fixture(scope="module")
def index(tiny_bert, tmp_path_factory) -> Path:
    """A plain HF dir encoded as RepBERT with non-default settings, recorded in the index's metadata."""
    from conftest import write_jsonl

    root = tmp_path_factory.mktemp("recorded")
    texts = ["protein expression in human cells", "cancer risk and gene expression", "heat flow in a boundary layer",
             "shock wave at mach number two", "pressure on aircraft wing in flow", "hello world document",
             "the effect of treatment on cells", "mice study of disease treatment"]
    corpus = write_jsonl(root / "corpus.jsonl", [{"_id": f"d{i}", "text": t} for i, t in enumerate(texts)])
    assert encode_main(["input", "--corpus", str(corpus), "encoder", "--encoder", str(tiny_bert), "--family",
                        "repbert", *FLAGS, "output", "--index", str(root / "idx"), "--quiet"]) == 0
    return root / "idx"


def results(searcher):
    return {q: [(h.docid, h.score) for h in hits]
            for q, hits in searcher.batch_search(QUERIES, [f"q{i}" for i in range(4)], k=5).items()}


def test_the_index_configures_a_plain_dir_even_when_the_family_is_named(index, tiny_bert, caplog):
    """The regression: --family repbert on an index of differently configured vectors used RepBERT's 20 tokens."""
    recorded = EncoderConfig.for_family("repbert", **SETTINGS)
    reference = DenseSearcher(index, tiny_bert, family="repbert", **SETTINGS)  # everything spelled out
    with caplog.at_level(logging.WARNING):
        for family in ("repbert", None):
            searcher = DenseSearcher(index, tiny_bert, family=family)
            assert searcher.query_encoder.config == recorded
            assert results(searcher) == results(reference)
    assert caplog.records == []


def test_a_contradicting_flag_or_model_dir_warns_naming_both_values(index, tiny_bert, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        searcher = DenseSearcher(index, tiny_bert, family="repbert", pooling="cls")
    assert searcher.query_encoder.config.pooling == "cls"  # the flag still wins
    [message] = [r.getMessage() for r in caplog.records]
    assert "pooling='mean'" in message and "pooling='cls'" in message and "--pooling" in message
    own = tmp_path / "own"  # a model dir whose own dense_ext.json differs from the index's record
    load_model(tiny_bert, family="repbert", **{**SETTINGS, "query_max_length": 9}).save(own)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert DenseSearcher(index, own).query_encoder.config.query_max_length == 9
    [message] = [r.getMessage() for r in caplog.records]
    assert "query_max_length=6" in message and "query_max_length=9" in message and "own config" in message


def test_another_family_is_an_error(index, tiny_bert, tiny_family_dirs):
    with pytest.raises(InputError, match="encoded by a repbert encoder, but --family is tct_colbert") as e:
        DenseSearcher(index, tiny_bert, family="tct_colbert")
    assert e.value.field == "family"
    with pytest.raises(InputError, match="own config is tct_colbert"):
        DenseSearcher(index, tiny_family_dirs["tct_colbert"])
    from pyserini_dense_ext.encoders import load_query_encoder

    with pytest.raises(InputError, match="query encoder's family is tct_colbert"):  # an encoder built beforehand
        DenseSearcher(index, load_query_encoder(tiny_family_dirs["tct_colbert"]))


def test_search_cli_and_hybrid_use_the_record(index, tiny_bert, tmp_path):
    from pyserini_dense_ext.index.lucene import build_lucene_index
    from pyserini_dense_ext.io import read_corpus
    from pyserini_dense_ext.search.__main__ import main as search_main
    from pyserini_dense_ext.search.hybrid import build_hybrid

    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(QUERIES)))
    common = ["--index", str(index), "--encoder", str(tiny_bert), "--topics", str(topics), "--hits", "5", "--quiet"]
    assert search_main([*common, "--family", "repbert", "--output", str(tmp_path / "named.trec")]) == 0
    assert search_main([*common, "--family", "repbert", *FLAGS, "--output", str(tmp_path / "flags.trec")]) == 0
    assert read_run(tmp_path / "named.trec") == read_run(tmp_path / "flags.trec")
    # BM25 over the dense index's own corpus: the hybrid refuses two indexes of different collections
    lucene = build_lucene_index(read_corpus(index.parent / "corpus.jsonl"), tmp_path / "bm25", threads=1,
                                progress=False)
    hybrid = build_hybrid(index, tiny_bert, lucene, family="repbert")
    assert hybrid.dense_searcher.query_encoder.config == EncoderConfig.for_family("repbert", **SETTINGS)


def launch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pyserini_dense_ext.launch", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_pyserini_search_faiss_through_launch_uses_the_record(index, tiny_bert, tmp_path):
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(QUERIES)))
    reference = results(DenseSearcher(index, tiny_bert, family="repbert", **SETTINGS))
    for extra in ([], ["--encoder-class", "dense_ext.repbert"]):  # a plain HF dir, with and without our class
        run = tmp_path / f"run{len(extra)}.trec"
        result = launch("search.faiss", "--index", str(index), "--encoder", str(tiny_bert), "--topics", str(topics),
                        "--output", str(run), "--hits", "5", *extra)
        assert result.returncode == 0, result.stderr[-2000:]
        got = read_run(run)
        for qid, hits in reference.items():
            assert [d for d, _ in got[qid]] == [d for d, _ in hits]
            np.testing.assert_allclose([s for _, s in got[qid]], [s for _, s in hits], rtol=1e-5)
    bad = launch("search.faiss", "--index", str(index), "--encoder", str(tiny_bert), "--topics", str(topics),
                 "--output", str(tmp_path / "bad.trec"), "--encoder-class", "dense_ext.tct_colbert")
    assert bad.returncode == 2 and "encoded by a repbert encoder" in bad.stderr and "Traceback" not in bad.stderr
