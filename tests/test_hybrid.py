"""Hybrid search on tiny data: the array BM25 path against Pyserini's own searchers, fusion parity, the CLI."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

import pyserini_dense_ext  # noqa: F401
from pyserini_dense_ext.fusion import fuse_rankings
from pyserini_dense_ext.io.corpus import Doc
from pyserini_dense_ext.io.errors import InputError
from pyserini_dense_ext.io.runs import read_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = ("protein cell gene cancer risk patients study effect human mice expression disease treatment wing flow "
         "heat pressure boundary layer mach shock aircraft").split()
QUERIES = ["protein cell", "cancer risk in patients", "wing flow pressure", "mach shock", "gene", "heat heat layer",
           "treatment of disease in mice", "nothing matches zzz"]


def synthetic_docs(n: int = 240, seed: int = 0) -> list[Doc]:
    """Short random documents, a third of them exact copies of others: many exact BM25 score ties."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(VOCAB, size=rng.integers(1, 9))) for _ in range(n * 2 // 3)]
    texts += [texts[i] for i in rng.integers(0, len(texts), size=n - len(texts))]
    order = rng.permutation(n)  # docids not in index order, so id order differs from Lucene's
    return [Doc(f"doc{order[i]:04d}", t) for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def indexes(tmp_path_factory, tiny_family_dirs):
    from pyserini_dense_ext.encoders import load_model
    from pyserini_dense_ext.index.encode import encode_corpus
    from pyserini_dense_ext.index.lucene import build_lucene_index

    docs = synthetic_docs()
    root = tmp_path_factory.mktemp("hybrid")
    lucene = build_lucene_index(docs, root / "bm25", threads=1, progress=False)
    dense = {}
    for family, index_type in (("repbert", "flat"), ("mebert", "flat"), ("repbert", "hnsw")):
        dense[family, index_type] = encode_corpus(docs, load_model(tiny_family_dirs[family]),
                                                  root / f"{family}-{index_type}", {"model": family}, index_type,
                                                  batch_size=64, progress=False)
    return {"docs": docs, "lucene": lucene, "dense": dense, "models": tiny_family_dirs}


def lucene_searcher(path, k1=0.9, b=0.4):
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(path))
    searcher.set_bm25(k1, b)
    return searcher


def pyserini_hits(searcher, queries, k):
    results = searcher.batch_search(queries, [str(i) for i in range(len(queries))], k=k, threads=2)
    return [[(h.docid, h.score) for h in results[str(i)]] for i in range(len(queries))]


# ---------------------------------------------------------------- BM25 as arrays
def test_lucene_index_builder_is_complete_and_refuses_to_overwrite(indexes, tmp_path):
    from pyserini_dense_ext.index.lucene import build_lucene_index

    searcher = lucene_searcher(indexes["lucene"])
    assert searcher.num_docs == len(indexes["docs"])
    doc = indexes["docs"][5]
    assert json.loads(searcher.doc(doc.docid).raw()) == {"id": doc.docid, "contents": doc.contents}
    with pytest.raises(FileExistsError, match="already exists"):
        build_lucene_index(indexes["docs"], indexes["lucene"], progress=False)
    assert not list(indexes["lucene"].parent.glob(".bm25.*"))  # no temp dir left behind


def test_lucene_index_cli(tiny_corpus, tmp_path):
    from pyserini_dense_ext.index.lucene import main

    out = tmp_path / "bm25"
    assert main(["--corpus", str(tiny_corpus), "--index", str(out), "--threads", "1"]) == 0
    assert lucene_searcher(out).num_docs == 12
    with pytest.raises(FileExistsError, match="already exists"):
        main(["--corpus", str(tiny_corpus), "--index", str(out)])
    assert main(["--corpus", str(tiny_corpus), "--index", str(out), "--overwrite"]) == 0


@pytest.mark.parametrize("k", [1, 3, 10, 57, 1000])
def test_array_bm25_equals_lucene_searcher_batch_search(indexes, k):
    from pyserini_dense_ext.search.hybrid.sparse import ArraySparse

    searcher = lucene_searcher(indexes["lucene"])
    ours = ArraySparse(searcher).hits(QUERIES, k, threads=2)
    for mine, theirs in zip(ours, pyserini_hits(searcher, QUERIES, k)):
        assert list(zip(mine[0].tolist(), mine[1].tolist())) == theirs  # same docids, order and scores


def test_array_bm25_follows_set_bm25_after_construction(indexes):
    from pyserini_dense_ext.search.hybrid.sparse import ArraySparse

    searcher = lucene_searcher(indexes["lucene"])
    fast = ArraySparse(searcher)
    searcher.set_bm25(1.2, 0.75)
    mine = fast.hits(QUERIES[:3], 20, threads=1)
    for (ids, scores), theirs in zip(mine, pyserini_hits(searcher, QUERIES[:3], 20)):
        assert list(zip(ids.tolist(), scores.tolist())) == theirs


LUCENE8 = os.path.join(ROOT, "tests", "data", "lucene8-bm25")  # built by Anserini 0.14.3 (see its README)


@pytest.mark.parametrize("k", [1, 3, 10, 57, 1000])
def test_array_bm25_equals_batch_search_on_a_lucene8_index(k):
    """Anserini 1.7.1 leaves Lucene 8 indexes' scores unadjusted and their ties in Lucene's order."""
    from pyserini_dense_ext.search.hybrid.sparse import ArraySparse, adjust_score_ties

    searcher = lucene_searcher(LUCENE8)
    fast = ArraySparse(searcher)
    assert fast.lucene8 and searcher.num_docs == len(synthetic_docs())
    ours = fast.hits(QUERIES, k, threads=2)
    for mine, theirs in zip(ours, pyserini_hits(searcher, QUERIES, k)):
        assert list(zip(mine[0].tolist(), mine[1].tolist())) == theirs  # same docids, order and scores
    # the fixture has near-ties the adjuster would have changed, so the test could fail
    assert any(not np.array_equal(adjust_score_ties(s.astype(np.float32)), s.astype(np.float32)) for _, s in ours)


def java_score_ties_adjuster(scores):
    """Anserini 1.7.1's ScoreTiesAdjusterReranker loop, statement by statement, in float32/double as in Java."""
    s = [np.float32(x) for x in scores]
    dup = 0
    for i in range(len(s)):
        y = np.float64(s[i]) * 10000.0  # Math.round(double): floor(y + 1/2), exactly
        s[i] = np.float32(math.floor(Fraction(y) + Fraction(1, 2)) / 10000.0)
        if i == 0 or np.float32(s[i - 1] - s[i]) > np.float32(1e-4):
            dup = 0
        else:
            dup += 1
            s[i] = np.float32(s[i] - np.float32(np.float32(1e-6) * np.float32(dup)))
    return np.array(s, dtype=np.float32)


@pytest.mark.parametrize("seed", range(20))
def test_score_ties_adjuster_equals_the_java_loop(seed):
    from pyserini_dense_ext.search.hybrid.sparse import adjust_score_ties

    rng = np.random.default_rng(seed)
    # Runs of equal and near-equal scores (within 1e-4) are where the loop's state matters.
    base = np.sort(rng.choice(np.round(rng.uniform(0, 20, 30), rng.integers(2, 5)), size=200))[::-1]
    scores = (base + rng.choice([0, 0, 0, 2e-5, 5e-5, 1e-4], size=200)).astype(np.float32)
    scores = np.sort(scores)[::-1]
    np.testing.assert_array_equal(adjust_score_ties(scores), java_score_ties_adjuster(scores))


# ---------------------------------------------------------------- the hybrid searcher
def dense_searcher(indexes, family="repbert", index_type="flat"):
    from pyserini_dense_ext.search import DenseSearcher

    return DenseSearcher(indexes["dense"][family, index_type], indexes["models"][family])


@pytest.mark.parametrize("normalization", [False, True])
@pytest.mark.parametrize("weight_on_dense", [False, True])
@pytest.mark.parametrize("alpha", [0.7, None])
def test_linear_equals_pyserini_hybrid_searcher(indexes, normalization, weight_on_dense, alpha):
    """Pyserini's arguments mean Pyserini's fusion: with or without ``alpha`` (then Pyserini's default 0.1), and
    with no ``fusion=`` (the default fusion, ``auto``, applies only to calls that give none of them)."""
    from pyserini.search.faiss import FaissSearcher
    from pyserini.search.hybrid import HybridSearcher as PyseriniHybrid

    from pyserini_dense_ext.encoders import load_query_encoder
    from pyserini_dense_ext.search.hybrid import HybridSearcher

    sparse = lucene_searcher(indexes["lucene"])
    theirs_dense = FaissSearcher(str(indexes["dense"]["repbert", "flat"]),
                                 load_query_encoder(indexes["models"]["repbert"]))
    qids = [f"q{i}" for i in range(len(QUERIES) - 1)]  # Pyserini divides by zero on the no-BM25-hit query
    kwargs = dict(k0=30, k=1000, normalization=normalization, weight_on_dense=weight_on_dense,
                  **({} if alpha is None else {"alpha": alpha}))
    theirs = PyseriniHybrid(theirs_dense, sparse).batch_search(QUERIES[:-1], qids, threads=2, **kwargs)
    ours_searcher = HybridSearcher(dense_searcher(indexes), sparse)
    ours = ours_searcher.batch_search(QUERIES[:-1], qids, threads=2, **kwargs)
    assert "dense_weight" not in ours_searcher.fusion_params  # linear's parameters, not auto's estimate
    one = ours_searcher.search(QUERIES[1], **kwargs)
    assert_same_ranking([(h.docid, h.score) for h in one],
                        [(h.docid, float(h.score)) for h in PyseriniHybrid(theirs_dense, sparse).search(QUERIES[1],
                                                                                                       **kwargs)])
    for qid in qids:
        # Same vectors, same BM25. Pyserini's arithmetic mixes Python floats with FaissSearcher's np.float32
        # scores, which numpy (NEP 50) rounds to float32; ours stays float64. So: equal to float32 precision,
        # same order except where two scores are equal to that precision (Pyserini orders those by set
        # iteration, we by docid).
        assert_same_ranking([(h.docid, h.score) for h in ours[qid]], [(h.docid, float(h.score)) for h in theirs[qid]])


def assert_same_ranking(ours, theirs, rtol=1e-6):
    assert len(ours) == len(theirs)
    theirs_by_doc = dict(theirs)
    assert theirs_by_doc.keys() == dict(ours).keys()
    for d, s in ours:
        assert s == pytest.approx(theirs_by_doc[d], rel=rtol, abs=rtol)
    for (d1, s1), (d2, s2) in zip(ours, theirs):
        assert d1 == d2 or s1 == pytest.approx(s2, rel=rtol, abs=rtol), (d1, s1, d2, s2)
    assert [s for _, s in ours] == sorted((s for _, s in ours), reverse=True)


@pytest.mark.parametrize("method,params", [("interleave", {}), ("rrf", {"rrf_k": 10}), ("combmnz", {}),
                                           ("weighted", {"alpha": 0.2, "normalization": "z-score"})])
@pytest.mark.parametrize("family,index_type", [("mebert", "flat"), ("repbert", "hnsw")])
def test_every_method_and_dense_kind_equals_fusing_the_two_searchers_results(indexes, method, params, family,
                                                                              index_type):
    from pyserini_dense_ext.search.hybrid import HybridSearcher

    sparse, dense = lucene_searcher(indexes["lucene"]), dense_searcher(indexes, family, index_type)
    hybrid = HybridSearcher(dense, sparse)
    qids = [f"q{i}" for i in range(len(QUERIES))]
    got = hybrid.batch_search(QUERIES, qids, k0=25, k=15, threads=2, fusion=method, **params)
    d_hits = dense.batch_search(QUERIES, qids, k=25)
    for i, qid in enumerate(qids):
        dense_list = [(h.docid, h.score) for h in d_hits[qid]]
        assert len({d for d, _ in dense_list}) == len(dense_list)  # ME-BERT: one entry per document
        expected = fuse_rankings([pyserini_hits(sparse, [QUERIES[i]], 25)[0], dense_list], method, k=15, **params)
        assert [(h.docid, h.score) for h in got[qid]] == expected
    # One query alone (a batch of one encodes without padding, so compare like with like).
    single = hybrid.search(QUERIES[1], k0=25, k=15, fusion=method, **params)
    alone = hybrid.batch_search(QUERIES[1:2], ["q1"], k0=25, k=15, fusion=method, **params)["q1"]
    assert [(h.docid, h.score) for h in single] == [(h.docid, h.score) for h in alone]


def test_other_searchers_take_their_own_batch_search(indexes):
    """A Pyserini FaissSearcher and a LuceneSearcher subclass go through batch_search: same results."""
    from pyserini.search.faiss import FaissSearcher
    from pyserini.search.lucene import LuceneSearcher

    from pyserini_dense_ext.encoders import load_query_encoder
    from pyserini_dense_ext.search.hybrid import HybridSearcher
    from pyserini_dense_ext.search.hybrid.sources import BatchSearchHits
    from pyserini_dense_ext.search.hybrid.sparse import ArraySparse

    class MyLucene(LuceneSearcher):
        pass

    other = MyLucene(str(indexes["lucene"]))
    other.set_bm25(0.9, 0.4)
    faiss_dense = FaissSearcher(str(indexes["dense"]["repbert", "flat"]),
                                load_query_encoder(indexes["models"]["repbert"]))
    slow = HybridSearcher(faiss_dense, other)
    fast = HybridSearcher(dense_searcher(indexes), lucene_searcher(indexes["lucene"]))
    assert isinstance(slow._sparse, BatchSearchHits) and isinstance(fast._sparse, ArraySparse)
    qids = [str(i) for i in range(len(QUERIES))]
    a = slow.batch_search(QUERIES, qids, k0=40, k=40, fusion="combsum")
    b = fast.batch_search(QUERIES, qids, k0=40, k=40, fusion="combsum")
    for qid in qids:
        assert [h.docid for h in a[qid]] == [h.docid for h in b[qid]]
        # FAISS's SIMD scan and our matrix multiply sum in another order: float32 noise, as between FAISS's own paths
        np.testing.assert_allclose([h.score for h in a[qid]], [h.score for h in b[qid]], rtol=1e-6, atol=1e-6)


def test_search_run_checks_fusion_parameters_once(indexes, monkeypatch):
    import pyserini_dense_ext.fusion as fusion
    from pyserini_dense_ext.search.hybrid import HybridSearcher

    calls = []
    real = fusion.check_value
    monkeypatch.setattr(fusion, "check_value", lambda name, value: calls.append(name) or real(name, value))
    hybrid = HybridSearcher(dense_searcher(indexes), lucene_searcher(indexes["lucene"]))
    topics = {f"q{i}": q for i, q in enumerate(QUERIES)}
    run = hybrid.search_run(topics, k0=20, k=10, fusion="rrf", chunk_size=3, progress=False, rrf_k=10)
    assert calls == ["rrf_k"] and len(run) == len(QUERIES)  # three chunks, eight queries, one check


def test_fusion_arguments_are_checked(indexes):
    from pyserini_dense_ext.search.hybrid import HybridSearcher, fusion_params

    assert fusion_params("linear", normalization=True) == {"normalization": "centred"}
    assert fusion_params("rrf", normalization=False) == {}  # Pyserini's default flag means "none"
    with pytest.raises(ValueError, match="takes \\['rrf_k'\\], not \\['alpha'\\]"):
        fusion_params("rrf", alpha=0.5)
    with pytest.raises(ValueError, match="unknown fusion method"):
        fusion_params("nope")
    hybrid = HybridSearcher(dense_searcher(indexes), lucene_searcher(indexes["lucene"]))
    with pytest.raises(ValueError, match="2 queries but 1 query ids"):
        hybrid.batch_search(QUERIES[:2], ["q"])
    with pytest.raises(ValueError, match="k0 and k must be positive"):
        hybrid.search("gene", k0=0)


# ---------------------------------------------------------------- the CLI
def cli(*args):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "pyserini_dense_ext.search.hybrid", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def cli_groups(indexes, tmp_path, *extra):
    return ["dense", "--index", str(indexes["dense"]["repbert", "flat"]),
            "--encoder", str(indexes["models"]["repbert"]),
            "sparse", "--index", str(indexes["lucene"]), *extra]


def test_cli_writes_the_run_batch_search_gives(indexes, tmp_path):
    from pyserini_dense_ext.search.hybrid import HybridSearcher
    from pyserini_dense_ext.search.hybrid.__main__ import main

    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(QUERIES)))
    out = tmp_path / "run.trec"
    assert main(cli_groups(indexes, tmp_path, "fusion", "--method", "linear", "--alpha", "0.5", "--normalization",
                           "--hits", "30", "run", "--topics", str(topics), "--output", str(out), "--hits", "10",
                           "--threads", "2", "--quiet")) == 0
    run = read_run(out)
    hybrid = HybridSearcher(dense_searcher(indexes), lucene_searcher(indexes["lucene"]))
    expected = hybrid.batch_search(QUERIES, [f"q{i}" for i in range(len(QUERIES))], k0=30, k=10, alpha=0.5,
                                   normalization=True)
    for qid, hits in expected.items():
        assert [d for d, _ in run[qid]] == [h.docid for h in hits]
        np.testing.assert_allclose([s for _, s in run[qid]], [h.score for h in hits], atol=1e-6)


def test_cli_bad_input(indexes, tmp_path):
    from pyserini_dense_ext.search.hybrid.__main__ import main

    topics = tmp_path / "topics.tsv"
    topics.write_text("q1\tgene\n")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("q1 0 doc0001 1\nq9 0 doc0002 1\n")
    out = tmp_path / "run.trec"
    run = ["run", "--topics", str(topics), "--output", str(out)]
    with pytest.raises(InputError, match="lacks 1 queries named in the qrels, e.g. \\['q9'\\]"):
        main(cli_groups(indexes, tmp_path, "run", "--topics", str(topics), "--qids-from", str(qrels), "--output",
                        str(out)))
    with pytest.raises(ValueError, match="does not take --alpha"):
        main(cli_groups(indexes, tmp_path, "fusion", "--method", "rrf", "--alpha", "0.3", *run))
    with pytest.raises(InputError, match="is not a Lucene index dir"):
        main(cli_groups(indexes, tmp_path)[:5] + ["sparse", "--index", str(tmp_path), *run])
    with pytest.raises(SystemExit):
        main(cli_groups(indexes, tmp_path)[:5] + run)  # no sparse group
    # As a command: exit 2, one line naming the file, no traceback, no output file.
    result = cli(*cli_groups(indexes, tmp_path, "run", "--topics", str(tmp_path / "msmarco-passage-dev-subset"),
                             "--output", str(out)))
    assert result.returncode == 2 and "msmarco-passage-dev-subset: topics file does not exist" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_cli_help(capsys):
    from pyserini_dense_ext.search.hybrid.__main__ import main

    result = cli("--help")
    assert result.returncode == 0 and "dense" in result.stdout and "rrf" in result.stdout
    with pytest.raises(SystemExit) as exit_info:
        main(["fusion", "--help"])
    assert exit_info.value.code == 0
    assert "--rrf-k" in capsys.readouterr().out


def test_tune_from_indexes_scores_what_the_hybrid_searcher_returns(indexes, tmp_path):
    """``tune dense ... sparse ... tune ...`` searches the indexes once and evaluates each alpha's fusion."""
    import csv

    from pyserini_dense_ext.eval.metrics import evaluate
    from pyserini_dense_ext.search.hybrid import HybridSearcher
    from pyserini_dense_ext.tune import main as tune_main

    qids = [f"q{i}" for i in range(len(QUERIES))]
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"{q}\t{text}\n" for q, text in zip(qids, QUERIES)))
    docs = indexes["docs"]
    qrels = {q: {docs[(7 * i) % len(docs)].docid: 1, docs[(7 * i + 3) % len(docs)].docid: 2}
             for i, q in enumerate(qids)}
    qrels_path = tmp_path / "qrels.txt"
    qrels_path.write_text("".join(f"{q} 0 {d} {g}\n" for q, js in qrels.items() for d, g in js.items()))
    csv_path, saved = tmp_path / "sweep.csv", tmp_path / "saved"
    eval_qrels = {q: {docs[(5 * i + 1) % len(docs)].docid: 1} for i, q in enumerate(qids[:4])}
    eval_path = tmp_path / "eval-qrels.txt"
    eval_path.write_text("".join(f"{q} 0 {d} {g}\n" for q, js in eval_qrels.items() for d, g in js.items()))
    tune_args = ["--topics", str(topics), "--qrels", str(qrels_path), "--eval-qrels", str(eval_path), "--methods",
                 "linear", "--alphas", "0.1,1", "--hits", "20", "--k", "20", "--metrics", "ndcg@10", "--csv",
                 str(csv_path), "--save-runs", str(saved), "--no-plot", "--quiet"]
    assert tune_main(cli_groups(indexes, tmp_path, "tune", *tune_args)) == 0
    rows = {(r["method"], r["value"]): float(r["ndcg@10"]) for r in csv.DictReader(csv_path.open())}
    # the tune options may also come first, without the group name
    first = csv_path.read_text()
    assert tune_main(tune_args + cli_groups(indexes, tmp_path)) == 0 and csv_path.read_text() == first
    hybrid = HybridSearcher(dense_searcher(indexes), lucene_searcher(indexes["lucene"]))
    for alpha in (0.1, 1.0):
        fused = hybrid.batch_search(QUERIES, qids, k0=20, k=20, alpha=alpha)
        run = {q: [(h.docid, h.score) for h in hits] for q, hits in fused.items()}
        assert rows["linear", str(alpha)] == pytest.approx(evaluate(run, qrels, ("ndcg@10",))["ndcg@10"], abs=1e-6)
    # --save-runs: the two lists as the searchers return them, for the tuning and the held-out queries
    sparse_ref = dict(zip(qids, pyserini_hits(lucene_searcher(indexes["lucene"]), QUERIES, 20)))
    dense_ref = {q: [(h.docid, h.score) for h in hits]
                 for q, hits in dense_searcher(indexes).batch_search(QUERIES, qids, k=20).items()}
    for split, split_qids in (("tune", qids), ("eval", qids[:4])):
        for name, ref in (("sparse", sparse_ref), ("dense", dense_ref)):
            got = read_run(saved / f"{name}.{split}.trec")
            assert set(got) == {q for q in split_qids if ref[q]}
            for q in got:  # (the file re-sorts exact ties by docid: compare docid -> score)
                assert dict(got[q]) == pytest.approx(dict(ref[q]), abs=1e-6), (name, split, q)
    # ... and tuning from the saved runs gives the same sweep without searching
    from_runs = tmp_path / "from-runs.csv"
    assert tune_main(["tune", "--runs", str(saved / "sparse.tune.trec"), str(saved / "dense.tune.trec"), "--qrels",
                      str(qrels_path), "--methods", "linear", "--alphas", "0.1,1", "--hits", "20", "--k", "20",
                      "--metrics", "ndcg@10", "--csv", str(from_runs), "--no-plot", "--quiet"]) == 0
    again = {(r["method"], r["value"]): float(r["ndcg@10"]) for r in csv.DictReader(from_runs.open())}
    assert again == pytest.approx(rows, abs=1e-6)
    held_out = {(r["method"], r["value"]) for r in csv.DictReader(csv_path.with_name("sweep.eval.csv").open())}
    assert ("sparse", "") in held_out and any(m == "linear" and v in ("0.1", "1.0") for m, v in held_out)


# ---------------------------------------------------------------- the default fusion (auto)
def test_default_is_auto_over_the_batch_and_pyserini_arguments_mean_linear(indexes):
    from pyserini_dense_ext.fusion import as_hits, fuse, pool
    from pyserini_dense_ext.fusion.auto import calibrate
    from pyserini_dense_ext.search.hybrid import HybridSearcher

    sparse, dense = lucene_searcher(indexes["lucene"]), dense_searcher(indexes)
    hybrid = HybridSearcher(dense, sparse)
    qids = [f"q{i}" for i in range(len(QUERIES))]
    d_hits = dense.batch_search(QUERIES, qids, k=25)
    lists = [dict(zip(qids, pyserini_hits(sparse, QUERIES, 25))),
             {q: [(h.docid, h.score) for h in d_hits[q]] for q in qids}]
    got = hybrid.batch_search(QUERIES, qids, k0=25, k=15, threads=2)  # no fusion named: auto
    expected = fuse(lists, "auto", k=15)
    assert {q: [(h.docid, h.score) for h in got[q]] for q in qids} == expected
    weight = calibrate([pool([as_hits(lists[0][q]), as_hits(lists[1][q])]) for q in qids])
    assert hybrid.fusion_params == weight  # one weight for the whole batch, estimated from it
    # search_run in chunks of 3 still estimates the weight over all the topics (chunks encode with other
    # padding, so query vectors, and scores, differ in the last float32 bits; float32 GEMM sums them in
    # another order than FAISS's per-query kernel, a few ulps more)
    run = hybrid.search_run(dict(zip(qids, QUERIES)), k0=25, k=15, chunk_size=3, progress=False)
    assert hybrid.fusion_params["dense_weight"] == pytest.approx(weight["dense_weight"], abs=1e-6)
    for q in qids:
        assert [d for d, _ in run[q]] == [d for d, _ in expected[q]]
        np.testing.assert_allclose([s for _, s in run[q]], [s for _, s in expected[q]], atol=1e-5)
    # Pyserini's own arguments keep Pyserini's linear fusion, as its HybridSearcher does
    for pyserini_args, params in (({"alpha": 0.5}, {"alpha": 0.5}),
                                  ({"normalization": True}, {"normalization": "centred"}),
                                  ({"normalization": False}, {}), ({"weight_on_dense": True}, {"weight_on_dense": True})):
        got = hybrid.batch_search(QUERIES, qids, k0=25, k=15, **pyserini_args)
        assert {q: [(h.docid, h.score) for h in got[q]] for q in qids} == fuse(lists, "linear", k=15, **params)
        # one query alone: its dense scores come from a matrix-vector product, the batch's from a GEMM
        # (search/flat.py), equal to float32 rounding
        single = hybrid.search(QUERIES[2], k0=25, k=15, **pyserini_args)
        expected_single = fuse_rankings([lists[0]["q2"], lists[1]["q2"]], "linear", k=15, **params)
        assert [h.docid for h in single] == [d for d, _ in expected_single]
        np.testing.assert_allclose([h.score for h in single], [s for _, s in expected_single], atol=1e-5)
    with pytest.raises(ValueError, match="not \\['alpha'\\]"):
        hybrid.search("gene", fusion="auto", alpha=0.5)


def test_cli_default_fusion_is_auto_and_alpha_means_linear(indexes, tmp_path, capsys):
    from pyserini_dense_ext.search.hybrid import HybridSearcher
    from pyserini_dense_ext.search.hybrid.__main__ import main

    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(QUERIES)))
    hybrid = HybridSearcher(dense_searcher(indexes), lucene_searcher(indexes["lucene"]))
    qids = [f"q{i}" for i in range(len(QUERIES))]
    for extra, tag, expected in (([], "hybrid-auto", hybrid.batch_search(QUERIES, qids, k0=30, k=10)),
                                 (["fusion", "--alpha", "0.5", "--hits", "30"], "hybrid-linear",
                                  hybrid.batch_search(QUERIES, qids, k0=30, k=10, alpha=0.5)),
                                 (["fusion", "--normalization", "--hits", "30"], "hybrid-linear",  # Pyserini's flag
                                  hybrid.batch_search(QUERIES, qids, k0=30, k=10, normalization=True))):
        out = tmp_path / f"{tag}.trec"
        hits = [] if extra else ["fusion", "--hits", "30"]
        assert main(cli_groups(indexes, tmp_path, *extra, *hits, "run", "--topics", str(topics), "--output",
                               str(out), "--hits", "10", "--quiet")) == 0
        assert f"fused with {tag.split('-')[1]}" in capsys.readouterr().out
        run = read_run(out)
        assert out.read_text().split("\n")[0].split()[-1] == tag
        for qid, hits_ in expected.items():
            assert [d for d, _ in run[qid]] == [h.docid for h in hits_]
            np.testing.assert_allclose([s for _, s in run[qid]], [h.score for h in hits_], atol=1e-6)


def test_cli_rerank_group_reranks_the_fused_list(indexes, tmp_path):
    """``rerank --encoder``: the fused top 10 re-scored against (here ME-BERT's, m rows) stored vectors."""
    from pyserini_dense_ext.rerank import Reranker
    from pyserini_dense_ext.search.hybrid import HybridSearcher
    from pyserini_dense_ext.search.hybrid.__main__ import main

    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(QUERIES)))
    out = tmp_path / "run.trec"
    mebert = indexes["dense"]["mebert", "flat"]
    assert main(cli_groups(indexes, tmp_path, "fusion", "--method", "rrf", "--hits", "30", "run", "--topics",
                           str(topics), "--output", str(out), "--hits", "10", "--quiet", "rerank", "--encoder",
                           str(indexes["models"]["mebert"]), "--index", str(mebert), "--vectors-cache",
                           str(tmp_path / "vectors"))) == 0
    assert (tmp_path / "vectors" / "doc_vectors.npy").is_file()
    qids = [f"q{i}" for i in range(len(QUERIES))]
    fused = HybridSearcher(dense_searcher(indexes), lucene_searcher(indexes["lucene"])).batch_search(
        QUERIES, qids, k0=30, k=10, fusion="rrf")
    expected = Reranker(mebert, indexes["models"]["mebert"], vectors_cache=tmp_path / "vectors").batch_search(
        QUERIES, qids, fused)
    run = read_run(out)
    for qid, hits in expected.items():
        assert sorted(d for d, _ in run[qid]) == sorted(h.docid for h in fused[qid])
        np.testing.assert_allclose([s for _, s in run[qid]], [h.score for h in hits], atol=1e-6)


def test_reranker_takes_lucene_hits(indexes):
    """Pyserini's own BM25 hits (``LuceneSearcher.batch_search``) reranked: same documents, dense scores."""
    from pyserini.search.faiss import DenseSearchResult

    from pyserini_dense_ext.rerank import Reranker

    qids = [f"q{i}" for i in range(len(QUERIES))]
    bm25 = lucene_searcher(indexes["lucene"]).batch_search(QUERIES, qids, k=20)
    reranker = Reranker(indexes["dense"]["repbert", "flat"], indexes["models"]["repbert"])
    reranked = reranker.batch_search(QUERIES, qids, bm25)
    dense = dense_searcher(indexes)
    vectors = dense.encode_queries(QUERIES)
    for i, qid in enumerate(qids):
        assert all(isinstance(h, DenseSearchResult) for h in reranked[qid])
        assert sorted(h.docid for h in reranked[qid]) == sorted(h.docid for h in bm25[qid])
        for hit in reranked[qid]:  # each score is the query vector times that document's stored vector
            row = dense.docids.index(hit.docid)
            assert abs(hit.score - float(vectors[i] @ dense.index.reconstruct(row))) < 1e-5
        assert [h.score for h in reranked[qid]] == sorted((h.score for h in reranked[qid]), reverse=True)


def test_rerank_group_with_max_passage_reranks_documents(indexes, tmp_path):
    """``run --max-passage`` with a rerank group and no ``rerank --index``: the fused documents are scored against
    the dense group's index by their best passage. These indexes hold whole documents (no '#' in their ids), so
    each document is its own one passage: the run is the fused --max-passage-hits documents reranked as before."""
    from pyserini_dense_ext.rerank import Reranker
    from pyserini_dense_ext.search.hybrid import HybridSearcher
    from pyserini_dense_ext.search.hybrid.__main__ import main

    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(QUERIES)))
    out = tmp_path / "run.trec"
    assert main(cli_groups(indexes, tmp_path, "fusion", "--method", "rrf", "--hits", "30", "run", "--topics",
                           str(topics), "--output", str(out), "--max-passage", "--max-passage-hits", "8", "--quiet",
                           "rerank", "--encoder", str(indexes["models"]["repbert"]), "--vectors-cache",
                           str(tmp_path / "vectors"))) == 0
    qids = [f"q{i}" for i in range(len(QUERIES))]
    fused = HybridSearcher(dense_searcher(indexes), lucene_searcher(indexes["lucene"]),
                           max_passage_delimiter="#").batch_search(QUERIES, qids, k0=30, k=8, fusion="rrf")
    expected = Reranker(indexes["dense"]["repbert", "flat"], indexes["models"]["repbert"],
                        vectors_cache=tmp_path / "vectors").batch_search(QUERIES, qids, fused)
    run = read_run(out)
    for qid, hits in expected.items():
        assert len(run[qid]) == len(hits) <= 8
        assert sorted(d for d, _ in run[qid]) == sorted(h.docid for h in fused[qid])
        np.testing.assert_allclose([s for _, s in run[qid]], [h.score for h in hits], atol=1e-6)
