"""Reranking against stored document vectors: exact read-back, brute-force references, every family, bad input."""
from __future__ import annotations

import os
import shutil

import faiss
import numpy as np
import pytest

from pyserini_dense_ext.cli import run_cli
from pyserini_dense_ext.index.encode import encode_corpus
from pyserini_dense_ext.encoders import load_model
from pyserini_dense_ext.index.vectors import CACHE_FILE, open_doc_vectors
from pyserini_dense_ext.io.fingerprint import _file_digest
from pyserini_dense_ext.io import InputError, read_corpus, read_run, write_run
from pyserini_dense_ext.rerank import Reranker
from pyserini_dense_ext.rerank.__main__ import main as rerank_main
from pyserini_dense_ext.search import DenseSearcher

from conftest import make_tiny_bert

QUERIES = {"q0": "protein in cells", "q1": "cancer gene risk", "q2": "wing flow", "q3": "hello"}


def build(model_dir, corpus, out, index_type="flat"):
    return encode_corpus(read_corpus(corpus), load_model(model_dir), out, {"model": str(model_dir)}, index_type,
                         chunk_size=5, batch_size=4, progress=False)


def brute_scores(model_dir, corpus, queries):
    """Every document's score per query from freshly encoded vectors: max over m rows of the inner product."""
    model = load_model(model_dir)
    docs = read_corpus(corpus)
    doc_vecs = model.encode([d.contents for d in docs], "document")
    doc_vecs = doc_vecs if doc_vecs.ndim == 3 else doc_vecs[:, None]
    q = model.encode(list(queries), "query")
    return np.einsum("qd,nmd->qnm", q, doc_vecs).max(axis=2), [d.docid for d in docs]


@pytest.mark.parametrize("index_type", ["flat", "flat-fp16"])
@pytest.mark.parametrize("family", ["repbert", "mebert"])
def test_vectors_read_back_exactly(tiny_family_dirs, tiny_corpus, tmp_path, family, index_type):
    out = build(tiny_family_dirs[family], tiny_corpus, tmp_path / "idx", index_type)
    model = load_model(tiny_family_dirs[family])
    docs = read_corpus(tiny_corpus)
    index = faiss.read_index(str(out / "index"))
    stored = index.reconstruct_n(0, index.ntotal).reshape(len(docs), -1, model.dim)  # what FAISS itself holds
    vectors = open_doc_vectors(out, progress=False)
    assert isinstance(vectors.array, np.memmap) and vectors.docids == [d.docid for d in docs]
    assert vectors.rows_per_doc == (3 if family == "mebert" else 1)
    assert vectors.array.dtype == (np.float32 if index_type == "flat" else np.float16)
    got = vectors.gather(np.arange(len(docs)))
    assert np.array_equal(got, stored)
    encoded = model.encode([d.contents for d in docs], "document").reshape(stored.shape)
    np.testing.assert_allclose(got, encoded, atol=1e-5 if index_type == "flat" else 2e-3)
    padded = vectors.gather(np.array([[2, -1], [-1, 0]]))
    assert np.array_equal(padded[0, 0], got[2]) and not padded[0, 1].any() and np.array_equal(padded[1, 1], got[0])


def test_cache_is_reused_then_rebuilt_when_the_index_changes(tiny_family_dirs, tiny_corpus, tmp_path):
    out = build(tiny_family_dirs["repbert"], tiny_corpus, tmp_path / "idx")
    first = open_doc_vectors(out, progress=False)
    stamp = (out / CACHE_FILE).stat().st_mtime_ns
    again = open_doc_vectors(out, progress=False)
    assert (out / CACHE_FILE).stat().st_mtime_ns == stamp and again.fingerprint == first.fingerprint
    # the same index reached through another path (a copy) reuses a shared cache: the key is the content
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shared = tmp_path / "cache"
    open_doc_vectors(out, cache_dir=shared, progress=False)
    shared_stamp = (shared / CACHE_FILE).stat().st_mtime_ns
    assert open_doc_vectors(copy, cache_dir=shared, progress=False).fingerprint == first.fingerprint
    assert (shared / CACHE_FILE).stat().st_mtime_ns == shared_stamp
    # rewritten in place with the same size and timestamps: only the content tells, and the cache is rebuilt
    index_stat = (out / "index").stat()
    index = faiss.read_index(str(out / "index"))
    index.reset()
    index.add(np.ones((12, index.d), dtype=np.float32))
    faiss.write_index(index, str(out / "index"))
    assert (out / "index").stat().st_size == index_stat.st_size
    os.utime(out / "index", ns=(index_stat.st_atime_ns, index_stat.st_mtime_ns))
    _file_digest.cache_clear()  # as in a new process (file_digest remembers digests per path, size and mtime)
    changed = open_doc_vectors(out, progress=False)
    assert changed.fingerprint != first.fingerprint and np.all(changed.gather(np.arange(12)) == 1)
    assert np.all(open_doc_vectors(out, cache_dir=shared, progress=False).gather(np.arange(12)) == 1)


@pytest.mark.parametrize("index_type", ["hnsw", "pq"])
def test_approximate_indexes_are_refused_unless_vectors_are_given(tiny_family_dirs, tmp_path, index_type):
    model = load_model(tiny_family_dirs["repbert"])
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((300, model.dim)).astype(np.float32)
    from pyserini_dense_ext.index import IndexMeta, build_faiss_index, write_index_dir

    out = write_index_dir(tmp_path / "idx", build_faiss_index(rows, index_type, pq_m=8),
                          [f"d{i}" for i in range(300)], IndexMeta(model.dim, 300, 300, index_type=index_type))
    with pytest.raises(InputError, match="field 'index_type'.*pass the vectors as a .npy file"):
        open_doc_vectors(out, progress=False)
    np.save(tmp_path / "vectors.npy", rows)
    vectors = open_doc_vectors(out, tmp_path / "vectors.npy")
    assert np.array_equal(vectors.gather(np.array([5, 299]))[:, 0], rows[[5, 299]])
    np.save(tmp_path / "short.npy", rows[:10])
    with pytest.raises(InputError, match="short.npy: field 'shape' has 10 rows but the index's docid file has 300"):
        open_doc_vectors(out, tmp_path / "short.npy")
    np.save(tmp_path / "wide.npy", np.zeros((300, model.dim + 1), dtype=np.float32))
    with pytest.raises(InputError, match="wide.npy: field 'dim'"):
        open_doc_vectors(out, tmp_path / "wide.npy")


@pytest.mark.parametrize("family", ["repbert", "tct_colbert", "mebert"])
def test_rerank_equals_brute_force_and_full_search(tiny_family_dirs, tiny_corpus, tmp_path, family):
    """Reranking every document reproduces exhaustive search; a subset is ranked by the brute-force scores."""
    out = build(tiny_family_dirs[family], tiny_corpus, tmp_path / "idx")
    brute, docids = brute_scores(tiny_family_dirs[family], tiny_corpus, QUERIES.values())
    reranker = Reranker(out, tiny_family_dirs[family])
    rng = np.random.default_rng(1)
    subsets = [list(rng.permutation(docids)[:7]) for _ in QUERIES]
    ranked = reranker.rerank(list(QUERIES.values()), subsets)
    for qi, (subset, (got_ids, got_scores)) in enumerate(zip(subsets, ranked)):
        ref = sorted(subset, key=lambda d: -brute[qi][docids.index(d)])
        np.testing.assert_allclose(got_scores, [brute[qi][docids.index(d)] for d in ref], rtol=1e-5, atol=1e-6)
        assert sorted(got_ids) == sorted(subset) and np.all(np.diff(got_scores) <= 0)
    full = reranker.rerank(list(QUERIES.values()), [docids] * len(QUERIES), k=5)
    searched = DenseSearcher(out, tiny_family_dirs[family]).batch_search(list(QUERIES.values()), list(QUERIES), k=5)
    for (got_ids, got_scores), qid in zip(full, QUERIES):
        np.testing.assert_allclose(got_scores, [h.score for h in searched[qid]], rtol=1e-5, atol=1e-6)
        last = got_scores[-1] + 1e-5  # FAISS orders exact ties its own way: compare the documents above them
        assert {d for d, s in zip(got_ids, got_scores) if s > last} == {h.docid for h in searched[qid] if h.score > last}


def test_pyserini_hits_in_and_out(tiny_family_dirs, tiny_corpus, tmp_path):
    """Pyserini's FaissSearcher hits go in, Pyserini result objects come out, same as the array path."""
    from pyserini.search.faiss import DenseSearchResult, FaissSearcher

    from pyserini_dense_ext.encoders import load_query_encoder

    out = build(tiny_family_dirs["repbert"], tiny_corpus, tmp_path / "idx")
    first = FaissSearcher(str(out), load_query_encoder(tiny_family_dirs["tct_colbert"]))
    hits = first.batch_search(list(QUERIES.values()), list(QUERIES), k=6)
    reranker = Reranker(out, load_model(tiny_family_dirs["repbert"]))
    batch = reranker.batch_search(list(QUERIES.values()), list(QUERIES), hits, k=4)
    arrays = reranker.rerank(list(QUERIES.values()), [[h.docid for h in hits[q]] for q in QUERIES], k=4)
    for qid, (docids, scores) in zip(QUERIES, arrays):
        assert all(isinstance(h, DenseSearchResult) for h in batch[qid])
        assert [h.docid for h in batch[qid]] == list(docids)
        assert [h.docid for h in reranker.search(QUERIES[qid], hits[qid], k=4)] == list(docids)
    with pytest.raises(InputError, match="field 'docid'.*'nope' .* is not in the dense index"):
        reranker.rerank(["x"], [["d1", "nope"]])


def test_onnx_query_encoder_reranks_like_torch(tiny_family_dirs, tiny_corpus, tmp_path):
    from pyserini_dense_ext.onnx import export_onnx

    out = build(tiny_family_dirs["repbert"], tiny_corpus, tmp_path / "idx")
    onnx_path = tmp_path / "q.onnx"
    export_onnx(tiny_family_dirs["repbert"], "query", onnx_path)
    docids = [d.docid for d in read_corpus(tiny_corpus)]
    torch_ranked = Reranker(out, tiny_family_dirs["repbert"]).rerank(list(QUERIES.values()), [docids] * 4)
    onnx_ranked = Reranker(out, onnx_path).rerank(list(QUERIES.values()), [docids] * 4)
    for (_, a), (_, b) in zip(torch_ranked, onnx_ranked):
        np.testing.assert_allclose(a, b, atol=1e-4)


def write_topics(tmp_path):
    path = tmp_path / "topics.tsv"
    path.write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()))
    return path


def cli(*args):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(rerank_main, [str(a) for a in args])
    return exit_info.value.code


def test_cli_reranks_a_run(tiny_family_dirs, tiny_corpus, tmp_path, capsys):
    out = build(tiny_family_dirs["repbert"], tiny_corpus, tmp_path / "idx")
    docids = [d.docid for d in read_corpus(tiny_corpus)]
    first = {q: [(d, float(-i)) for i, d in enumerate(docids[j:] + docids[:j])] for j, q in enumerate(QUERIES)}
    write_run(tmp_path / "first.trec", first)
    code = cli("--run", tmp_path / "first.trec", "--index", out, "--encoder", tiny_family_dirs["repbert"],
               "--topics", write_topics(tmp_path), "--depth", 8, "--hits", 5, "--output", tmp_path / "out.trec",
               "--quiet")
    assert code == 0 and "reranking" in capsys.readouterr().out
    got = read_run(tmp_path / "out.trec")
    brute, names = brute_scores(tiny_family_dirs["repbert"], tiny_corpus, QUERIES.values())
    for qi, qid in enumerate(QUERIES):
        top8 = [d for d, _ in first[qid][:8]]
        ref = sorted(top8, key=lambda d: -brute[qi][names.index(d)])[:5]
        assert [d for d, _ in got[qid]] == ref


def test_cli_bad_input_exits_2_naming_file_line_and_field(tiny_family_dirs, tiny_corpus, tmp_path, capsys):
    out = build(tiny_family_dirs["repbert"], tiny_corpus, tmp_path / "idx")
    topics = write_topics(tmp_path)
    run = tmp_path / "first.trec"
    run.write_text("q0 Q0 d1 1 3.0 x\nq0 Q0 d2 2 2.0 x\nq1 Q0 zzz 1 1.0 x\n")
    output = tmp_path / "out.trec"
    base = ["--index", out, "--topics", topics, "--output", output, "--quiet"]

    assert cli("--run", run, "--encoder", tiny_family_dirs["repbert"], *base) == 2
    assert f"{run}, line 3: field 'docid' names document 'zzz', which the dense index" in capsys.readouterr().err

    run.write_text("q0 Q0 d1 1 3.0 x\nq9 Q0 d2 1 2.0 x\n")
    assert cli("--run", run, "--encoder", tiny_family_dirs["repbert"], *base) == 2
    assert f"{run}: field 'qid' 1 queries have no text in {topics}" in capsys.readouterr().err

    run.write_text("q0 Q0 d1 1 3.0 x\n")
    assert cli("--run", run, "--encoder", tiny_family_dirs["repbert"], "--depth", 13, *base) == 2
    assert "docid: field 'depth' --depth 13 exceeds the 12 documents of the index" in capsys.readouterr().err

    wide = load_model(make_tiny_bert(tmp_path / "wide", hidden=48), family="repbert")
    wide.save(tmp_path / "wide-model")
    assert cli("--run", run, "--encoder", tmp_path / "wide-model", *base) == 2
    err = capsys.readouterr().err
    assert f"{out / 'index'}: field 'dim' has dimension 32 but the query encoder gives 48-dim vectors" in err
    assert not output.exists() and "Traceback" not in err

    # each scorer names the input it scores from
    no_index = ["--topics", topics, "--output", output, "--quiet"]
    assert cli("--run", run, "--encoder", tiny_family_dirs["repbert"], *no_index) == 2
    assert "--scorer dense needs --index" in capsys.readouterr().err
    assert cli("--scorer", "colbert", "--run", run, "--encoder", tiny_family_dirs["repbert"], *no_index) == 2
    assert "--scorer colbert needs --corpus" in capsys.readouterr().err
    assert not output.exists()


def test_multi_row_documents_need_not_be_consecutive(tmp_path):
    """A docid file naming each document m times in any order (say, a merge of per-vector shards) still gathers
    each document's own rows, and an uneven count is an error naming the docid file."""
    from pyserini_dense_ext.index import IndexMeta, build_faiss_index, write_index_dir

    rows = np.arange(6 * 4, dtype=np.float32).reshape(6, 4)
    out = write_index_dir(tmp_path / "idx", build_faiss_index(rows), ["a", "b", "c", "a", "b", "c"],
                          IndexMeta(4, 6, 3, rows_per_doc=2))
    vectors = open_doc_vectors(out, progress=False)
    assert vectors.by_doc is None and vectors.docids == ["a", "b", "c"]
    assert np.array_equal(vectors.gather(np.array([2, -1])), [rows[[2, 5]], np.zeros((2, 4))])
    (out / "docid").write_text("a\na\nb\nc\nc\nc\n")
    (out / "dense_ext_index.json").unlink()
    with pytest.raises(InputError, match="docid: field 'docid' names document 'b' 1 times but others 3 times"):
        open_doc_vectors(out, progress=False)


def test_passages_of_any_number_group_into_documents_with_a_delimiter(tmp_path):
    """Opened with a passage delimiter, a document is every row whose id cuts to it, however many and wherever
    they lie (CSR offsets); a uniform count keeps the (num_docs, m) table; each passage stays reachable alone."""
    import torch

    from pyserini_dense_ext.index import IndexMeta, build_faiss_index, write_index_dir
    from pyserini_dense_ext.rerank import max_row_scores

    rng = np.random.default_rng(0)
    rows = rng.standard_normal((7, 4)).astype(np.float32)
    row_ids = ["a#0", "b#0", "a#1", "c#0", "a#2", "b#1", "d"]
    out = write_index_dir(tmp_path / "idx", build_faiss_index(rows), row_ids, IndexMeta(4, 7, 7))
    vectors = open_doc_vectors(out, progress=False, passage_delimiter="#")
    assert not vectors.uniform and vectors.docids == ["a", "b", "c", "d"]
    assert np.array_equal(np.diff(vectors.offsets), [3, 2, 1, 1])
    with pytest.raises(ValueError, match="use gather_rows"):
        vectors.gather(np.array([0]))
    got, segments = vectors.gather_rows(np.array([2, -1, 0, 3, 1]))
    assert np.array_equal(segments, [0, 2, 2, 2, 3, 4, 4])
    assert np.array_equal(got, rows[[3, 0, 2, 4, 6, 1, 5]])
    query = rng.standard_normal(4).astype(np.float32)
    scores = max_row_scores(torch.from_numpy(query), torch.from_numpy(got), torch.from_numpy(segments), 5).numpy()
    np.testing.assert_allclose(scores, [rows[3] @ query, -np.inf, max(rows[[0, 2, 4]] @ query), rows[6] @ query,
                                        max(rows[[1, 5]] @ query)], rtol=1e-6)
    passages = vectors.passage_vectors()
    assert passages.uniform and passages.docids == row_ids and np.array_equal(passages.gather(np.array([4]))[0, 0],
                                                                               rows[4])
    with pytest.raises(ValueError, match="opened without a passage delimiter"):
        open_doc_vectors(out, progress=False).passage_vectors()
    # one passage per document (or an index of whole documents): the uniform table, as without a delimiter
    (out / "docid").write_text("a#0\nb#0\nc#0\nd#0\ne#0\nf#0\ng#0\n")
    (out / "dense_ext_index.json").unlink()
    single = open_doc_vectors(out, progress=False, passage_delimiter="#")
    assert single.uniform and single.rows_per_doc == 1 and single.docids == list("abcdefg")
    assert np.array_equal(single.gather(np.array([1, 5]))[:, 0], rows[[1, 5]])
