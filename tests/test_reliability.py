"""Reliability at scale: SIGKILL and resume, shards + merge, search over shards, Ray, threads, no pickle.

Every comparison is against an uninterrupted, unsharded, single-process, single-threaded build
made in the same test, or against ``build_faiss_index`` run on the same vectors.
"""
from __future__ import annotations

import ast
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import WORDS, crash_on_call, write_jsonl

from pyserini_dense_ext.encode.__main__ import main as encode_main
from pyserini_dense_ext.encoders import load_model, load_query_encoder
from pyserini_dense_ext.index import build_faiss_index, read_index_dir, write_index_dir
from pyserini_dense_ext.index.chunks import partial_dir
from pyserini_dense_ext.index.encode import encode_corpus
from pyserini_dense_ext.index.faiss_dir import IndexMeta
from pyserini_dense_ext.index.merge import main as merge_main
from pyserini_dense_ext.index.merge import merge_index_dirs
from pyserini_dense_ext.io import InputError, read_corpus
from pyserini_dense_ext.io.fingerprint import encoder_fingerprint
from pyserini_dense_ext.search import DenseSearcher
from pyserini_dense_ext.search.shards import ShardedSearcher

ROOT = Path(__file__).resolve().parents[1]
N_DOCS, CHUNK = 240, 10
QUERIES = ["protein expression in cells", "cancer risk", "wing flow over the aircraft", "heat", "mice gene study",
           "shock wave at mach number two", "hello world", "the effect of treatment"]
QIDS = [f"q{i}" for i in range(len(QUERIES))]

# The real CLI in a subprocess; each DenseModel.encode call (one per chunk) is logged, and optionally
# slowed, so the test can kill the process mid-run and count what a re-run encodes again.
LOGGED_CLI = r"""
import os, sys, time
import pyserini_dense_ext
from pyserini_dense_ext.encoders.base import DenseModel
real = DenseModel.encode
def logged(self, texts, side, *args, **kwargs):
    with open(os.environ["ENCODE_LOG"], "a") as f:
        f.write(f"{len(texts)}\n")
    time.sleep(float(os.environ["ENCODE_DELAY"]))
    return real(self, texts, side, *args, **kwargs)
DenseModel.encode = logged
from pyserini_dense_ext.cli import run_cli
from pyserini_dense_ext.encode.__main__ import main
run_cli(main, sys.argv[1:])
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """240 generated documents of 1-60 words, all different (so no score ties)."""
    rng = random.Random(7)
    texts: dict[str, None] = {}
    while len(texts) < N_DOCS:
        texts[" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60)))] = None
    rows = [{"_id": f"doc-{i:03d}", "title": "", "text": t} for i, t in enumerate(texts)]
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", rows)


def encode_args(corpus: Path, model_dir: Path, out: Path, *extra_input: str, output=(), encoder=()) -> list[str]:
    return ["input", "--corpus", str(corpus), *extra_input, "encoder", "--encoder", str(model_dir), "--batch-size",
            "8", *encoder, "output", "--index", str(out), "--chunk-size", str(CHUNK), "--quiet", *output]


@pytest.fixture(scope="module")
def models(tiny_bert, tiny_family_dirs, tmp_path_factory) -> dict[str, Path]:
    """RepBERT, and ME-BERT (m=3) with weights spread out: at BERT's 0.02 init the first tokens' vectors
    are nearly equal, every document scores the same to 5 digits, and rankings are decided by ties."""
    import torch

    model = load_model(tiny_bert, family="mebert", num_vectors=3)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator))
    out = tmp_path_factory.mktemp("mebert-spread")
    model.save(out)
    return {"repbert": tiny_family_dirs["repbert"], "mebert": out}


@pytest.fixture(scope="module")
def unsharded(models, corpus, tmp_path_factory) -> dict[str, Path]:
    """The reference: one uninterrupted single-process flat build per family."""
    out = {}
    for family in ("repbert", "mebert"):
        path = tmp_path_factory.mktemp("ref") / family
        assert encode_main(encode_args(corpus, models[family], path)) == 0
        out[family] = path
    return out


def vectors_and_docids(index_dir: Path) -> tuple[np.ndarray, list[str]]:
    index, docids, _ = read_index_dir(index_dir)
    return index.reconstruct_n(0, index.ntotal), docids


def assert_same_search(a, b, k: int = 15) -> None:
    """Same docids in the same order, same scores (to float noise), for every query."""
    ra, rb = a.batch_search(QUERIES, QIDS, k=k), b.batch_search(QUERIES, QIDS, k=k)
    for qid in QIDS:
        assert [h.docid for h in ra[qid]] == [h.docid for h in rb[qid]]
        np.testing.assert_allclose([h.score for h in ra[qid]], [h.score for h in rb[qid]], rtol=1e-5, atol=1e-6)


# ----- resumable encoding ---------------------------------------------------------------------------

def run_logged(args: list[str], log: Path, delay: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ENCODE_LOG": str(log), "ENCODE_DELAY": str(delay)}
    return subprocess.Popen([sys.executable, "-c", LOGGED_CLI, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_then_rerun_equals_an_uninterrupted_run(models, corpus, unsharded, tmp_path):
    out = tmp_path / "idx"
    args = encode_args(corpus, models["repbert"], out)
    work = partial_dir(out)
    proc = run_logged(args, tmp_path / "first.log", delay=0.1)
    deadline = time.monotonic() + 120
    while len(list(work.glob("chunk-*.npy"))) < 3:
        assert proc.poll() is None, f"encode ended before it could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline, "no chunk appeared within 120 s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    n_chunks = N_DOCS // CHUNK
    finished = sorted(p.name for p in work.glob("chunk-*.npy"))
    assert 3 <= len(finished) < n_chunks and not out.exists()  # killed mid-run, and no index was published
    for path in work.glob("chunk-*.npy"):
        np.load(path, allow_pickle=False)  # every chunk file that exists is whole
    # A kill in the middle of writing a chunk leaves its .tmp behind: the re-run must not trust it.
    leftover = work / f"chunk-{len(finished):06d}.npy.tmp"
    leftover.write_bytes(b"\x93NUMPY half-written garbage")

    proc = run_logged(args, tmp_path / "second.log", delay=0)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    reencoded = (tmp_path / "second.log").read_text().split()
    assert len(reencoded) == n_chunks - len(finished)  # nothing encoded twice, nothing skipped
    assert not work.exists() and not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    got, got_ids = vectors_and_docids(out)
    want, want_ids = vectors_and_docids(unsharded["repbert"])
    assert got_ids == want_ids == [d.docid for d in read_corpus(corpus)]
    np.testing.assert_array_equal(got, want)


def test_kill_before_state_file_or_during_its_write_starts_afresh(models, corpus, unsharded, tmp_path):
    out = tmp_path / "idx"
    work = partial_dir(out)
    work.mkdir()  # killed between creating the partial dir and writing its state
    (work / "state.json.tmp").write_text('{"finger')  # ... or while writing it
    assert encode_main(encode_args(corpus, models["repbert"], out)) == 0
    np.testing.assert_array_equal(vectors_and_docids(out)[0], vectors_and_docids(unsharded["repbert"])[0])


def test_a_chunk_that_is_not_ours_is_refused(models, corpus, tmp_path):
    out = tmp_path / "idx"
    model = load_model(models["repbert"])
    docs = read_corpus(corpus)
    with crash_on_call(model, "encode", 3), pytest.raises(KeyboardInterrupt):
        encode_corpus(docs, model, out, {"model": "x"}, chunk_size=CHUNK, progress=False)
    np.save(partial_dir(out) / "chunk-000001.npy", np.zeros((3, 32), np.float32))  # wrong length
    with pytest.raises(ValueError, match=r"chunk-000001.npy holds float32 \(3, 32\), expected 10 float32 rows"):
        encode_corpus(docs, model, out, {"model": "x"}, chunk_size=CHUNK, progress=False)
    assert not out.exists()


# ----- shards and merge -----------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["repbert", "mebert"])
def test_shards_merged_equal_the_unsharded_build(models, corpus, unsharded, tmp_path, family):
    model_dir = models[family]
    shards = []
    for i in (2, 0, 1):  # any order: the merge orders them by recorded shard id
        path = tmp_path / f"shard{i}"
        assert encode_main(encode_args(corpus, model_dir, path, "--shard-id", str(i), "--shard-num", "3")) == 0
        assert read_index_dir(path)[2].shard_id == i
        shards.append(path)
    merged = tmp_path / "merged"
    assert merge_main(["--shards", *map(str, shards), "--output", str(merged), "--quiet"]) == 0
    got, got_ids = vectors_and_docids(merged)
    want, want_ids = vectors_and_docids(unsharded[family])
    assert got_ids == want_ids  # docids in corpus order, each doc's m rows together
    np.testing.assert_allclose(got, want, atol=1e-5)  # batches differ at shard edges: float noise only
    meta = read_index_dir(merged)[2]
    assert (meta.num_docs, meta.rows_per_doc, meta.shard_num) == (N_DOCS, 3 if family == "mebert" else 1, 1)
    assert meta.corpus == read_index_dir(unsharded[family])[2].corpus  # so it is reusable as the unsharded build
    encoder = load_query_encoder(model_dir)
    reference = DenseSearcher(unsharded[family], encoder)
    assert_same_search(DenseSearcher(merged, encoder), reference)
    assert_same_search(ShardedSearcher(shards, encoder), reference)  # searched without merging
    for k in (1, 7, N_DOCS + 5):  # k beyond one shard's size, and beyond the corpus
        scores, docs = ShardedSearcher(shards, encoder).search_vectors(encoder.encode_batch(QUERIES), k)
        ref_scores, ref_docs = reference.search_vectors(encoder.encode_batch(QUERIES), k)
        assert (docs >= 0).sum() == (ref_docs >= 0).sum() == len(QUERIES) * min(k, N_DOCS)
        np.testing.assert_allclose(scores[docs >= 0], ref_scores[ref_docs >= 0], rtol=1e-5, atol=1e-6)


def write_shards(tmp_path: Path, vectors: np.ndarray, num: int, index_type: str = "flat") -> list[Path]:
    """Shard dirs holding contiguous slices of ``vectors``, as ``encode --shard-id i`` would write them."""
    bounds = np.linspace(0, len(vectors), num + 1).astype(int)
    paths = []
    for i in range(num):
        part = vectors[bounds[i]:bounds[i + 1]]
        ids = [f"d{j}" for j in range(bounds[i], bounds[i + 1])]
        m = dict(dim=vectors.shape[1], num_rows=len(part), num_docs=len(part), index_type=index_type,
                 encoder={"model": "m"}, shard_id=i, shard_num=num)
        index = build_faiss_index(part, index_type, pq_m=4) if index_type != "flat" else build_faiss_index(part)
        paths.append(write_index_dir(tmp_path / f"s{i}", index, ids, IndexMeta(**m)))
    return paths


@pytest.mark.parametrize("index_type", ["flat", "flat-fp16", "hnsw", "pq"])
def test_merge_into_any_type_equals_building_that_type_unsharded(tmp_path, index_type):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((600, 16)).astype(np.float32)
    shards = write_shards(tmp_path, vectors, 3)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # HNSW insertion and k-means are only reproducible single-threaded
    try:
        merged = merge_index_dirs(shards[::-1], tmp_path / "merged", index_type, progress=False, pq_m=4)
        reference = build_faiss_index(vectors, index_type, pq_m=4)
    finally:
        faiss.omp_set_num_threads(threads)
    index, docids, meta = read_index_dir(merged)
    assert docids == [f"d{j}" for j in range(600)] and meta.index_type == index_type
    assert type(faiss.downcast_index(index)) is type(faiss.downcast_index(reference))
    queries = rng.standard_normal((20, 16)).astype(np.float32)
    got, want = index.search(queries, 25), reference.search(queries, 25)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])


def test_merge_reads_hnsw_and_fp16_shards_but_refuses_pq(tmp_path):
    vectors = np.random.default_rng(2).standard_normal((900, 16)).astype(np.float32)
    for index_type, rtol in (("hnsw", 0), ("flat-fp16", 2 ** -10)):  # HNSW keeps rows exactly, fp16 to 1 ulp
        merged = merge_index_dirs(write_shards(tmp_path / index_type, vectors, 2, index_type),
                                  tmp_path / f"m-{index_type}", progress=False)
        np.testing.assert_allclose(vectors_and_docids(merged)[0], vectors, rtol=rtol, atol=0)
    with pytest.raises(InputError, match="IndexPQ index, which keeps only compressed codes.*--index-type flat"):
        merge_index_dirs(write_shards(tmp_path / "pq", vectors, 2, "pq"), tmp_path / "m-pq", progress=False)


@pytest.mark.parametrize("meta, message", [
    ({1: {"dim": 8}}, "has dim=8 but"),
    ({1: {"rows_per_doc": 3, "num_rows": 150}}, "has rows_per_doc=3 but"),
    ({1: {"encoder": {"model": "other"}}}, "another encoder.*differs in model"),
    ({1: {"shard_id": 0}}, "shard 0 of 3 is given twice"),
    ({2: {"shard_num": 4}}, "disagree on shard_num"),
])
def test_merge_refuses_shards_that_do_not_belong_together(tmp_path, meta, message):
    vectors = np.random.default_rng(3).standard_normal((150, 16)).astype(np.float32)
    shards = write_shards(tmp_path, vectors, 3)
    for i, changes in meta.items():
        m = json.loads((shards[i] / "dense_ext_index.json").read_text())
        m.update(changes)
        if "dim" in changes:  # a real 8-dim shard, so the metadata is consistent with its index
            write_index_dir(shards[i], build_faiss_index(vectors[:50, :8]), (shards[i] / "docid").read_text().split(),
                            IndexMeta(**{**m, "num_rows": 50}), overwrite=True)
        elif "rows_per_doc" in changes:
            index = build_faiss_index(np.repeat(vectors[50:100], 3, axis=0))
            ids = [d for d in (shards[i] / "docid").read_text().split() for _ in range(3)]
            write_index_dir(shards[i], index, ids, IndexMeta(**m), overwrite=True)
        else:
            (shards[i] / "dense_ext_index.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match=message):
        merge_index_dirs(shards, tmp_path / "merged", progress=False)
    with pytest.raises(InputError, match=message):
        ShardedSearcher(shards)
    assert not (tmp_path / "merged").exists()


def test_merge_refuses_missing_and_overlapping_shards(tmp_path):
    vectors = np.random.default_rng(4).standard_normal((90, 16)).astype(np.float32)
    shards = write_shards(tmp_path, vectors, 3)
    with pytest.raises(InputError, match=r"shards \[1\] of 3 are missing"):
        merge_index_dirs([shards[0], shards[2]], tmp_path / "merged", progress=False)
    (shards[2] / "docid").write_text("d0\n" + "".join(f"x{j}\n" for j in range(29)))
    with pytest.raises(InputError, match="docid 'd0' is also in .*s0: shards overlap"):
        merge_index_dirs(shards, tmp_path / "merged", progress=False)


def test_merge_cli_errors_exit_2_without_traceback(tmp_path):
    vectors = np.random.default_rng(5).standard_normal((600, 16)).astype(np.float32)
    shards = write_shards(tmp_path, vectors, 2, "pq")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "pyserini_dense_ext.index.merge", "--shards", *map(str, shards),
                             "--output", str(tmp_path / "m")], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: {shards[0] / 'index'}: field 'index_type' is a IndexPQ index" in result.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("main, argv, wanted", [
    (merge_main, ["--help"], ["--shards", "--index-type", "flat-fp16", "pq"]),
    (encode_main, ["encoder", "--help"], ["--ray [ADDRESS]", "--ray-workers", "ray://HEAD:10001"]),
    (encode_main, ["output", "--help"], ["flat-fp16", "--chunk-size"]),
])
def test_help(capsys, main, argv, wanted):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and all(w in out for w in wanted)


# ----- Ray ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local Ray instance whose workers run tests/ray_worker_hook.py: each chunk a worker encodes is logged in
    ``ray.control/encoded.log`` (the driver cannot see into worker processes otherwise)."""
    from pyserini_dense_ext._env import keep_signal_handlers

    ray = pytest.importorskip("ray", reason="Ray is not installed (extra 'ray')")
    control = tmp_path_factory.mktemp("ray-control")
    tests_dir = str(Path(__file__).parent)
    path = os.pathsep.join([tests_dir, str(ROOT), os.environ.get("PYTHONPATH", "")])
    runtime_env = {"env_vars": {"PYTHONPATH": path, "DENSE_EXT_RAY_TEST_DIR": str(control)},
                   "worker_process_setup_hook": "ray_worker_hook.setup"}
    with keep_signal_handlers():  # later tests run Pyserini's JVM in this process
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", runtime_env=runtime_env)
    ray.control = control
    yield ray
    with keep_signal_handlers():
        ray.shutdown()


def interrupted_after(chunks: int, models, corpus, out: Path) -> None:
    """A single-process encode of ``corpus`` into ``out`` that dies after ``chunks`` finished chunks."""
    model = load_model(models["repbert"])
    encoder_id = encoder_fingerprint(models["repbert"], model.config.to_dict())  # as the CLI records it
    with crash_on_call(model, "encode", chunks + 1), pytest.raises(KeyboardInterrupt):
        encode_corpus(read_corpus(corpus), model, out, encoder_id, chunk_size=CHUNK, batch_size=8, progress=False)
    assert len(list(partial_dir(out).glob("chunk-*.npy"))) == chunks


def run_on_ray(ray_cluster, models, corpus, out: Path, monkeypatch) -> tuple[list[str], list[int]]:
    """``encode ... --ray --ray-workers 2``; returns the worker log lines and the chunks the driver saved."""
    import pyserini_dense_ext.index.encode as encoding
    from pyserini_dense_ext.encoders.base import DenseModel

    def not_here(*args, **kwargs):
        raise AssertionError("a chunk was encoded in the driver: --ray was not used")

    saved, real_save = [], encoding.save_chunk

    def counting_save(path, vectors):
        saved.append(int(path.name.split("-")[1].split(".")[0]))
        return real_save(path, vectors)

    log = ray_cluster.control / "encoded.log"
    log.unlink(missing_ok=True)
    monkeypatch.setattr(DenseModel, "encode", not_here)
    monkeypatch.setattr(encoding, "save_chunk", counting_save)  # what the driver saves each chunk with
    args = encode_args(corpus, models["repbert"], out, encoder=["--ray", "--ray-workers", "2"])
    assert encode_main(args) == 0
    assert ray_cluster.is_initialized()  # it joined the running instance and left it running
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else [], saved


def test_ray_encoding_equals_single_process_and_resumes_its_chunks(ray_cluster, models, corpus, unsharded, tmp_path,
                                                                   monkeypatch):
    out = tmp_path / "idx"
    interrupted_after(4, models, corpus, out)  # a single-process run dies after 4 chunks ...
    lines, saved = run_on_ray(ray_cluster, models, corpus, out, monkeypatch)  # ... the same command with --ray ends it
    n_chunks = N_DOCS // CHUNK
    assert sorted(saved) == list(range(4, n_chunks))  # exactly the unfinished chunks, each once
    assert len(lines) == n_chunks - 4  # encoded by Ray workers (other processes), none twice
    assert os.getpid() not in {int(line.split("\t")[0]) for line in lines}
    got, got_ids = vectors_and_docids(out)
    want, want_ids = vectors_and_docids(unsharded["repbert"])
    assert got_ids == want_ids
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_a_ray_worker_killed_mid_chunk_is_replaced_and_its_chunk_redone(ray_cluster, models, corpus, unsharded,
                                                                       tmp_path, monkeypatch):
    out = tmp_path / "idx"
    interrupted_after(20, models, corpus, out)
    (ray_cluster.control / "kill-next").touch()  # the first worker to take a chunk dies half-way through it
    lines, saved = run_on_ray(ray_cluster, models, corpus, out, monkeypatch)
    assert (ray_cluster.control / "killed").exists()
    (ray_cluster.control / "killed").unlink()
    n_chunks = N_DOCS // CHUNK
    assert sorted(saved) == list(range(20, n_chunks))  # every chunk saved once, the killed one included
    assert len(lines) == n_chunks - 20 + 1  # the killed attempt, then its retry on a restarted worker
    assert len({line.split("\t")[0] for line in lines}) >= 2
    got, got_ids = vectors_and_docids(out)
    want, want_ids = vectors_and_docids(unsharded["repbert"])
    assert got_ids == want_ids
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_ray_missing_is_a_clear_error(models, corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ValueError, match=r"--ray needs Ray.*pip install 'pyserini-dense-ext\[ray\]'"):
        encode_main(encode_args(corpus, models["repbert"], tmp_path / "idx", encoder=["--ray"]))


# ----- threads --------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["repbert", "mebert"])
def test_one_searcher_in_eight_threads_equals_single_threaded(models, unsharded, family, tmp_path):
    searcher = DenseSearcher(unsharded[family], models[family])
    shards = [tmp_path / "s0", tmp_path / "s1"]  # and a sharded searcher over the same vectors
    index, docids, meta = read_index_dir(unsharded[family])
    rows = index.reconstruct_n(0, index.ntotal)
    half = len(rows) // 2 // meta.rows_per_doc * meta.rows_per_doc
    for i, part in enumerate((slice(0, half), slice(half, None))):
        ids = docids[part]
        write_index_dir(shards[i], build_faiss_index(rows[part]), ids,
                        IndexMeta(dim=meta.dim, num_rows=len(ids), num_docs=len(set(ids)),
                                  rows_per_doc=meta.rows_per_doc, encoder=meta.encoder, shard_id=i, shard_num=2))
    sharded = ShardedSearcher(shards, searcher.query_encoder)

    def results(s, single: bool):
        if single:
            return {q: [(h.docid, h.score) for h in s.search(t, k=20)] for q, t in zip(QIDS, QUERIES)}
        return {q: [(h.docid, h.score) for h in hits] for q, hits in s.batch_search(QUERIES, QIDS, k=20).items()}

    jobs = [(s, single) for s in (searcher, sharded) for single in (True, False)] * 4  # 16 jobs
    expected = {(id(s), single): results(s, single) for s, single in jobs}
    barrier = threading.Barrier(8)

    def job(args):
        barrier.wait(timeout=60)  # 8 at a time, all released together
        return results(*args)

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(job, jobs))
    for (s, single), result in zip(jobs, got):
        assert result == expected[(id(s), single)]  # exactly: same docids, same float scores


@pytest.mark.parametrize("family", ["repbert", "tct_colbert"])
def test_one_model_encoding_queries_and_documents_from_eight_threads(tiny_family_dirs, corpus, family):
    """Queries and documents truncate at different lengths; the tokenizer's shared state must not leak."""
    model = load_model(tiny_family_dirs[family])
    texts = [d.contents for d in read_corpus(corpus)][:80]
    expected = {side: model.encode(texts, side, batch_size=8) for side in ("query", "document")}
    barrier = threading.Barrier(8)

    def job(i: int):
        barrier.wait(timeout=60)
        side = ("query", "document")[i % 2]
        return side, model.encode(texts, side, batch_size=8)

    with ThreadPoolExecutor(8) as pool:
        for side, got in pool.map(job, range(32)):
            np.testing.assert_array_equal(got, expected[side])


# ----- no pickle ------------------------------------------------------------------------------------

UNPICKLERS = ("pickle.load", "pickle.loads", "pickle.Unpickler", "_pickle.load", "_pickle.loads", "read_pickle",
              "dill.load", "dill.loads", "joblib.load", "cloudpickle.load", "cloudpickle.loads")


def pickle_offenders(source: str, name: str) -> list[str]:
    """Every way to unpickle in ``source``; np.load must say allow_pickle=False, torch.load weights_only=True."""
    offenders = []
    for node in ast.walk(ast.parse(source)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "_pickle", "dill", "joblib"):
            offenders.append(f"{where} imports names from {node.module}")  # would hide calls from the checks below
        if isinstance(node, ast.Attribute) and any(ast.unparse(node).endswith(u) for u in UNPICKLERS):
            offenders.append(f"{where} uses {ast.unparse(node)}")
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if func in ("np.load", "numpy.load") and keywords.get("allow_pickle") != "False":
            offenders.append(f"{where} calls np.load without allow_pickle=False")
        if func == "torch.load" and keywords.get("weights_only") != "True":
            offenders.append(f"{where} calls torch.load without weights_only=True")
    return offenders


@pytest.mark.parametrize("snippet", ["np.load(p)", "np.load(p, allow_pickle=True)", "pickle.loads(b)",
                                     "pd.read_pickle(p)", "torch.load(f)", "from pickle import load",
                                     "u = pickle.Unpickler(f)", "joblib.load(p)"])
def test_the_pickle_audit_catches(snippet):
    assert len(pickle_offenders(snippet, "x.py")) == 1


def test_no_pickle_based_loading_in_the_package():
    offenders = [o for path in sorted((ROOT / "pyserini_dense_ext").rglob("*.py"))
                 for o in pickle_offenders(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert offenders == []


def test_pickled_chunk_and_pickled_model_weights_run_no_code(tiny_bert, models, corpus, tmp_path):
    import shutil

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    # a chunk file in the partial dir that is really a pickled object array
    out = tmp_path / "idx"
    model = load_model(models["repbert"])
    with crash_on_call(model, "encode", 2), pytest.raises(KeyboardInterrupt):
        encode_corpus(read_corpus(corpus), model, out, {"model": "x"}, chunk_size=CHUNK, progress=False)
    np.save(partial_dir(out) / "chunk-000000.npy", np.array([Payload()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="chunk-000000.npy is not a plain float32 .npy chunk.*allow_pickle=False"):
        encode_corpus(read_corpus(corpus), model, out, {"model": "x"}, chunk_size=CHUNK, progress=False)
    # a model dir whose weights are a malicious pytorch_model.bin (torch.save is a pickle)
    bad = tmp_path / "bad-model"
    shutil.copytree(tiny_bert, bad)
    for p in bad.glob("*.safetensors"):
        p.unlink()
    import pickle

    (bad / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(), protocol=2))
    with pytest.raises(InputError, match="pickled checkpoint .* not loaded"):
        load_model(bad, family="repbert")
    assert not marker.exists()


JVM_AFTER_RAY = """
import sys
import pyserini_dense_ext
from pyserini.search.lucene import LuceneSearcher
import ray
from pyserini_dense_ext._env import keep_signal_handlers
searcher = LuceneSearcher(sys.argv[1])
words = open(sys.argv[2]).read().split()
queries = [" ".join(words[i:i + 8]) for i in range(0, 8 * 500, 8)]  # enough work for the JIT to compile
searcher.batch_search(queries, [str(i) for i in range(len(queries))], k=100, threads=2)
with keep_signal_handlers():
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
with keep_signal_handlers():
    ray.shutdown()
for _ in range(5):
    searcher.batch_search(queries, [str(i) for i in range(len(queries))], k=100, threads=2)
    LuceneSearcher(sys.argv[1]).search(queries[0])
print("searched after ray")
"""


def test_pyserini_jvm_survives_ray_in_the_same_process(corpus, tmp_path):
    """Ray replaces the fatal-signal handlers the JVM relies on; ``--ray`` must restore them."""
    pytest.importorskip("ray", reason="Ray is not installed (extra 'ray')")
    from pyserini_dense_ext.index.lucene import build_lucene_index

    index = build_lucene_index(read_corpus(corpus), tmp_path / "bm25", progress=False)
    script = tmp_path / "jvm_after_ray.py"
    script.write_text(JVM_AFTER_RAY)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    words = tmp_path / "words.txt"
    words.write_text(" ".join(d.contents for d in read_corpus(corpus)) * 3)
    result = subprocess.run([sys.executable, str(script), str(index), str(words)], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0 and "searched after ray" in result.stdout, result.stderr[-2000:]
