"""Fusion methods: hand-worked cases written as formulas, parity with Pyserini, ties, bad input, the fuse CLI."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import pyserini_dense_ext  # noqa: F401
from pyserini_dense_ext.fuse import main as fuse_main
from pyserini_dense_ext.fusion import METHODS, fuse, fuse_rankings, normalize_list
from pyserini_dense_ext.io.runs import read_run, write_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPARSE = [("a", 12.0), ("b", 9.0), ("c", 4.0)]
DENSE = [("c", 0.9), ("d", 0.7), ("a", 0.5)]


def scores(ranking):
    return dict(ranking)


# ---------------------------------------------------------------- each method by hand
def test_linear_min_fill_raw():
    got = scores(fuse_rankings([SPARSE, DENSE], "linear", alpha=0.1))
    assert got == pytest.approx({"a": 0.1 * 12 + 0.5, "b": 0.1 * 9 + 0.5,  # b: dense min 0.5
                                 "c": 0.1 * 4 + 0.9, "d": 0.1 * 4 + 0.7})  # d: sparse min 4


def test_linear_weight_on_dense_and_normalisations():
    got = scores(fuse_rankings([SPARSE, DENSE], "linear", alpha=2.0, weight_on_dense=True))
    assert got["b"] == pytest.approx(9 + 2 * 0.5)
    mm = scores(fuse_rankings([SPARSE, DENSE], "linear", alpha=1.0, normalization="min-max"))
    assert mm == pytest.approx({"a": 1 + 0, "b": (9 - 4) / 8 + 0, "c": 0 + 1, "d": 0 + (0.7 - 0.5) / 0.4})
    centred = scores(fuse_rankings([SPARSE, DENSE], "linear", alpha=0.5, normalization="centred"))
    assert centred["a"] == pytest.approx(0.5 * (12 - 8) / 8 + (0.5 - 0.7) / 0.4)
    z = scores(fuse_rankings([SPARSE, DENSE], "linear", alpha=1.0, normalization="z-score"))
    s_mean, s_std = np.mean([12, 9, 4]), np.std([12, 9, 4])
    d_mean, d_std = np.mean([0.9, 0.7, 0.5]), np.std([0.9, 0.7, 0.5])
    assert z["d"] == pytest.approx((4 - s_mean) / s_std + (0.7 - d_mean) / d_std)


def test_interleave_alternates_keeps_first_position_and_order_matters():
    a = [("x", 3.0), ("y", 2.0), ("z", 1.0)]
    b = [("y", 9.0), ("w", 8.0), ("x", 7.0), ("v", 6.0)]
    # a1=x, b1=y, a2=y (dropped), b2=w, a3=z, b3=x (dropped), b4=v
    assert [d for d, _ in fuse_rankings([a, b], "interleave")] == ["x", "y", "w", "z", "v"]
    # b1=y, a1=x, b2=w, a2=y (dropped), b3=x (dropped), a3=z, b4=v
    assert [d for d, _ in fuse_rankings([b, a], "interleave")] == ["y", "x", "w", "z", "v"]
    assert [d for d, _ in fuse_rankings([a, b], "interleave", k=3)] == ["x", "y", "w"]
    fused = fuse_rankings([a, b], "interleave")
    assert all(s1 > s2 for (_, s1), (_, s2) in zip(fused, fused[1:]))  # distinct, decreasing


def test_weighted_absent_adds_zero():
    got = scores(fuse_rankings([SPARSE, DENSE], "weighted", alpha=0.3))
    assert got == pytest.approx({"a": 0.3 * 12 + 0.5, "b": 0.3 * 9, "c": 0.3 * 4 + 0.9, "d": 0.7})
    got = scores(fuse_rankings([SPARSE, DENSE, [("b", 1.0)]], "weighted", weights=[1, 2, 3]))
    assert got["b"] == pytest.approx(9 + 3 * 1.0)


def test_rrf_formula_and_k():
    got = scores(fuse_rankings([SPARSE, DENSE], "rrf"))
    assert got == pytest.approx({"a": 1 / 61 + 1 / 63, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 62})
    assert scores(fuse_rankings([SPARSE, DENSE], "rrf", rrf_k=0))["a"] == pytest.approx(1 + 1 / 3)


def test_combsum_combmnz():
    def mm(v, lo, hi):
        return (v - lo) / (hi - lo)
    s = scores(fuse_rankings([SPARSE, DENSE], "combsum"))
    assert s == pytest.approx({"a": mm(12, 4, 12) + mm(0.5, 0.5, 0.9), "b": mm(9, 4, 12),
                               "c": mm(4, 4, 12) + mm(0.9, 0.5, 0.9), "d": mm(0.7, 0.5, 0.9)})
    m = scores(fuse_rankings([SPARSE, DENSE], "combmnz"))
    assert m == pytest.approx({"a": 2 * s["a"], "b": s["b"], "c": 2 * s["c"], "d": s["d"]})
    raw = scores(fuse_rankings([SPARSE, DENSE], "combsum", normalization="none"))
    assert raw["a"] == pytest.approx(12.5)


def test_normalisations_and_zero_range_floor():
    s = np.array([3.0, 1.0, 2.0])
    assert normalize_list(s, "min-max") == pytest.approx([1, 0, 0.5])
    assert normalize_list(s, "z-score") == pytest.approx((s - 2) / math.sqrt(2 / 3))
    assert normalize_list(s, "centred") == pytest.approx([0.5, -0.5, 0])
    for method in ("min-max", "z-score", "centred"):
        assert normalize_list(np.array([5.0]), method) == pytest.approx([0.0])
        assert normalize_list(np.array([2.0, 2.0]), method) == pytest.approx([0.0, 0.0])


def test_ties_broken_by_docid_whatever_the_input_order():
    a = [("b", 1.0), ("a", 1.0)]
    b = [("d", 1.0), ("c", 1.0)]
    for method in ("linear", "weighted", "combsum", "combmnz"):  # score-based: all four docs tie
        got = fuse_rankings([a, b], method)
        assert [d for d, _ in got] == sorted(d for d, _ in got), method
    # RRF: x is rank 1 in one list, y rank 1 in the other: equal scores, docid decides.
    assert [d for d, _ in fuse_rankings([[("y", 5.0)], [("x", 3.0)]], "rrf")] == ["x", "y"]



def test_a_list_is_ranked_by_score_then_docid_not_by_arrival_order():
    """FAISS and Lucene return tied hits in index order; ranks (RRF, interleave) follow score, then docid."""
    tied = [("b", 1.0), ("a", 1.0), ("c", 0.5)]
    for method in ("rrf", "interleave"):
        assert fuse_rankings([tied, [("z", 9.0)]], method) == fuse_rankings([sorted(tied, key=lambda h: (-h[1], h[0])),
                                                                             [("z", 9.0)]], method), method
    assert scores(fuse_rankings([tied, []], "rrf", rrf_k=0)) == {"a": 1.0, "b": 1 / 2, "c": 1 / 3}


# One fusion, one answer: lists whose tied documents arrive out of docid order and whose scores differ
# below the 6th decimal (cosines, RRF sums), as FAISS, Lucene and the hybrid searcher produce them.
hits_in_index_order = st.lists(st.tuples(st.integers(0, 30).map(lambda i: f"d{i:02d}"),
                                         st.sampled_from([0.5, 0.5 + 1e-9, 0.5 + 3e-8, 0.25, 1 / 3, 12.3456789])),
                               max_size=20, unique_by=lambda h: h[0]).map(
    lambda hits: sorted(hits, key=lambda h: -h[1]))  # stable: ties stay in arrival (index) order


@settings(max_examples=200, deadline=None)
@given(a=hits_in_index_order, b=hits_in_index_order, method=st.sampled_from(sorted(METHODS)))
def test_fusing_in_memory_equals_fusing_the_written_run_files(tmp_path_factory, a, b, method):
    """The quickstart's hybrid and ``fuse`` over its bm25.trec / dense.trec once differed by 0.0017 nDCG@10."""
    tmp = tmp_path_factory.mktemp("runs")
    runs = [{"q1": a, "q2": b}, {"q1": b, "q2": a}]
    in_memory = fuse(runs, method)
    for i, run in enumerate(runs):
        write_run(tmp / f"{i}.trec", {q: h for q, h in run.items() if h} or {"q0": [("x", 1.0)]})
    from_files = fuse([{q: h for q, h in read_run(tmp / f"{i}.trec").items() if q != "q0"} for i in range(2)], method)
    assert {q: h for q, h in in_memory.items() if h} == {q: h for q, h in from_files.items() if h}
    write_run(tmp / "fused.trec", {q: h for q, h in in_memory.items() if h} or {"q0": [("x", 1.0)]})
    assert {q: h for q, h in read_run(tmp / "fused.trec").items() if q != "q0"} == \
        {q: h for q, h in in_memory.items() if h}

# ---------------------------------------------------------------- parity with Pyserini
ranked = st.lists(st.tuples(st.integers(0, 40).map(lambda i: f"d{i:02d}"),
                            st.floats(-50, 50, allow_nan=False, width=32)),
                  min_size=0, max_size=25, unique_by=lambda h: h[0]).map(
    lambda hits: sorted(hits, key=lambda h: (-h[1], h[0])))


@settings(max_examples=300, deadline=None)
@given(sparse=ranked, dense=ranked, alpha=st.floats(0, 5, width=32), normalization=st.booleans(),
       weight_on_dense=st.booleans())
def test_linear_equals_pyserini_hybrid_results(sparse, dense, alpha, normalization, weight_on_dense):
    from pyserini.search.faiss import DenseSearchResult
    from pyserini.search.hybrid import HybridSearcher

    def hits(r):
        return [DenseSearchResult(d, s) for d, s in r]
    # Below a 1e-9 range we floor the divisor (as ranx does) where Pyserini divides by the tiny range.
    assume(not normalization or all(not r or r[0][1] == r[-1][1] or r[0][1] - r[-1][1] >= 1e-9
                                    for r in (sparse, dense)))
    try:
        ref = HybridSearcher._hybrid_results(hits(dense), hits(sparse), alpha, 1000, normalization, weight_on_dense)
    except ZeroDivisionError:
        assume(False)  # Pyserini divides by zero here; covered by the next test
        return
    ours = fuse_rankings([sparse, dense], "linear", alpha=alpha, weight_on_dense=weight_on_dense,
                         normalization="centred" if normalization else "none")
    # Same scores bit for bit; Pyserini orders ties by set iteration, we by docid.
    assert ours == sorted(((h.docid, h.score) for h in ref), key=lambda x: (-x[1], x[0]))


def test_linear_where_pyserini_divides_by_zero():
    from pyserini.search.faiss import DenseSearchResult
    from pyserini.search.hybrid import HybridSearcher

    one_hit = [("a", 7.0)]
    equal = [("a", 0.5), ("b", 0.5)]
    with pytest.raises(ZeroDivisionError):
        HybridSearcher._hybrid_results([DenseSearchResult(d, s) for d, s in equal],
                                       [DenseSearchResult(d, s) for d, s in one_hit], 0.1, 10, True)
    got = scores(fuse_rankings([one_hit, equal], "linear", alpha=0.1, normalization="centred"))
    assert got == {"a": 0.0, "b": 0.0}  # each constant list centres to 0; b's sparse fill is a's 0
    assert all(math.isfinite(v) for m in ("min-max", "z-score") for v in
               scores(fuse_rankings([one_hit, equal], "linear", normalization=m)).values())


def trec_runs(tmp_path, runs):
    from pyserini.trectools import TrecRun

    paths = []
    for i, run in enumerate(runs):
        path = tmp_path / f"run{i}.trec"
        write_run(path, run, tag=f"r{i}")
        paths.append(path)
    return [TrecRun(str(p)) for p in paths], [read_run(p) for p in paths]


def as_run(trec):
    out = {}
    for topic, _, docid, _, score, _ in trec.to_numpy():
        out.setdefault(str(topic), []).append((str(docid), float(score)))
    return out


def random_runs(seed, n_runs=3, n_queries=4):
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(n_runs):
        run = {}
        for q in range(n_queries):
            docs = rng.choice(60, size=rng.integers(2, 30), replace=False)
            # Distinct scores with 6 decimals, so the file's ranks say the same as its scores.
            vals = np.round(rng.permutation(np.linspace(1, 40, len(docs))) + rng.uniform(0, 0.5), 6)
            run[f"q{q}"] = sorted(((f"doc{d}", float(v)) for d, v in zip(docs, vals)), key=lambda x: -x[1])
        runs.append(run)
    return runs


@pytest.mark.parametrize("seed", range(5))
def test_rrf_average_interpolation_normalize_equal_pyserini_fusion(tmp_path, seed):
    from pyserini.fusion import average, interpolation, normalize, reciprocal_rank_fusion

    trec, ours = trec_runs(tmp_path, random_runs(seed))
    # Sums of three terms may differ in the last bit (pandas adds in another order).
    assert _same_up_to_rounding(fuse(ours, "rrf"), as_run(reciprocal_rank_fusion(trec, rrf_k=60)))
    assert _same_up_to_rounding(fuse(ours, "rrf", rrf_k=10, depth=5, k=7),
                                as_run(reciprocal_rank_fusion(trec, rrf_k=10, depth=5, k=7)))
    assert _same_up_to_rounding(fuse(ours, "combsum"), as_run(normalize(trec)))
    assert _same_up_to_rounding(fuse(ours, "weighted", weights=[1 / 3] * 3), as_run(average(trec)))
    two = trec[:2]
    assert _same_up_to_rounding(fuse(ours[:2], "weighted", weights=[0.3, 0.7]), as_run(interpolation(two, alpha=0.3)))


def _same_up_to_rounding(a, b):
    """Same queries, same docids, scores within 1e-12, in the same order up to near-equal scores."""
    assert a.keys() == b.keys()
    for q in a:
        assert [d for d, _ in a[q]] == [d for d, _ in b[q]] or _only_near_ties_swapped(a[q], b[q])
        assert dict(a[q]) == pytest.approx(dict(b[q]), rel=1e-12, abs=1e-12)
        assert [s for _, s in a[q]] == pytest.approx([s for _, s in b[q]], rel=1e-12, abs=1e-12)
    return True


def _only_near_ties_swapped(x, y):
    for (d1, s1), (d2, s2) in zip(x, y):
        assert d1 == d2 or math.isclose(s1, s2, rel_tol=1e-12)
    return True


# ---------------------------------------------------------------- runs, bad input
def test_fuse_runs_depth_k_and_missing_queries():
    runs = [{"q1": SPARSE, "q2": [("z", 1.0)]}, {"q1": DENSE}]
    fused = fuse(runs, "rrf", depth=1, k=2)
    assert fused["q1"] == [("a", 1 / 61), ("c", 1 / 61)]
    assert fused["q2"] == [("z", 1 / 61)]  # only one run has q2


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown fusion method 'nope'"):
        fuse_rankings([SPARSE, DENSE], "nope")
    with pytest.raises(ValueError, match="takes .*not \\['alpha'\\]"):
        fuse_rankings([SPARSE, DENSE], "rrf", alpha=0.3)
    with pytest.raises(ValueError, match="unknown normalisation 'l2'"):
        fuse_rankings([SPARSE, DENSE], "linear", normalization="l2")
    with pytest.raises(ValueError, match="exactly 2|takes 2"):
        fuse_rankings([SPARSE, DENSE, DENSE], "linear")
    with pytest.raises(ValueError, match="at least 2"):
        fuse_rankings([SPARSE], "rrf")
    with pytest.raises(ValueError, match="docid 'a' more than once for query 'q1'"):
        fuse([{"q1": [("a", 2.0), ("a", 1.0)]}, {"q1": DENSE}], "combsum")


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_fuse_cli_writes_the_fused_run(tmp_path):
    a = tmp_path / "a.trec"
    b = tmp_path / "b.trec"
    write_run(a, {"q1": SPARSE})
    write_run(b, {"q1": DENSE})
    out = tmp_path / "out.trec"
    assert fuse_main(["--runs", str(a), str(b), "--method", "linear", "--alpha", "0.1", "--output", str(out)]) == 0
    assert read_run(out)["q1"] == fuse_rankings([SPARSE, DENSE], "linear", alpha=0.1)  # scores exact, not %.6f
    assert out.read_text().split("\n")[0].split()[-1] == "linear"


def cli(*args):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "pyserini_dense_ext.fusion", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_fuse_cli_bad_runs_name_file_and_line(tmp_path):
    good = write_lines(tmp_path / "good.trec", ["q1 Q0 a 1 2.0 x", "q1 Q0 b 2 1.0 x"])
    short = write_lines(tmp_path / "short.trec", ["q1 Q0 a 1 2.0 x", "q1 Q0 b 2 1.0"])
    not_number = write_lines(tmp_path / "nan.trec", ["q1 Q0 a 1 2.0 x", "q1 Q0 b 2 high x"])
    dup = write_lines(tmp_path / "dup.trec", ["q1 Q0 a 1 2.0 x", "q2 Q0 a 1 2.0 x", "q1 Q0 a 2 1.0 x"])
    out = tmp_path / "out.trec"
    for bad, expected in ((short, f"{short}, line 2: expected 6 (TREC) or 3 (MS MARCO) columns, got 5"),
                          (not_number, f"{not_number}, line 2: field 'score' 'high' is not a number"),
                          (dup, f"{dup}, line 3: field 'docid' duplicate docid 'a' for query 'q1'")):
        result = cli("--runs", str(good), str(bad), "--method", "rrf", "--output", str(out))
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr and "Traceback" not in result.stderr
        assert not out.exists()
    result = cli("--runs", str(good), str(good), "--method", "rrf", "--alpha", "0.5", "--output", str(out))
    assert result.returncode == 2 and "does not take --alpha" in result.stderr
    result = cli("--runs", str(good), str(tmp_path / "missing.trec"), "--method", "rrf", "--output", str(out))
    assert result.returncode == 2 and "missing.trec: run file does not exist" in result.stderr


def test_fuse_cli_help_lists_methods():
    result = cli("--help")
    assert result.returncode == 0 and all(m in result.stdout for m in METHODS)


def test_old_fuse_module_name_still_runs(tmp_path):
    a, b = tmp_path / "a.trec", tmp_path / "b.trec"
    write_run(a, {"q1": SPARSE})
    write_run(b, {"q1": DENSE})
    env = {**os.environ, "PYTHONPATH": ROOT}
    old = subprocess.run([sys.executable, "-m", "pyserini_dense_ext.fuse", "--runs", str(a), str(b), "--method", "rrf",
                          "--output", str(tmp_path / "old.trec")], capture_output=True, text=True, env=env, timeout=300)
    assert old.returncode == 0, old.stderr
    assert cli("--runs", str(a), str(b), "--method", "rrf", "--output", str(tmp_path / "new.trec")).returncode == 0
    assert (tmp_path / "old.trec").read_text() == (tmp_path / "new.trec").read_text()


def test_parameters_are_checked_once_where_the_method_is_chosen(monkeypatch):
    import pyserini_dense_ext.fusion as fusion

    for bad, message in (({"rrf_k": -1}, "rrf_k must be non-negative"), ({"alpha": float("nan")}, "alpha must be"),
                         ({"normalization": "l2"}, "unknown normalisation"), ({"weights": []}, "weights must be")):
        method = "rrf" if "rrf_k" in bad else "weighted"
        with pytest.raises(ValueError, match=message):
            fusion.resolve(method, **bad)
    calls = []
    real = fusion.check_value
    monkeypatch.setattr(fusion, "check_value", lambda name, value: calls.append(name) or real(name, value))
    runs = [{f"q{i}": SPARSE for i in range(20)}, {f"q{i}": DENSE for i in range(20)}]
    fused = fusion.fuse(runs, "linear", alpha=0.3, normalization="z-score")
    assert sorted(calls) == ["alpha", "normalization"]  # once for 20 queries
    chosen = fusion.resolve("linear", alpha=0.3, normalization="z-score")
    assert fusion.fuse(runs, chosen) == fused and fusion.resolve(chosen) is chosen
    with pytest.raises(ValueError, match="already resolved"):
        fusion.resolve(chosen, alpha=1.0)


# ---------------------------------------------------------------- tune
def tune_data(tmp_path, seed, n_queries=12):
    """Random noisy sparse/dense runs where only a mix puts the relevant documents first; written as files."""
    rng = np.random.default_rng(seed)
    qrels, sparse, dense = {}, {}, {}
    for q in range(n_queries):
        docs = [f"d{i}" for i in range(40)]
        relevant = set(rng.choice(docs, 3, replace=False).tolist())
        qrels[f"q{seed}-{q}"] = {d: 1 for d in relevant}
        sparse[f"q{seed}-{q}"] = sorted(((d, 10 * rng.random() + 6 * (d in relevant)) for d in docs[:30]),
                                        key=lambda x: -x[1])
        dense[f"q{seed}-{q}"] = sorted(((d, rng.random() + 0.6 * (d in relevant)) for d in docs[10:]),
                                       key=lambda x: -x[1])
    paths = {name: tmp_path / f"{name}{seed}.trec" for name in ("s", "d")}
    write_run(paths["s"], sparse)
    write_run(paths["d"], dense)
    qrels_path = tmp_path / f"qrels{seed}.txt"
    qrels_path.write_text("".join(f"{q} 0 {d} 1\n" for q, docs in qrels.items() for d in docs))
    return qrels, read_run(paths["s"]), read_run(paths["d"]), paths, qrels_path  # runs as rounded in the files


def test_tune_finds_the_best_alpha_prints_it_and_writes_csv_and_plot(tmp_path, capsys):
    import csv

    from pyserini_dense_ext.eval.metrics import evaluate
    from pyserini_dense_ext.tune import main as tune_main

    qrels, sparse, dense, paths, qrels_path = tune_data(tmp_path, 0)
    alphas = [0.0, 0.05, 0.1, 0.2, 0.5, 1.0]
    out, plot = tmp_path / "sweep.csv", tmp_path / "figures" / "sweep-plot.png"
    assert tune_main(["tune", "--runs", str(paths["s"]), str(paths["d"]), "--qrels", str(qrels_path),
                      "--methods", "linear", "rrf", "combsum", "--alphas", ",".join(map(str, alphas)),
                      "--rrf-ks", "1,60", "--metrics", "ndcg@10", "--csv", str(out), "--plot", str(plot),
                      "--quiet"]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    by_alpha = {float(r["value"]): float(r["ndcg@10"]) for r in rows if r["method"] == "linear"}
    brute = {a: evaluate(fuse([sparse, dense], "linear", alpha=a), qrels, ["ndcg@10"])["ndcg@10"] for a in alphas}
    assert by_alpha == pytest.approx(brute, abs=1e-6)
    best = max(alphas, key=lambda a: (round(brute[a], 12), -a))  # the smallest alpha among the best
    assert len(set(brute.values())) > 2 and best not in (alphas[0], alphas[-1])  # a real optimum inside the grid
    rrf = {k: evaluate(fuse([sparse, dense], "rrf", rrf_k=k), qrels, ["ndcg@10"])["ndcg@10"] for k in (1, 60)}
    best_k = max((1, 60), key=lambda k: (round(rrf[k], 12), -k))
    combsum = evaluate(fuse([sparse, dense], "combsum"), qrels, ["ndcg@10"])["ndcg@10"]
    table = {line.split()[0]: line.split()[1:] for line in printed.splitlines()[1:] if line.split()}
    assert table["linear"] == [f"{brute[best]:.4f}", "@", f"{best:g}"]
    assert table["rrf"] == [f"{rrf[best_k]:.4f}", "@", f"{best_k:g}"]
    assert table["combsum"] == [f"{combsum:.4f}"]
    assert table["sparse"] == [f"{evaluate(sparse, qrels, ['ndcg@10'])['ndcg@10']:.4f}"]
    assert {r["method"] for r in rows} == {"sparse", "dense", "linear", "rrf", "combsum"}
    assert [r["parameter"] for r in rows if r["method"] == "rrf"] == ["rrf_k", "rrf_k"]
    png = plot.read_bytes()  # --plot: the PNG goes where asked, not beside the CSV
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000 and not out.with_suffix(".png").exists()
    assert f"wrote {out} and {plot}" in printed


def test_tune_scores_the_tuned_values_on_held_out_queries(tmp_path, capsys):
    import csv

    from pyserini_dense_ext.eval.metrics import evaluate
    from pyserini_dense_ext.tune import main as tune_main

    qrels, sparse, dense, paths, qrels_path = tune_data(tmp_path, 0)
    eval_qrels, eval_sparse, eval_dense, eval_paths, eval_qrels_path = tune_data(tmp_path, 1)
    alphas = [0.0, 0.05, 0.1, 0.2, 0.5, 1.0]
    out = tmp_path / "sweep.csv"
    assert tune_main(["tune", "--runs", str(paths["s"]), str(paths["d"]), "--qrels", str(qrels_path),
                      "--eval-runs", str(eval_paths["s"]), str(eval_paths["d"]), "--eval-qrels", str(eval_qrels_path),
                      "--methods", "linear", "weighted:z-score", "interleave", "--alphas", ",".join(map(str, alphas)),
                      "--metrics", "ndcg@10", "recall@100", "--csv", str(out), "--no-plot", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert not out.with_suffix(".png").exists()  # --no-plot
    held_out = {r["method"]: r for r in csv.DictReader(out.with_name("sweep.eval.csv").open())}
    assert set(held_out) == {"sparse", "dense", "linear", "weighted:z-score", "interleave"}
    section = printed.split("held-out queries")[1]
    for label, method, params in (("linear", "linear", {}), ("weighted:z-score", "weighted",
                                                             {"normalization": "z-score"})):
        tuned = max(alphas, key=lambda a: (round(evaluate(fuse([sparse, dense], method, alpha=a, **params), qrels,
                                                          ["ndcg@10"])["ndcg@10"], 12), -a))  # on the tuning queries
        expected = evaluate(fuse([eval_sparse, eval_dense], method, alpha=tuned, **params), eval_qrels,
                            ["ndcg@10", "recall@100"])
        assert float(held_out[label]["value"]) == tuned
        assert float(held_out[label]["ndcg@10"]) == pytest.approx(expected["ndcg@10"], abs=1e-6)
        assert float(held_out[label]["recall@100"]) == pytest.approx(expected["recall@100"], abs=1e-6)
        line = next(x.split() for x in section.splitlines() if x.split()[:1] == [label])
        assert line == [label, f"{tuned:g}", f"{expected['ndcg@10']:.4f}", f"{expected['recall@100']:.4f}"]
    interleave = evaluate(fuse([eval_sparse, eval_dense], "interleave"), eval_qrels, ["ndcg@10"])["ndcg@10"]
    assert float(held_out["interleave"]["ndcg@10"]) == pytest.approx(interleave, abs=1e-6)


def test_tune_bad_arguments(tmp_path, monkeypatch):
    from pyserini_dense_ext.tune import main as tune_main

    run = tmp_path / "r.trec"
    write_run(run, {"q1": SPARSE})
    qrels = tmp_path / "q.txt"
    qrels.write_text("q1 0 a 1\n")
    base = ["tune", "--runs", str(run), str(run), "--qrels", str(qrels), "--csv", str(tmp_path / "s.csv")]
    with pytest.raises(ValueError, match="unknown normalisation 'l1'"):
        tune_main(base + ["--methods", "linear:l1"])
    with pytest.raises(ValueError, match="rrf does not normalise"):
        tune_main(base + ["--methods", "rrf:min-max"])
    with pytest.raises(ValueError, match="--alphas 'a:b': give comma-separated numbers or START:STOP:STEP"):
        tune_main(base + ["--alphas", "a:b"])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    with pytest.raises(ValueError, match="pip install 'pyserini-dense-ext\\[plot\\]'"):
        tune_main(base)
    assert not (tmp_path / "s.csv").exists()
    assert tune_main(base + ["--no-plot", "--quiet", "--methods", "rrf"]) == 0
