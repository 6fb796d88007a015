"""Search and encoding at scale: the BLAS-speed scan against brute force and FAISS, memory-mapped search,
streamed index files, the streaming corpus, the output lock, ONNX slicing and the automatic query backend.

Exact-search references are brute force (numpy) or FAISS's own exhaustive search, compared as FAISS's
``check_ref_knn_with_draws`` does: scores to float noise, ids equal except for permutations among equal
scores and the last tied group.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import WORDS, write_jsonl
from faiss.contrib.evaluation import check_ref_knn_with_draws

from pyserini_dense_ext.encode.__main__ import main as encode_main
from pyserini_dense_ext.encoders import load_model, load_query_encoder
from pyserini_dense_ext.index import build_faiss_index, read_index_dir, write_index_dir
from pyserini_dense_ext.index.chunks import partial_dir
from pyserini_dense_ext.index.encode import encode_corpus
from pyserini_dense_ext.index.faiss_dir import IndexMeta, build_from_chunks, pq_training_rows, rebatch
from pyserini_dense_ext.index.flat_file import MappedFlat, write_flat_file
from pyserini_dense_ext.io import InputError, read_corpus
from pyserini_dense_ext.io.corpus import CorpusStream
from pyserini_dense_ext.io.lock import OutputLockedError, lock_path, output_lock
from pyserini_dense_ext.search import DenseSearcher
from pyserini_dense_ext.search import flat

ROOT = Path(__file__).resolve().parents[1]


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_force(queries: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product, ties by position: float64 products, stable sort."""
    scores = queries.astype(np.float64) @ rows.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1).astype(np.float32), order


def assert_same_knn(ref: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray]) -> None:
    (d_ref, i_ref), (d_got, i_got) = ref, got
    assert d_ref.shape == d_got.shape and i_ref.shape == i_got.shape
    check_ref_knn_with_draws(d_ref, i_ref, d_got, i_got, rtol=1e-5, atol=1e-5)


@pytest.fixture()
def small_blocks(monkeypatch):
    """Blocks, thread ranges and query blocks small enough that a test-sized index crosses all their edges."""
    monkeypatch.setattr(flat, "MIN_BLOCK_ROWS", 64)
    monkeypatch.setattr(flat, "SCORE_BLOCK", 64 * 16)
    monkeypatch.setattr(flat, "MIN_ITEMS_PER_THREAD", 100)
    monkeypatch.setattr(flat, "QUERY_BLOCK", 6)


# ----- the scan --------------------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 10, 150, 1000, 5000])
def test_scan_equals_brute_force_and_faiss(small_blocks, threads, k):
    rows = unit_rows(1000, 24, 0)
    rows[500:520] = rows[3]  # exact ties, across thread ranges and blocks
    queries = np.concatenate([unit_rows(13, 24, 1), rows[3:4]])
    got = flat.top_k(queries, rows, k, threads=threads)
    assert_same_knn(brute_force(queries, rows, min(k, len(rows))), got)
    index = faiss.IndexFlatIP(24)
    index.add(rows)
    ref = index.search(queries, k)
    assert_same_knn((ref[0][:, :len(rows)], ref[1][:, :len(rows)]), got)


def test_scan_keeps_faiss_heap_order_for_ties():
    """Equal scores come out in FAISS's own order (its heaps), not merely as some permutation."""
    rows = unit_rows(3000, 16, 2)
    rows[100:140] = rows[7]
    rows[2000:2010] = rows[7]
    query = rows[7:8]
    index = faiss.IndexFlatIP(16)
    index.add(rows)
    for k in (5, 20):  # heap-kept sizes (k < 100: FAISS's heap path, like ours)
        faiss_scores, faiss_ids = index.search(query, k)
        scores, ids = flat.top_k(query, rows, k, threads=1)
        np.testing.assert_array_equal(ids, faiss_ids)


def test_fp16_scan_equals_faiss_scalar_quantizer(small_blocks):
    rows = unit_rows(900, 32, 3)
    index = build_faiss_index(rows, "flat-fp16")
    stored = flat.stored_rows(index)
    assert stored.dtype == np.float16 and stored.shape == (900, 32)
    queries = unit_rows(9, 32, 4)
    decoded = rows.astype(np.float16).astype(np.float32)  # what the codes hold, exactly
    for k in (7, 300):
        got = flat.top_k(queries, stored, k, threads=2)
        assert_same_knn(brute_force(queries, decoded, k), got)
        assert_same_knn(index.search(queries, k), got)


@pytest.mark.parametrize("m", [2, 3])
def test_folded_scan_is_the_max_over_each_documents_rows(small_blocks, m):
    rows = unit_rows(300 * m, 16, 5)
    queries = unit_rows(8, 16, 6)
    best = (queries.astype(np.float64) @ rows.T.astype(np.float64)).reshape(8, 300, m).max(axis=2)
    for k in (1, 40, 300, 400):
        scores, ids = flat.top_k(queries, rows, k, fold=m, threads=2)
        order = np.argsort(-best, axis=1, kind="stable")[:, :min(k, 300)]
        assert_same_knn((np.take_along_axis(best, order, 1).astype(np.float32), order), (scores, ids))


def test_stored_rows_are_views_and_other_indexes_have_none():
    rows = unit_rows(300, 8, 7)
    index = build_faiss_index(rows)
    view = flat.stored_rows(index)
    np.testing.assert_array_equal(view, rows)
    assert not view.flags.owndata
    assert flat.stored_rows(build_faiss_index(rows, "hnsw")) is None
    assert flat.stored_rows(faiss.IndexFlatL2(8)) is None


def test_thread_settings_are_restored(small_blocks):
    import torch

    rows, queries = unit_rows(2000, 16, 8), unit_rows(20, 16, 9)
    faiss_before, torch_before = faiss.omp_get_max_threads(), torch.get_num_threads()
    flat.top_k(queries, rows, 10, threads=1)
    flat.top_k(queries, rows, 10, threads=3)
    from threadpoolctl import threadpool_info

    blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    flat.top_k(queries, rows, 10)
    assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"] == blas
    assert (faiss.omp_get_max_threads(), torch.get_num_threads()) == (faiss_before, torch_before)


def test_scan_wins_rule():
    assert not flat.scan_wins(flat.MIN_QUERIES - 1) and flat.scan_wins(flat.MIN_QUERIES)


# ----- index files: streamed writes, windowed reads ----------------------------------------------------

@pytest.mark.parametrize("index_type", ["flat", "flat-fp16"])
def test_streamed_index_file_is_byte_identical_to_faiss(index_type):
    rows = unit_rows(1234, 20, 10)
    buffer = io.BytesIO()
    write_flat_file(buffer, index_type, 20, len(rows), (rows[i:i + 100] for i in range(0, len(rows), 100)))
    assert buffer.getvalue() == faiss.serialize_index(build_faiss_index(rows, index_type)).tobytes()
    with pytest.raises(ValueError, match="expected 1235 rows"):
        write_flat_file(io.BytesIO(), index_type, 20, 1235, [rows])


@pytest.mark.parametrize("index_type", ["flat", "flat-fp16"])
def test_mapped_index_reads_and_searches_like_the_loaded_one(tmp_path, small_blocks, index_type):
    rows = unit_rows(700, 12, 11)
    path = tmp_path / "index"
    faiss.write_index(build_faiss_index(rows, index_type), str(path))
    mapped, loaded = MappedFlat(path), faiss.read_index(str(path))
    assert (mapped.d, mapped.ntotal, mapped.index_type) == (12, 700, index_type)
    np.testing.assert_array_equal(mapped.reconstruct_n(33, 600), loaded.reconstruct_n(33, 600))
    queries = unit_rows(5, 12, 12)
    assert_same_knn(loaded.search(queries, 50), flat.mapped_top_k(mapped, queries, 50, threads=2))


def test_encode_writes_the_index_faiss_would(tiny_family_dirs, tiny_corpus, tmp_path):
    """The streamed file is FAISS's own serialisation of the rows it holds, and those are the model's vectors."""
    model = load_model(tiny_family_dirs["repbert"])
    vectors = model.encode([d.contents for d in read_corpus(tiny_corpus)], "document")
    for index_type, atol in (("flat", 1e-6), ("flat-fp16", 1e-3)):
        out = encode_corpus(read_corpus(tiny_corpus), model, tmp_path / index_type, {"model": "x"}, index_type,
                            chunk_size=5, progress=False)
        stored = faiss.read_index(str(out / "index"))
        held = stored.reconstruct_n(0, stored.ntotal)
        assert (out / "index").read_bytes() == faiss.serialize_index(build_faiss_index(held, index_type)).tobytes()
        np.testing.assert_allclose(held, vectors, atol=atol)


def test_rebatch_and_chunked_builds():
    rows = unit_rows(1000, 8, 13)
    chunks = [rows[:3], rows[3:500], rows[500:501], rows[501:]]
    batches = list(rebatch(chunks, 128))
    assert [len(b) for b in batches] == [128] * 7 + [104]
    np.testing.assert_array_equal(np.concatenate(batches), rows)
    assert list(pq_training_rows(100, 8)) == list(range(100))
    sample = pq_training_rows(10 ** 6, 8)
    assert len(sample) == 256 * 256 and sample[0] == 0 and np.all(np.diff(sample) > 0) and sample[-1] < 10 ** 6
    whole = build_faiss_index(rows, "pq", pq_m=4)
    chunked = build_from_chunks(lambda: iter(chunks), len(rows), 8, "pq", pq_m=4)
    np.testing.assert_array_equal(faiss.vector_to_array(whole.codes), faiss.vector_to_array(chunked.codes))


# ----- DenseSearcher on top of the scan ------------------------------------------------------------------

@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scan-dirs")
    rows = unit_rows(3000, 16, 14)
    rows[10:15] = rows[0]
    out = {}
    for name, index_type, m in (("flat", "flat", 1), ("flat-fp16", "flat-fp16", 1), ("mebert", "flat", 3)):
        docids = [f"doc{i // m:05d}" for i in range(len(rows))]
        meta = IndexMeta(dim=16, num_rows=len(rows), num_docs=len(rows) // m, rows_per_doc=m, index_type=index_type)
        out[name] = write_index_dir(root / name, build_faiss_index(rows, index_type), docids, meta)
    return out


@pytest.mark.parametrize("name", ["flat", "flat-fp16", "mebert"])
@pytest.mark.parametrize("mmap", [False, True])
def test_dense_searcher_equals_exhaustive_faiss(dirs, small_blocks, name, mmap):
    searcher = DenseSearcher(dirs[name], mmap=mmap)
    assert isinstance(searcher.index, MappedFlat) == mmap
    index = faiss.read_index(str(dirs[name] / "index"))
    m = searcher.rows_per_doc
    queries = unit_rows(12, 16, 15)
    for k in (1, 25, 999, 5000):
        scores, docs = searcher.search_vectors(queries, k, threads=2)
        assert scores.shape == (12, min(k, searcher.num_docs))
        rows = index.reconstruct_n(0, index.ntotal)
        best = (queries.astype(np.float64) @ rows.T.astype(np.float64)).reshape(12, -1, m).max(axis=2)
        order = np.argsort(-best, axis=1, kind="stable")[:, :min(k, searcher.num_docs)]
        assert_same_knn((np.take_along_axis(best, order, 1).astype(np.float32), order), (scores, docs))
    one = searcher.search_vectors(queries[:1], 25)  # one query: FAISS's own search (in memory) or the scan (mapped)
    assert_same_knn(one, tuple(a[:1] for a in searcher.search_vectors(queries[:3], 25)))


def test_hits_beyond_the_index_are_capped(dirs, tmp_path):
    searcher = DenseSearcher(dirs["mebert"])
    scores, docs = searcher.search_vectors(unit_rows(2, 16, 16), 10 ** 9)
    assert docs.shape == (2, 1000) and (docs >= 0).all() and len(set(docs[0].tolist())) == 1000


def test_search_cli_with_huge_hits_and_mmap(tiny_family_dirs, tiny_corpus, tmp_path):
    from pyserini_dense_ext.search.__main__ import main as search_main

    model = str(tiny_family_dirs["repbert"])
    index = tmp_path / "idx"
    assert encode_main(["input", "--corpus", str(tiny_corpus), "encoder", "--encoder", model, "output", "--index",
                        str(index), "--quiet"]) == 0
    topics = tmp_path / "topics.tsv"
    topics.write_text("q1\tprotein cells\nq2\twing flow\n")
    runs = {}
    for mmap in ((), ("--mmap",)):
        out = tmp_path / f"run{len(mmap)}.trec"
        assert search_main(["--index", str(index), "--encoder", model, "--topics", str(topics), "--hits",
                            "1000000000", "--output", str(out), "--quiet", *mmap]) == 0
        runs[mmap] = [line.split()[:4] for line in out.read_text().splitlines()]
    assert runs[()] == runs[("--mmap",)] and len(runs[()]) == 2 * 12


# ----- the streaming corpus --------------------------------------------------------------------------

def test_corpus_stream_reads_what_read_corpus_reads(tmp_path, monkeypatch):
    rows = [{"_id": f"d{i}", "title": "t" if i % 2 else "", "text": " ".join(WORDS[i:i + 5])} for i in range(40)]
    rows.insert(7, {"_id": "empty", "text": ""})
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    stream = CorpusStream(path, empty="skip")
    assert list(stream.docs()) == read_corpus(path, empty="skip") and len(stream) == 40
    stream.shard(10, 20)
    assert list(stream.docs()) == read_corpus(path, empty="skip")[10:20] and len(stream) == 10
    assert stream.hashes.nbytes == 8 * 40  # what it keeps: 8 bytes a document


@pytest.mark.parametrize("collide", [False, True])
def test_corpus_stream_finds_duplicates_like_read_corpus(tmp_path, monkeypatch, collide):
    if collide:  # every docid hashes alike: only the second look at the docids tells real duplicates apart
        monkeypatch.setattr("pyserini_dense_ext.io.corpus.docid_hash", lambda docid: 7)
    rows = [{"_id": f"d{i}", "text": "x"} for i in range(30)]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    assert len(CorpusStream(path)) == 30  # no false alarm
    write_jsonl(path, rows + [{"_id": "d4", "text": "again"}])
    with pytest.raises(InputError) as theirs:
        read_corpus(path)
    with pytest.raises(InputError) as ours:
        CorpusStream(path)
    assert str(ours.value) == str(theirs.value) and "line 31" in str(ours.value) and "line 5" in str(ours.value)


def test_corpus_changed_between_the_passes_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"_id": f"d{i}", "text": "x"} for i in range(5)])
    stream = CorpusStream(path)
    write_jsonl(path, [{"_id": f"e{i}", "text": "x"} for i in range(5)])
    with pytest.raises(InputError, match="line 1: field 'id' changed while being encoded"):
        list(stream.docs())


def test_bad_corpus_leaves_no_output(tiny_family_dirs, tmp_path):
    rows = [{"_id": f"d{i}", "text": "protein cells"} for i in range(3000)] + [{"_id": "bad", "text": 5}]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    out = tmp_path / "idx"
    code = subprocess.run([sys.executable, "-m", "pyserini_dense_ext.encode", "input", "--corpus", str(path),
                           "encoder", "--encoder", str(tiny_family_dirs["repbert"]), "output", "--index", str(out),
                           "--quiet"], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert code.returncode == 2 and f"{path}, line 3001: field 'text' must be a string" in code.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]  # no index, partial dir or lock left


# ----- the output lock -------------------------------------------------------------------------------

def test_lock_is_reentrant_and_refuses_another_holder(tmp_path):
    out = tmp_path / "idx"
    with output_lock(out) as path:
        assert path == lock_path(out) and path.is_file()
        with output_lock(out):
            pass
        assert path.is_file()
        info = json.loads(path.read_text())
        holder = subprocess.run([sys.executable, "-c", "import sys; from pyserini_dense_ext.io.lock import "
                                 "output_lock\nwith output_lock(sys.argv[1]): pass", str(out)],
                                capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert "OutputLockedError" in holder.stderr and f"pid {os.getpid()}" in holder.stderr
        assert info["pid"] == os.getpid() and info["host"]
    assert not lock_path(out).exists()
    with output_lock(out):  # free again
        pass


def test_second_encode_fails_at_once_and_a_killed_runs_lock_is_recovered(tiny_family_dirs, tmp_path):
    rows = [{"_id": f"d{i}", "text": " ".join(WORDS[i % 40:i % 40 + 8])} for i in range(400)]
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)
    out = tmp_path / "idx"
    args = ["input", "--corpus", str(corpus), "encoder", "--encoder", str(tiny_family_dirs["repbert"]), "output",
            "--index", str(out), "--chunk-size", "10", "--quiet"]
    # The first run encodes one chunk, then hangs in the next until killed (however slow the machine is).
    hangs = ("import itertools, sys, time\nimport pyserini_dense_ext\nfrom pyserini_dense_ext.encoders.base import "
             "DenseModel\nreal, calls = DenseModel.encode, itertools.count()\nDenseModel.encode = lambda self, *a, **k: "
             "real(self, *a, **k) if next(calls) == 0 else time.sleep(3600)\nfrom pyserini_dense_ext.cli import "
             "run_cli\nfrom pyserini_dense_ext.encode.__main__ import main\nrun_cli(main, sys.argv[1:])\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([sys.executable, "-c", hangs, *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(partial_dir(out).glob("chunk-*.npy")):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    start = time.monotonic()
    second = subprocess.run([sys.executable, "-m", "pyserini_dense_ext.encode", *args], env=env, capture_output=True,
                            text=True, timeout=120)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"is being written by pid {first.pid} on host" in second.stderr
    assert time.monotonic() - start < 60  # it did not wait for the first run
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    assert lock_path(out).exists()  # the killed run's record stays, but its lock died with it
    third = subprocess.run([sys.executable, "-m", "pyserini_dense_ext.encode", *args], env=env, capture_output=True,
                           text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    assert not lock_path(out).exists() and not partial_dir(out).exists()
    reference = encode_corpus(read_corpus(corpus), load_model(tiny_family_dirs["repbert"]), tmp_path / "ref",
                              {"model": "x"}, chunk_size=10, progress=False)
    a, ids_a, _ = read_index_dir(out)
    b, ids_b, _ = read_index_dir(reference)
    assert ids_a == ids_b
    np.testing.assert_allclose(a.reconstruct_n(0, a.ntotal), b.reconstruct_n(0, b.ntotal), atol=1e-6)


def test_locked_error_is_a_file_exists_error_with_the_holder(tmp_path):
    path = lock_path(tmp_path / "x")
    assert path == tmp_path / ".x.lock"
    assert issubclass(OutputLockedError, FileExistsError)


# ----- ONNX: sliced batches and the automatic query backend --------------------------------------------

@pytest.fixture(scope="module")
def query_export(tiny_family_dirs, tmp_path_factory):
    """The RepBERT tiny model and its query export in an export cache of this module's own (other tests must
    keep searching with torch)."""
    from pyserini_dense_ext.onnx.export import export_onnx

    before = os.environ["DENSE_EXT_ONNX_CACHE"]
    os.environ["DENSE_EXT_ONNX_CACHE"] = str(tmp_path_factory.mktemp("onnx-cache"))
    try:
        meta = export_onnx(tiny_family_dirs["repbert"], "query", check=False)
        yield tiny_family_dirs["repbert"], Path(meta.extra["path"])
    finally:
        os.environ["DENSE_EXT_ONNX_CACHE"] = before


def test_sliced_onnx_batches_equal_one_run(query_export):
    from pyserini_dense_ext.onnx import load_onnx

    texts = [" ".join(WORDS[i:i + 3 + i % 9]) for i in range(40)]
    one = load_onnx(query_export[1], threads=1).encode(texts, "query", batch_size=16)
    for threads in (2, 3):
        np.testing.assert_array_equal(load_onnx(query_export[1], threads=threads).encode(texts, "query",
                                                                                        batch_size=16), one)


def test_int8_batches_are_not_sliced(query_export, tmp_path):
    """int8 quantises activations with one scale per batch, so a row depends on its batch: the batch a caller
    asks for is the one run, whatever the thread count (fp32 slices, above)."""
    from pyserini_dense_ext.onnx import load_onnx
    from pyserini_dense_ext.onnx.export import export_onnx

    path = tmp_path / "q-int8.onnx"
    export_onnx(query_export[0], "query", path, precision="int8", check=False)
    texts = [" ".join(WORDS[i:i + 3 + i % 9]) for i in range(40)]
    one = load_onnx(path, threads=1).encode(texts, "query", batch_size=16)
    np.testing.assert_array_equal(load_onnx(path, threads=2).encode(texts, "query", batch_size=16), one)


def test_search_picks_the_cached_export_unless_told_otherwise(query_export, dirs, tiny_corpus, tmp_path):
    from pyserini_dense_ext.encoders.base import DenseModel
    from pyserini_dense_ext.onnx.encoder import OnnxModel

    model_dir, export = query_export
    assert export.parent.parent == Path(os.environ["DENSE_EXT_ONNX_CACHE"])
    index = encode_corpus(read_corpus(tiny_corpus), load_model(model_dir), tmp_path / "idx", {"model": "x"},
                          progress=False)
    auto = DenseSearcher(index, model_dir)
    torch_side = DenseSearcher(index, model_dir, backend="torch")
    assert isinstance(auto.query_encoder.model, OnnxModel) and isinstance(torch_side.query_encoder.model, DenseModel)
    queries = ["protein cells", "wing flow over the aircraft", "hello"]
    np.testing.assert_allclose(auto.encode_queries(queries), torch_side.encode_queries(queries), atol=1e-5)
    with pytest.raises(InputError, match="no int8 ONNX query export"):
        DenseSearcher(index, model_dir, precision="int8")
    other_cache = tmp_path / "empty-cache"
    os.environ["DENSE_EXT_ONNX_CACHE"] = str(other_cache)
    try:
        assert isinstance(DenseSearcher(index, model_dir).query_encoder.model, DenseModel)  # no export: torch
        with pytest.raises(InputError, match="no fp32 ONNX query export"):
            DenseSearcher(index, model_dir, backend="onnx")
    finally:
        os.environ["DENSE_EXT_ONNX_CACHE"] = str(export.parent.parent)
