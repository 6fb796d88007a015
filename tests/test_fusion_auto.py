"""The adaptive fusions (borda, dispersion, agreement, auto): hand-worked formulas, edge cases, the safety property."""
from __future__ import annotations

import numpy as np
import pytest

import pyserini_dense_ext  # noqa: F401
from pyserini_dense_ext.eval.metrics import evaluate
from pyserini_dense_ext.fusion import DEFAULT_METHOD, METHODS, as_hits, fuse, fuse_rankings, pool
from pyserini_dense_ext.fusion.agreement import dense_weight, top_overlap
from pyserini_dense_ext.fusion.auto import calibrate, evidence
from pyserini_dense_ext.fusion.dispersion import predict

SPARSE = [("a", 12.0), ("b", 9.0), ("c", 4.0)]
DENSE = [("c", 0.9), ("d", 0.7), ("a", 0.5)]


def z(values, x):
    """x as a z-score among values (population std), written out."""
    values = np.asarray(values, dtype=float)
    return (x - values.mean()) / values.std()


def scores(ranking):
    return dict(ranking)


def test_default_method_is_auto():
    assert DEFAULT_METHOD == "auto" and "auto" in METHODS and METHODS["auto"].calibrate is not None


# ---------------------------------------------------------------- by hand
def test_borda_points_by_hand():
    got = scores(fuse_rankings([SPARSE, DENSE], "borda"))
    # n = 3 in both lists: rank 1 -> 3/3, rank 2 -> 2/3, rank 3 -> 1/3; absent -> 0
    assert got == pytest.approx({"a": 1 + 1 / 3, "b": 2 / 3, "c": 1 / 3 + 1, "d": 2 / 3})
    assert [d for d, _ in fuse_rankings([SPARSE, DENSE], "borda")] == ["a", "c", "b", "d"]  # ties by docid
    short = scores(fuse_rankings([SPARSE, [("d", 1.0)]], "borda"))
    assert short == pytest.approx({"a": 1.0, "b": 2 / 3, "c": 1 / 3, "d": 1.0})  # a one-hit list gives its hit 1


def test_dispersion_predictors_and_weights_by_hand():
    s, d = [12.0, 9.0, 4.0], [0.9, 0.7, 0.5]
    p = pool([as_hits(SPARSE), as_hits(DENSE)])
    assert predict(p, "zmax") == pytest.approx([z(s, 12), z(d, 0.9)])
    assert predict(p, "nqc") == pytest.approx([np.std([1, 5 / 8, 0]), np.std([1, 0.5, 0])])
    assert predict(p, "gap") == pytest.approx([3 / 8, 0.2 / 0.4])
    w_s, w_d = z(s, 12), z(d, 0.9)
    w_s, w_d = w_s / (w_s + w_d), w_d / (w_s + w_d)
    got = scores(fuse_rankings([SPARSE, DENSE], "dispersion"))
    assert got == pytest.approx({"a": w_s * z(s, 12) + w_d * z(d, 0.5), "b": w_s * z(s, 9),
                                 "c": w_s * z(s, 4) + w_d * z(d, 0.9), "d": w_d * z(d, 0.7)}, abs=1e-12)
    gap = scores(fuse_rankings([SPARSE, DENSE], "dispersion", predictor="gap"))
    assert gap["b"] == pytest.approx(0.375 / (0.375 + 0.5) * z(s, 9))
    with pytest.raises(ValueError, match="unknown predictor 'wig'"):
        fuse_rankings([SPARSE, DENSE], "dispersion", predictor="wig")


def test_agreement_weight_by_hand():
    s, d = [12.0, 9.0, 4.0], [0.9, 0.7, 0.5]
    p = pool([as_hits(SPARSE), as_hits(DENSE)])
    assert top_overlap(p) == pytest.approx(2 / 10)  # a and c are in both top-10s
    # overlap 0.2 >= tau 0.15: trusted, equal weights
    equal = scores(fuse_rankings([SPARSE, DENSE], "agreement"))
    assert equal == pytest.approx({"a": (z(s, 12) + z(d, 0.5)) / 2, "b": z(s, 9) / 2, "c": (z(s, 4) + z(d, 0.9)) / 2,
                                   "d": z(d, 0.7) / 2}, abs=1e-12)
    # tau 0.4: g = 0.5, half the weight follows the confidence ratio c_d^8 / (c_s^8 + c_d^8)
    c_s, c_d = z(s, 12), z(d, 0.9)
    w = 0.25 + 0.5 * c_d ** 8 / (c_s ** 8 + c_d ** 8)
    got = scores(fuse_rankings([SPARSE, DENSE], "agreement", tau=0.4))
    assert got["a"] == pytest.approx((1 - w) * z(s, 12) + w * z(d, 0.5))
    assert got["d"] == pytest.approx(w * z(d, 0.7))
    assert dense_weight(0.0, np.array([2.0, 1.0]), tau=0.15, beta=4) == pytest.approx(1 / 17)
    assert dense_weight(0.0, np.array([0.0, 0.0])) == 0.5  # no evidence either way: equal
    assert dense_weight(0.3, np.array([9.0, 1.0])) == 0.5  # agreeing lists: equal whatever the confidence


def test_auto_estimates_one_weight_over_all_queries_fused_together():
    runs = [{"q1": SPARSE, "q2": [("x", 5.0), ("y", 4.0), ("w", 1.0)]},
            {"q1": DENSE, "q2": [("v", 0.8), ("u", 0.3), ("t", 0.2)]}]
    pools = [pool([as_hits(runs[0][q]), as_hits(runs[1][q])]) for q in ("q1", "q2")]
    overlap, conf, n = evidence(pools)
    assert n == 2 and overlap == pytest.approx((0.2 + 0.0) / 2)
    assert conf == pytest.approx([(z([12, 9, 4], 12) + z([5, 4, 1], 5)) / 2,
                                  (z([0.9, 0.7, 0.5], 0.9) + z([0.8, 0.3, 0.2], 0.8)) / 2])
    g = overlap / 0.15
    c = conf ** 8
    w = 0.5 * g + (1 - g) * c[1] / c.sum()
    assert calibrate(pools) == {"dense_weight": pytest.approx(w)}
    fused = fuse(runs, "auto")
    # q1 is fused with the weight of both queries, not with its own (which would be 1/2: overlap 0.2 >= tau)
    assert scores(fused["q1"])["b"] == pytest.approx((1 - w) * z([12, 9, 4], 9))
    assert scores(fused["q1"])["d"] == pytest.approx(w * z([0.9, 0.7, 0.5], 0.7))
    assert scores(fuse_rankings([SPARSE, DENSE], "auto"))["b"] == pytest.approx(0.5 * z([12, 9, 4], 9))
    assert fuse(runs, "auto", dense_weight=0.25)["q1"] == fuse_rankings([SPARSE, DENSE], "auto", dense_weight=0.25)
    with pytest.raises(ValueError, match="dense_weight must be in \\[0, 1\\]"):
        fuse(runs, "auto", dense_weight=1.5)
    with pytest.raises(ValueError, match="takes 2 ranked lists, got 3"):
        fuse([*runs, runs[0]], "auto")


def reference_auto(sparse: dict, dense: dict, k: int, tau: float = 0.15, beta: float = 8.0) -> dict:
    """auto recomputed from its formula with plain Python (statistics.pstdev, sets, sorted): no Pool, no numpy."""
    import statistics

    def zscores(hits):
        if not hits:
            return {}
        values = [s for _, s in hits]
        mean, std = statistics.fmean(values), max(statistics.pstdev(values), 1e-9)
        return {d: (s - mean) / std for d, s in hits}

    qids = list(dict.fromkeys([*sparse, *dense]))
    z = {q: (zscores(sparse.get(q, [])), zscores(dense.get(q, []))) for q in qids}
    used = [q for q in qids if sparse.get(q) or dense.get(q)]
    overlap = sum(len({d for d, _ in sparse.get(q, [])[:10]} & {d for d, _ in dense.get(q, [])[:10]}) / 10
                  for q in used) / len(used)
    c_s, c_d = (sum(max(z[q][i].values(), default=0.0) for q in used) / len(used) for i in (0, 1))
    g = min(1.0, overlap / tau)
    c_s, c_d = max(c_s, 0.0) ** beta, max(c_d, 0.0) ** beta
    w = g / 2 + (1 - g) * (c_d / (c_s + c_d) if c_s + c_d > 0 else 0.5)
    fused = {}
    for q in qids:
        zs, zd = z[q]
        scored = {d: (1 - w) * zs.get(d, 0.0) + w * zd.get(d, 0.0) for d in {*zs, *zd}}
        fused[q] = sorted(scored.items(), key=lambda h: (-h[1], h[0]))[:k]
    return {"dense_weight": w, "run": fused}


def random_pair(seed: int, shared: float, n_queries: int = 25):
    """Two runs over one docid space: lists of 0 to 60 hits, a ``shared`` fraction of the dense list drawn from
    the sparse one (and ranked alike), rounded scores (exact ties), one query with no dense hits and one with a
    single dense hit."""
    rng = np.random.default_rng(seed)
    sparse, dense = {}, {}
    for q in range(n_queries):
        docs = [f"d{i}" for i in rng.choice(5000, size=120, replace=False)]
        s_docs = docs[:int(rng.integers(1, 61))]
        n_dense = 0 if q == n_queries - 1 else 1 if q == 0 else int(rng.integers(2, 61))
        n_shared = min(len(s_docs), int(round(shared * n_dense)))
        d_docs = list(rng.choice(s_docs, size=n_shared, replace=False)) + docs[60:60 + n_dense - n_shared]
        s_scores = {d: float(np.round(rng.gamma(2.0, 3.0), 1)) for d in s_docs}
        # a shared document scores higher in dense where it scores higher in sparse: the top 10s agree
        d_scores = {str(d): float(np.round(0.5 + s_scores.get(d, 0.0) / 40 + rng.normal(0.1, 0.05), 3))
                    for d in d_docs}
        sparse[f"q{q}"] = sorted(s_scores.items(), key=lambda h: (-h[1], h[0]))
        dense[f"q{q}"] = sorted(d_scores.items(), key=lambda h: (-h[1], h[0]))
    return sparse, dense


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shared", [0.0, 0.05, 0.6])
def test_auto_equals_a_brute_force_recomputation(seed, shared):
    sparse, dense = random_pair(seed, shared)
    reference = reference_auto(sparse, dense, k=50)
    pools = [pool([as_hits(sparse[q]), as_hits(dense[q])]) for q in sparse]
    assert calibrate(pools)["dense_weight"] == pytest.approx(reference["dense_weight"], abs=1e-12)
    got = fuse([sparse, dense], "auto", k=50)
    assert list(got) == list(reference["run"])
    for q, expected in reference["run"].items():
        assert [d for d, _ in got[q]] == [d for d, _ in expected], q
        assert [s for _, s in got[q]] == pytest.approx([s for _, s in expected], abs=1e-12), q
    if shared == 0.6:  # both regimes are exercised: lists that agree are fused equally, others are not
        assert reference["dense_weight"] == 0.5
    elif shared == 0.0:
        assert reference["dense_weight"] != pytest.approx(0.5, abs=0.01)


# ---------------------------------------------------------------- edge cases
@pytest.mark.parametrize("method", ["auto", "agreement", "dispersion", "borda"])
def test_empty_list_returns_the_other_list(method):
    for lists, kept in (([SPARSE, []], SPARSE), ([[], DENSE], DENSE)):
        got = fuse_rankings(lists, method)
        assert [d for d, _ in got] == [d for d, _ in kept]
    assert fuse_rankings([[], []], method) == []


@pytest.mark.parametrize("method", ["auto", "agreement", "dispersion"])
def test_one_hit_equal_scores_and_no_overlap_stay_finite_and_sensible(method):
    one = [("q", 3.0)]
    equal = [("m", 0.5), ("n", 0.5), ("o", 0.5)]
    # A one-hit or constant list carries no evidence (z = 0 everywhere): the other list's z-scores decide.
    assert [d for d, _ in fuse_rankings([SPARSE, one], method)] == ["a", "b", "q", "c"]
    for lists in ([SPARSE, one], [one, DENSE], [SPARSE, equal], [equal, equal], [one, one]):
        got = fuse_rankings(lists, method)
        assert all(np.isfinite(s) for _, s in got)
        assert len(got) == len({d for lst in lists for d, _ in lst})
    assert [d for d, _ in fuse_rankings([equal, DENSE], method)][0] == "c"
    # no overlap at all: the list whose top stands out more (dense here) leads
    far = [("p", 10.0), ("q", 1.0), ("r", 1.0), ("s", 1.0), ("t", 1.0)]
    flat = [("u", 3.0), ("v", 2.9), ("w", 2.8), ("x", 2.7), ("y", 2.6)]
    assert fuse_rankings([flat, far], method)[0][0] == "p"


# ---------------------------------------------------------------- never below the better side
def synthetic_collection(seed: int, noisy: str, n_queries: int = 60, n_docs: int = 2000, depth: int = 100):
    """One good list per query (relevant documents score as outliers over an exponential bulk) and one
    noise list (Gaussian scores over random documents: nothing to find), plus qrels."""
    rng = np.random.default_rng(seed)
    good, noise, qrels = {}, {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        relevant = rng.choice(n_docs, size=3, replace=False)
        qrels[qid] = {f"d{r}": 1 for r in relevant}
        docs = rng.choice(n_docs, size=depth, replace=False)
        hits = {f"d{d}": v for d, v in zip(docs, rng.exponential(1.0, depth))}
        for r in relevant:
            if rng.random() < 0.8:  # the good list finds most relevant documents, with outlying scores
                hits[f"d{r}"] = 6.0 + rng.exponential(1.0)
        good[qid] = sorted(hits.items(), key=lambda h: (-h[1], h[0]))[:depth]
        other = rng.choice(n_docs, size=depth, replace=False)
        noise[qid] = sorted(((f"d{d}", float(v)) for d, v in zip(other, rng.normal(0.5, 0.05, depth))),
                            key=lambda h: (-h[1], h[0]))
    runs = [noise, good] if noisy == "sparse" else [good, noise]
    return runs, qrels


@pytest.mark.parametrize("noisy", ["dense", "sparse"])
@pytest.mark.parametrize("seed", range(3))
def test_auto_is_not_below_the_good_list_when_the_other_is_noise(seed, noisy):
    runs, qrels = synthetic_collection(seed, noisy)
    good = runs[1] if noisy == "sparse" else runs[0]
    best = evaluate(good, qrels, ["ndcg@10"])["ndcg@10"]
    auto = evaluate(fuse(runs, "auto"), qrels, ["ndcg@10"])["ndcg@10"]
    equal = evaluate(fuse(runs, "weighted", weights=[0.5, 0.5], normalization="z-score"), qrels, ["ndcg@10"])["ndcg@10"]
    rrf = evaluate(fuse(runs, "rrf"), qrels, ["ndcg@10"])["ndcg@10"]
    assert auto >= best - 1e-9
    assert rrf < best and equal <= best  # what auto protects against: a fixed fusion pulled down by noise


@pytest.mark.parametrize("seed", range(3))
def test_auto_fuses_two_useful_complementary_lists_equally(seed):
    """Each list finds a different half of the relevant documents: fusing beats both, and auto fuses equally."""
    rng = np.random.default_rng(seed)
    lists, qrels = ({}, {}), {}
    for q in range(40):
        qid = f"q{q}"
        relevant = [f"r{q}-{i}" for i in range(4)]
        qrels[qid] = {r: 1 for r in relevant}
        shared = [f"s{q}-{i}" for i in range(6)]  # non-relevant documents both lists like
        for side in (0, 1):
            mine = relevant[2 * side:2 * side + 2] + relevant[2 * (1 - side):2 * (1 - side) + 1]
            hits = {d: 5.0 + rng.random() for d in mine[:2]} | {mine[2]: 2.0} | {d: 3.0 + rng.random() for d in shared}
            hits |= {f"n{q}-{side}-{i}": rng.exponential(1.0) for i in range(50)}
            lists[side][qid] = sorted(hits.items(), key=lambda h: (-h[1], h[0]))
    ndcg = {name: evaluate(run, qrels, ["ndcg@10"])["ndcg@10"]
            for name, run in (("sparse", lists[0]), ("dense", lists[1]), ("auto", fuse(list(lists), "auto")))}
    pools = [pool([as_hits(lists[0][q]), as_hits(lists[1][q])]) for q in qrels]
    assert calibrate(pools)["dense_weight"] == pytest.approx(0.5)
    assert ndcg["auto"] > max(ndcg["sparse"], ndcg["dense"])


def test_fuse_cli_auto_and_its_flags(tmp_path):
    from pyserini_dense_ext.fuse import main as fuse_main
    from pyserini_dense_ext.io.runs import read_run, write_run

    runs, _ = synthetic_collection(0, "dense", n_queries=5)
    paths = [tmp_path / "sparse.trec", tmp_path / "dense.trec"]
    for path, run in zip(paths, runs):
        write_run(path, run)
    runs = [read_run(p) for p in paths]  # as rounded in the files
    out = tmp_path / "auto.trec"
    assert fuse_main(["--runs", *map(str, paths), "--method", "auto", "--output", str(out)]) == 0
    expected = fuse(runs, "auto", k=1000)
    assert {q: [d for d, _ in h] for q, h in read_run(out).items()} == {q: [d for d, _ in h] for q, h in expected.items()}
    assert fuse_main(["--runs", *map(str, paths), "--method", "auto", "--dense-weight", "0.5", "--output", str(out)]) == 0
    half = fuse(runs, "weighted", k=1000, weights=[0.5, 0.5], normalization="z-score")
    assert {q: [d for d, _ in h] for q, h in read_run(out).items()} == {q: [d for d, _ in h] for q, h in half.items()}
    assert fuse_main(["--runs", *map(str, paths), "--method", "dispersion", "--predictor", "gap", "--output",
                      str(out)]) == 0
    with pytest.raises(ValueError, match="does not take --dense-weight"):
        fuse_main(["--runs", *map(str, paths), "--method", "rrf", "--dense-weight", "0.5", "--output", str(out)])
