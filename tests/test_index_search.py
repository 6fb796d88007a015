"""Index dirs and dense search: Pyserini compatibility, brute-force references, safety of writes."""
from __future__ import annotations

import json

import faiss
import numpy as np
import pytest
from conftest import crash_on_call

from pyserini_dense_ext.encode.__main__ import main as encode_main
from pyserini_dense_ext.encoders import load_model, load_query_encoder
from pyserini_dense_ext.index import build_faiss_index, read_index_dir, write_index_dir
from pyserini_dense_ext.index.chunks import partial_dir
from pyserini_dense_ext.index.encode import encode_corpus, shard_slice
from pyserini_dense_ext.index.faiss_dir import IndexMeta
from pyserini_dense_ext.io import InputError, read_corpus
from pyserini_dense_ext.search import DenseSearcher

QUERIES = ["protein in cells", "cancer gene risk", "wing flow", "hello"]


def build(model_dir, corpus, out, index_type="flat", **kw):
    model = load_model(model_dir)
    return encode_corpus(read_corpus(corpus), model, out, {"model": str(model_dir)}, index_type,
                         chunk_size=5, batch_size=4, progress=False, **kw)


def test_encode_cli_writes_a_dir_pyserini_opens(tiny_family_dirs, tiny_corpus, tmp_path):
    from pyserini.search.faiss import FaissSearcher

    out = tmp_path / "idx"
    code = encode_main(["input", "--corpus", str(tiny_corpus), "encoder", "--encoder",
                        str(tiny_family_dirs["repbert"]), "--batch-size", "4", "output", "--index", str(out),
                        "--chunk-size", "5", "--quiet"])
    assert code == 0 and sorted(p.name for p in out.iterdir()) == ["dense_ext_index.json", "docid", "index"]
    assert not partial_dir(out).exists()
    docids = [d.docid for d in read_corpus(tiny_corpus)]
    assert (out / "docid").read_text().split() == docids
    encoder = load_query_encoder(tiny_family_dirs["repbert"])
    theirs = FaissSearcher(str(out), encoder).batch_search(QUERIES, ["q0", "q1", "q2", "q3"], k=5)
    ours = DenseSearcher(out, encoder).batch_search(QUERIES, ["q0", "q1", "q2", "q3"], k=5)
    for qid in theirs:
        assert [h.docid for h in ours[qid]] == [h.docid for h in theirs[qid]]
        np.testing.assert_allclose([h.score for h in ours[qid]], [h.score for h in theirs[qid]], rtol=1e-6)


def test_flat_search_equals_brute_force(tiny_family_dirs, tiny_corpus, tmp_path):
    out = build(tiny_family_dirs["repbert"], tiny_corpus, tmp_path / "idx")
    model = load_model(tiny_family_dirs["repbert"])
    docs = read_corpus(tiny_corpus)
    doc_vecs = model.encode([d.contents for d in docs], "document")
    q = model.encode(QUERIES, "query")
    ref_scores, ref_rows = faiss.knn(q, doc_vecs, 4, metric=faiss.METRIC_INNER_PRODUCT)
    scores, idx = DenseSearcher(out, load_query_encoder(tiny_family_dirs["repbert"])).search_vectors(q, 4)
    searcher = DenseSearcher(out)
    assert [[searcher.docids[i] for i in row] for row in idx] == [[docs[i].docid for i in row] for row in ref_rows]
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)


@pytest.fixture(scope="module")
def mebert_spread(tiny_bert, tmp_path_factory):
    """ME-BERT (m=3, projection to 16 + LayerNorm) with spread-out weights: at BERT's 0.02 init every document
    scores the same to 5 digits, and a ranking would be decided by float noise, not by the model."""
    import torch

    torch.manual_seed(0)  # the fresh projection's initial weights: the same model whatever ran before
    model = load_model(tiny_bert, family="mebert", num_vectors=3, projection_dim=16, strict=False)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator))
    out = tmp_path_factory.mktemp("mebert-spread")
    model.save(out)
    return out


def reference_mebert_vectors(model_dir, texts, side, m=3):
    """ME-BERT's vectors without our code: Hugging Face's BertModel one text at a time, the first m hidden states
    (the [CLS] state where a text is shorter than m tokens; [CLS] alone for queries), then Linear and LayerNorm
    computed in numpy from the weights in projection.safetensors."""
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer, BertModel

    tokenizer, bert = AutoTokenizer.from_pretrained(str(model_dir)), BertModel.from_pretrained(str(model_dir)).eval()
    weights = load_file(str(model_dir / "projection.safetensors"))
    out = []
    for text in texts:
        inputs = tokenizer(text, truncation=True, max_length=32 if side == "query" else 256, return_tensors="pt")
        with torch.no_grad():
            hidden = bert(**inputs).last_hidden_state[0].double().numpy()
        rows = hidden[:1] if side == "query" else np.concatenate([hidden[:m], np.repeat(hidden[:1], m, 0)])[:m]
        z = rows @ weights["0.weight"].T.astype(np.float64) + weights["0.bias"]
        z = (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-5)
        out.append(z * weights["1.weight"] + weights["1.bias"])
    return np.stack(out)[:, 0] if side == "query" else np.stack(out)


def test_mebert_vectors_equal_an_independent_linear_layernorm_projection(mebert_spread, tiny_corpus):
    model = load_model(mebert_spread)
    texts = [d.contents for d in read_corpus(tiny_corpus)]  # includes one-token documents (shorter than m)
    np.testing.assert_allclose(model.encode(texts, "document"), reference_mebert_vectors(mebert_spread, texts,
                                                                                         "document"), atol=1e-5)
    np.testing.assert_allclose(model.encode(QUERIES, "query"), reference_mebert_vectors(mebert_spread, QUERIES,
                                                                                        "query"), atol=1e-5)


def test_mebert_search_equals_brute_force_max_over_m(mebert_spread, tiny_corpus, tmp_path):
    out = build(mebert_spread, tiny_corpus, tmp_path / "idx")
    index, row_docids, meta = read_index_dir(out)
    docs = read_corpus(tiny_corpus)
    assert meta.rows_per_doc == 3 and index.ntotal == 3 * len(docs)
    assert row_docids == [d.docid for d in docs for _ in range(3)]
    doc_vecs = reference_mebert_vectors(mebert_spread, [d.contents for d in docs], "document")  # (n, m, d)
    q = reference_mebert_vectors(mebert_spread, QUERIES, "query")
    brute = np.einsum("qd,nmd->qnm", q, doc_vecs).max(axis=2)  # max inner product over the m vectors
    searcher = DenseSearcher(out, load_query_encoder(mebert_spread))
    for k in (1, 5, len(docs), len(docs) + 3):
        results = searcher.batch_search(QUERIES, ["a", "b", "c", "d"], k=k)
        for qi, qid in enumerate("abcd"):
            order = np.argsort(-brute[qi], kind="stable")[:k]
            assert np.all(np.diff(brute[qi][order]) < -1e-4)  # no near-ties: the order is the model's
            got = [(h.docid, h.score) for h in results[qid]]
            assert [d for d, _ in got] == [docs[i].docid for i in order]  # each score with its own docid
            np.testing.assert_allclose([s for _, s in got], brute[qi][order], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("change, message", [
    ("weights", "projection.safetensors: does not match projection_dim=16"),
    ("flag", "projection.safetensors: does not match projection_dim=8"),
    ("missing", "projection.safetensors: field 'projection_dim' is missing: the config asks for a projection_dim"),
])
def test_mebert_projection_dim_mismatch_is_an_input_error(mebert_spread, tmp_path, change, message):
    import shutil

    from safetensors.numpy import load_file, save_file

    broken = shutil.copytree(mebert_spread, tmp_path / "model")
    overrides = {}
    if change == "weights":  # the file holds an 8-dim projection while dense_ext.json says 16
        weights = load_file(str(broken / "projection.safetensors"))
        save_file({"0.weight": weights["0.weight"][:8], "0.bias": weights["0.bias"][:8],
                   "1.weight": weights["1.weight"][:8], "1.bias": weights["1.bias"][:8]},
                  str(broken / "projection.safetensors"))
    elif change == "flag":  # --projection-dim 8 over 16-dim trained weights
        overrides = {"projection_dim": 8}
    else:
        (broken / "projection.safetensors").unlink()
    with pytest.raises(InputError, match=message):
        load_model(broken, **overrides)


@pytest.mark.parametrize("index_type", ["hnsw", "pq"])
def test_approximate_index_types_build_and_search(tiny_family_dirs, tmp_path, index_type):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 32)).astype(np.float32)
    index = build_faiss_index(vectors, index_type, pq_m=8)
    assert index.ntotal == 300
    out = write_index_dir(tmp_path / "idx", index, [f"d{i}" for i in range(300)],
                          IndexMeta(dim=32, num_rows=300, num_docs=300, index_type=index_type))
    scores, idx = DenseSearcher(out).search_vectors(vectors[:5], 10)
    exact = np.argsort(-(vectors[:5] @ vectors.T), axis=1)[:, :10]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, exact)])
    assert overlap >= 0.5 and (idx >= 0).all()


def test_interrupted_write_leaves_no_index(tiny_family_dirs, tiny_corpus, tmp_path, monkeypatch):
    import pyserini_dense_ext.index.faiss_dir as faiss_dir

    def broken(f, *args):
        f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(faiss_dir, "write_flat_file", broken)
    with pytest.raises(OSError, match="disk full"):
        build(tiny_family_dirs["repbert"], tiny_corpus, tmp_path / "idx")
    assert not (tmp_path / "idx").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert partial_dir(tmp_path / "idx").exists()  # encoded chunks are kept for the re-run


def test_resume_after_a_crash_equals_an_uninterrupted_build(tiny_family_dirs, tiny_corpus, tmp_path):
    clean = build(tiny_family_dirs["repbert"], tiny_corpus, tmp_path / "clean")
    model = load_model(tiny_family_dirs["repbert"])
    docs = read_corpus(tiny_corpus)
    with crash_on_call(model, "encode", 2), pytest.raises(KeyboardInterrupt):  # killed in the second chunk
        encode_corpus(docs, model, tmp_path / "resumed", {"model": "x"}, chunk_size=5, progress=False)
    assert not (tmp_path / "resumed").exists()
    assert len(list(partial_dir(tmp_path / "resumed").glob("chunk-*.npy"))) == 1
    encode_corpus(docs, model, tmp_path / "resumed", {"model": "x"}, chunk_size=5, progress=False)
    a, ids_a, _ = read_index_dir(clean)
    b, ids_b, _ = read_index_dir(tmp_path / "resumed")
    assert ids_a == ids_b
    np.testing.assert_allclose(a.reconstruct_n(0, a.ntotal), b.reconstruct_n(0, b.ntotal), atol=1e-6)


def test_resume_refuses_a_partial_made_with_other_arguments(tiny_family_dirs, tiny_corpus, tmp_path):
    docs = read_corpus(tiny_corpus)
    work = partial_dir(tmp_path / "idx")
    work.mkdir()
    (work / "state.json").write_text(json.dumps({"fingerprint": "other"}))
    with pytest.raises(ValueError, match="other arguments"):
        encode_corpus(docs, load_model(tiny_family_dirs["repbert"]), tmp_path / "idx", {"model": "x"},
                      progress=False)


def test_existing_output_needs_overwrite(tiny_family_dirs, tiny_corpus, tmp_path):
    out = build(tiny_family_dirs["repbert"], tiny_corpus, tmp_path / "idx")
    with pytest.raises(FileExistsError, match="--overwrite"):
        build(tiny_family_dirs["repbert"], tiny_corpus, out)
    build(tiny_family_dirs["tct_colbert"], tiny_corpus, out, overwrite=True)
    assert read_index_dir(out)[2].encoder["model"] == str(tiny_family_dirs["tct_colbert"])


def test_dimension_mismatch_and_short_docid_file(tiny_family_dirs, tiny_corpus, tmp_path):
    out = build(tiny_family_dirs["repbert"], tiny_corpus, tmp_path / "idx")  # 32 dims
    with pytest.raises(InputError, match="dimension 32.*16"):
        DenseSearcher(out, load_query_encoder(tiny_family_dirs["mebert"]))  # projects to 16
    lines = (out / "docid").read_text().splitlines()
    (out / "docid").write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(InputError, match="docid.*10 lines but the index has 12 rows"):
        DenseSearcher(out)


def test_corrupt_index_file(tmp_path):
    (tmp_path / "index").write_bytes(b"not faiss")
    (tmp_path / "docid").write_text("a\n")
    with pytest.raises(InputError, match="not a readable FAISS index"):
        DenseSearcher(tmp_path)


def test_shard_slices_cover_everything_once():
    for n in (0, 1, 7, 100):
        for num in (1, 2, 3, 8):
            parts = [list(range(n))[shard_slice(n, i, num)] for i in range(num)]
            assert sum(parts, []) == list(range(n))
    with pytest.raises(ValueError, match="shard"):
        shard_slice(10, 3, 3)


def test_search_cli_over_shard_dirs_equals_unsharded(tiny_family_dirs, tiny_corpus, tmp_path):
    from pyserini_dense_ext.search.__main__ import main as search_main

    model = str(tiny_family_dirs["repbert"])
    dirs = []
    for shard in ("0", "1", None):
        out = tmp_path / (f"shard{shard}" if shard else "whole")
        shard_args = ["--shard-id", shard, "--shard-num", "2"] if shard else []
        assert encode_main(["input", "--corpus", str(tiny_corpus), *shard_args, "encoder", "--encoder", model,
                            "output", "--index", str(out), "--quiet"]) == 0
        dirs.append(str(out))
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(QUERIES)))
    common = ["--encoder", model, "--topics", str(topics), "--hits", "7", "--quiet"]
    assert search_main(["--index", dirs[0], dirs[1], "--output", str(tmp_path / "sharded.trec"), *common]) == 0
    assert search_main(["--index", dirs[2], "--output", str(tmp_path / "whole.trec"), *common]) == 0
    sharded = [line.split()[:3] for line in (tmp_path / "sharded.trec").read_text().splitlines()]
    whole = [line.split()[:3] for line in (tmp_path / "whole.trec").read_text().splitlines()]
    assert sharded == whole and len(whole) == 4 * 7


def test_search_threads_do_not_leak_into_later_query_encoding(tiny_family_dirs, tiny_corpus, tmp_path):
    """FAISS and torch share one OpenMP runtime: a thread count left set by a search changed torch's, so the
    next query vector differed in its last bits and near-tied hits swapped between two searches of one query."""
    import torch

    out = build(tiny_family_dirs["mebert"], tiny_corpus, tmp_path / "idx")
    searcher = DenseSearcher(out, load_query_encoder(tiny_family_dirs["mebert"]))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first = searcher.encode_queries(QUERIES)
        for threads in (1, 3):
            counts = torch.get_num_threads(), faiss.omp_get_max_threads()
            searcher.search_vectors(first, 5, threads=threads)
            assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == counts == (2, counts[1])
            np.testing.assert_array_equal(searcher.encode_queries(QUERIES), first)
    finally:
        torch.set_num_threads(before)


def test_hnsw_searches_with_at_least_the_rows_asked_for(tmp_path):
    """FAISS searches HNSW at its efSearch (default 16) whatever k is: top-200 lists lost most of their hits."""
    from pyserini_dense_ext.index.faiss_dir import DEFAULT_EF_SEARCH

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((50, 32)).astype(np.float32)
    index = build_faiss_index(vectors, "hnsw", hnsw_m=16)
    assert faiss.downcast_index(index).hnsw.efSearch == DEFAULT_EF_SEARCH  # stored in the file, for Pyserini too
    index.hnsw.efSearch = 16  # FAISS's default, as in an HNSW dir built elsewhere
    out = write_index_dir(tmp_path / "idx", index, [f"d{i}" for i in range(3000)],
                          IndexMeta(dim=32, num_rows=3000, num_docs=3000, index_type="hnsw"))
    exact = faiss.knn(queries, vectors, 200, metric=faiss.METRIC_INNER_PRODUCT)[1]

    def recall(ids):
        return np.mean([len(set(a) & set(b)) / 200 for a, b in zip(ids, exact)])

    _, ids = DenseSearcher(out).search_vectors(queries, 200)
    np.testing.assert_array_equal(ids, index.search(queries, 200, params=faiss.SearchParametersHNSW(efSearch=200))[1])
    assert recall(ids) >= 0.95
    _, ids16 = DenseSearcher(out, ef_search=16).search_vectors(queries, 200)  # an explicit value is honoured
    np.testing.assert_array_equal(ids16, index.search(queries, 200)[1])
    assert recall(ids16) < 0.9
    assert read_index_dir(out)[2].index_options["ef_search"] == 16
