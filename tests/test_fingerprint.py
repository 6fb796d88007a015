"""Reuse keyed on content: corpus and model fingerprints, the test cache, resume, merge and hybrid checks."""
from __future__ import annotations

import dataclasses
import shutil

import pytest

from pyserini_dense_ext.index.chunks import partial_dir
from pyserini_dense_ext.index.encode import encode_corpus
from pyserini_dense_ext.encoders import load_model
from pyserini_dense_ext.index import read_index_dir, reuse_problems
from pyserini_dense_ext.io import Doc, InputError, read_corpus
from pyserini_dense_ext.io.fingerprint import (combine_fingerprints, docs_fingerprint, encoder_fingerprint,
                                               model_fingerprint)

from conftest import cached_dense_index, cached_lucene_index, crash_on_call

DOCS = [Doc(f"d{i}", t) for i, t in enumerate(["protein cells", "wing flow", "heat layer", "mach shock", "gene"])]


def test_docs_fingerprint_is_the_content_and_combines_over_shards():
    fp = docs_fingerprint(DOCS)
    assert fp == docs_fingerprint(list(DOCS)) and len(fp) == 64
    changed = [DOCS[0], Doc("d1", "wing flows"), *DOCS[2:]]
    renamed = [DOCS[0], Doc("x1", "wing flow"), *DOCS[2:]]
    titled = [DOCS[0], Doc("d1", "flow", title="wing"), *DOCS[2:]]  # contents "wing flow": what is indexed
    assert docs_fingerprint(changed) != fp and docs_fingerprint(renamed) != fp
    assert docs_fingerprint(titled) == fp
    assert docs_fingerprint(DOCS[:4]) != fp  # one document fewer
    assert combine_fingerprints([docs_fingerprint(DOCS[:2]), docs_fingerprint(DOCS[2:])]) == fp


def test_model_fingerprint_follows_content_not_path(tiny_family_dirs, tmp_path):
    original = tiny_family_dirs["repbert"]
    link = tmp_path / "link"
    link.symlink_to(original, target_is_directory=True)
    copy = shutil.copytree(original, tmp_path / "copy")
    fp = model_fingerprint(original)
    assert model_fingerprint(link) == model_fingerprint(copy) == fp
    (copy / "tokenizer_config.json").write_text((copy / "tokenizer_config.json").read_text() + " ")
    assert model_fingerprint(copy) != fp
    config = load_model(original).config.to_dict()
    assert encoder_fingerprint(link, config) == encoder_fingerprint(original, config)
    assert encoder_fingerprint(original, {**config, "pooling": "cls"}) != encoder_fingerprint(original, config)


def test_onnx_fingerprint_covers_the_graph_and_its_tokenizer(tiny_family_dirs, tmp_path):
    from pyserini_dense_ext.onnx import export_onnx

    path = tmp_path / "q.onnx"
    export_onnx(tiny_family_dirs["repbert"], "query", path, optimize_graph=False, check=False)
    fp = model_fingerprint(path)
    moved = shutil.copytree(tmp_path, tmp_path.parent / (tmp_path.name + "-moved"))
    assert model_fingerprint(moved / "q.onnx") == fp
    tokenizer = moved / "q.tokenizer" / "tokenizer_config.json"
    tokenizer.write_text(tokenizer.read_text() + " ")
    assert model_fingerprint(moved / "q.onnx") != fp


def test_index_dirs_record_what_they_were_built_from(tiny_family_dirs, tmp_path):
    model = load_model(tiny_family_dirs["repbert"])
    encoder_id = encoder_fingerprint(tiny_family_dirs["repbert"], model.config.to_dict())
    out = encode_corpus(DOCS, model, tmp_path / "idx", encoder_id, "hnsw", progress=False, hnsw_m=8)
    meta = read_index_dir(out)[2]
    assert meta.corpus == docs_fingerprint(DOCS) and meta.encoder == encoder_id
    assert meta.index_options == {"hnsw_m": 8, "ef_construction": 200, "ef_search": 256}
    assert reuse_problems(out, docs_fingerprint(DOCS), encoder_id, "hnsw", hnsw_m=8) == []
    assert reuse_problems(out, docs_fingerprint(DOCS[1:]), encoder_id, "hnsw") == ["it holds other documents"]
    assert reuse_problems(out, docs_fingerprint(DOCS), {**encoder_id, "l2_norm": True}, "hnsw") == \
        ["another encoder made it (differs in l2_norm)"]
    assert reuse_problems(out, docs_fingerprint(DOCS), encoder_id, "flat", hnsw_m=16) == \
        ["it is a hnsw index, not flat", "it was built with other options (hnsw_m)"]


def test_test_cache_rebuilds_for_another_corpus_and_reuses_the_same_one(tiny_family_dirs, tmp_path):
    """conftest's SciFact fixtures reused .cache/scifact-bm25 whenever it existed: whatever it held."""
    from pyserini.search.lucene import LuceneSearcher

    model = load_model(tiny_family_dirs["repbert"])
    encoder_id = encoder_fingerprint(tiny_family_dirs["repbert"], model.config.to_dict())
    other = [Doc("z1", "boundary layer"), Doc("z2", "shock wave")]
    dense, sparse = tmp_path / "dense", tmp_path / "bm25"
    for docs in (DOCS, other):
        assert cached_dense_index(dense, docs, model, encoder_id) == dense
        assert read_index_dir(dense)[1] == [d.docid for d in docs]
        assert cached_lucene_index(sparse, docs) == sparse
        lucene = LuceneSearcher(str(sparse))
        assert lucene.num_docs == len(docs) and all(lucene.doc(d.docid) is not None for d in docs)
    stamp = (dense / "index").stat().st_mtime_ns, (sparse / "dense_ext_lucene.json").stat().st_mtime_ns
    cached_dense_index(dense, other, model, encoder_id)
    cached_lucene_index(sparse, other)
    assert ((dense / "index").stat().st_mtime_ns, (sparse / "dense_ext_lucene.json").stat().st_mtime_ns) == stamp
    other_model = load_model(tiny_family_dirs["tct_colbert"])
    other_id = encoder_fingerprint(tiny_family_dirs["tct_colbert"], other_model.config.to_dict())
    cached_dense_index(dense, other, other_model, other_id)
    assert read_index_dir(dense)[2].encoder == other_id


def test_resume_refuses_chunks_of_other_texts_under_the_same_docids(tiny_family_dirs, tmp_path):
    """The partial dir's fingerprint hashed the docids only: an edited corpus resumed with stale vectors."""
    model = load_model(tiny_family_dirs["repbert"])
    with crash_on_call(model, "encode", 2), pytest.raises(KeyboardInterrupt):
        encode_corpus(DOCS, model, tmp_path / "idx", {"model": "x"}, chunk_size=2, progress=False)
    edited = [dataclasses.replace(DOCS[0], text="another text"), *DOCS[1:]]
    with pytest.raises(ValueError, match="partial run made with other arguments or another corpus"):
        encode_corpus(edited, model, tmp_path / "idx", {"model": "x"}, chunk_size=2, progress=False)
    assert partial_dir(tmp_path / "idx").exists()


def test_hybrid_refuses_dense_and_sparse_indexes_of_other_corpora(tiny_family_dirs, tiny_corpus, tmp_path):
    from pyserini.search.lucene import LuceneSearcher

    from pyserini_dense_ext.index.lucene import build_lucene_index
    from pyserini_dense_ext.search import DenseSearcher
    from pyserini_dense_ext.search.hybrid import HybridSearcher

    docs = read_corpus(tiny_corpus)
    model = load_model(tiny_family_dirs["repbert"])
    dense = DenseSearcher(encode_corpus(docs, model, tmp_path / "dense", {"model": "x"}, progress=False),
                          tiny_family_dirs["repbert"])
    same = build_lucene_index(docs, tmp_path / "same", progress=False)
    other = build_lucene_index(docs[:-1], tmp_path / "other", progress=False)
    HybridSearcher(dense, LuceneSearcher(str(same)))
    with pytest.raises(InputError, match="other.dense_ext_lucene.json: field 'corpus' indexes other documents than "
                                         "the dense index"):
        HybridSearcher(dense, LuceneSearcher(str(other)))
