"""Evaluation: parity with the trec_eval binary Pyserini ships, hand-worked cases, and the CLI."""
from __future__ import annotations

import glob
import importlib.resources
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pyserini_dense_ext  # noqa: F401  (puts Java 21 first on PATH)
from pyserini_dense_ext.eval import Metric, evaluate, evaluate_per_query, parse_metric, trec_order
from pyserini_dense_ext.eval.__main__ import main
from pyserini_dense_ext.io import read_qrels, read_run

ROOT = Path(__file__).resolve().parents[1]

# Our metric -> (trec_eval -m argument, name trec_eval prints). mrr@10 is recip_rank under -M 10.
TREC_NAMES = {"ndcg@10": ("ndcg_cut.10", "ndcg_cut_10"), "ndcg": ("ndcg", "ndcg"),
              "recall@100": ("recall.100", "recall_100"), "recall@1000": ("recall.1000", "recall_1000"),
              "map": ("map", "map"), "map@100": ("map_cut.100", "map_cut_100"), "p@10": ("P.10", "P_10"),
              "mrr": ("recip_rank", "recip_rank")}


# ---------------------------------------------------------------- trec_eval itself

def trec_eval_command() -> list[str]:
    """``java -cp <anserini fatjar> trec_eval``: the same binary ``pyserini.eval.trec_eval`` runs."""
    java = shutil.which("java")
    jars = glob.glob(str(importlib.resources.files("pyserini.resources.jars").joinpath("*.jar")))
    if java is None or not jars:
        pytest.skip("trec_eval needs java on PATH and Pyserini's Anserini fatjar")
    return [java, "-cp", jars[0], "trec_eval"]


def trec_eval(qrels: Path, run: Path, measures: list[str], *options: str) -> dict[str, dict[str, float]]:
    """``{qid or 'all': {trec_eval measure name: value}}`` from ``trec_eval -q``.

    Cutoffs of one measure go in one ``-m`` (``recall.100,1000``): trec_eval keeps only the first
    ``-m recall.k`` it is given and silently drops the rest.
    """
    params: dict[str, list[str]] = {}
    for m in measures:
        base, _, cut = m.partition(".")
        params.setdefault(base, []).extend([cut] if cut else [])
    args = [a for base, cuts in params.items() for a in ("-m", base + ("." + ",".join(cuts) if cuts else ""))]
    out = subprocess.run(trec_eval_command() + ["-q", *options, *args, str(qrels), str(run)],
                         capture_output=True, text=True, check=True).stdout
    table: dict[str, dict[str, float]] = {}
    for line in out.splitlines():
        name, qid, value = line.split()
        table.setdefault(qid, {})[name] = float(value)
    return table


def ours_vs_trec(qrels_path: Path, run_path: Path, complete: bool) -> tuple[dict, dict]:
    """Per-query values of every TREC_NAMES metric plus mrr@10, ours and trec_eval's, keyed the same way.

    trec_eval -c -q prints no per-query line for a judged query missing from the run (it only counts it,
    as 0, in ``all``), so there ours must hold exactly those queries, all zeros, and the query counts must agree.
    """
    run, qrels = read_run(run_path), read_qrels(qrels_path)
    opts = ["-c"] if complete else []
    theirs = trec_eval(qrels_path, run_path, [t for t, _ in TREC_NAMES.values()] + ["num_q"], *opts)
    cut10 = trec_eval(qrels_path, run_path, ["recip_rank"], "-M", "10", *opts)
    metrics = list(TREC_NAMES) + ["mrr@10"]
    per_query = evaluate_per_query(run, qrels, metrics, complete=complete)
    assert len(per_query) == theirs["all"]["num_q"]
    missing = {q: per_query.pop(q) for q in set(per_query) - set(theirs)}
    assert sorted(missing) == sorted(set(qrels) - set(run) if complete else [])
    assert all(v == 0 for values in missing.values() for v in values.values())
    ours = {q: {m: round(v, 4) for m, v in values.items()} for q, values in per_query.items()}
    ours["all"] = {m: round(v, 4) for m, v in evaluate(run, qrels, metrics, complete=complete).items()}
    expected = {q: {m: values[name] for m, (_, name) in TREC_NAMES.items()} | {"mrr@10": cut10[q]["recip_rank"]}
                for q, values in theirs.items()}
    return ours, expected


def assert_same(ours: dict, expected: dict) -> None:
    """Same queries and every value equal to trec_eval's once both are rounded to its 4 printed decimals."""
    assert sorted(ours) == sorted(expected)
    bad = [(q, m, ours[q][m], v) for q in expected for m, v in expected[q].items() if abs(ours[q][m] - v) > 1e-9]
    assert not bad, f"{len(bad)} values differ from trec_eval, e.g. {bad[:5]}"


def write_trec_qrels(qrels: dict[str, dict[str, int]], path: Path) -> Path:
    path.write_text("".join(f"{q} 0 {d} {g}\n" for q, docs in qrels.items() for d, g in docs.items()))
    return path


def corpus_ids(root: Path) -> list[str]:
    with open(root / "corpus.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["_id"] for line in f]


@pytest.fixture(params=["cranfield", "scifact"])
def tie_heavy_case(request, tmp_path) -> tuple[Path, Path]:
    """TREC qrels and a random run full of score ties over a real collection's judgements.

    Extras that exercise trec_eval's query rules: a query judged only at grade 0 (retrieved), a grade -1
    judgement, every 7th judged query missing from the run (differs under -c) and a run query with no
    judgements. Hits are written in shuffled line order so only scores (and tie-breaking) decide rank.
    """
    root: Path = request.getfixturevalue(request.param)
    qrels = {q: dict(d) for q, d in read_qrels(root / "qrels" / "test.tsv").items()}
    docids = corpus_ids(root)
    first = sorted(qrels)[0]
    qrels["zz-only-grade-0"] = {docids[0]: 0, docids[1]: 0}
    qrels[first][docids[2]] = -1
    rng = np.random.default_rng(7)
    lines = []
    for i, (qid, judged) in enumerate(sorted(qrels.items())):
        if i % 7 == 3:
            continue
        n = int(rng.choice([8, 60, 300, 1200]))
        pool = list(dict.fromkeys(list(judged) + [docids[j] for j in rng.choice(len(docids), n, replace=False)]))
        if rng.random() < 0.5:  # keep a random n: some judged docs go unretrieved
            pool = [pool[j] for j in rng.permutation(len(pool))[:n]]
        grades = np.array([max(judged.get(d, 0), 0) for d in pool])
        scores = np.round(rng.random(len(pool)) * 3 + 0.7 * grades, 1)  # one decimal: many ties
        lines += [(qid, d, s) for d, s in zip(pool, scores)]
    lines += [("no-such-query", docids[0], 1.0), ("no-such-query", docids[1], 0.5)]
    order = rng.permutation(len(lines))
    run_text = "".join(f"{lines[j][0]} Q0 {lines[j][1]} {r} {lines[j][2]} rand\n" for r, j in enumerate(order, 1))
    run_path = tmp_path / "run.trec"
    run_path.write_text(run_text)
    return write_trec_qrels(qrels, tmp_path / "qrels.trec"), run_path


@pytest.mark.parametrize("complete", [False, True], ids=["default", "complete"])
def test_parity_with_trec_eval_on_tie_heavy_runs(tie_heavy_case, complete):
    qrels_path, run_path = tie_heavy_case
    ours, expected = ours_vs_trec(qrels_path, run_path, complete)
    assert "zz-only-grade-0" in expected and "no-such-query" not in expected
    assert_same(ours, expected)


def test_parity_case_exercises_tie_breaking(tie_heavy_case):
    """Breaking ties by docid ascending (read_run's order) must disagree with trec_eval somewhere,
    otherwise the parity test above could not catch a wrong tie order."""
    qrels_path, run_path = tie_heavy_case
    run, qrels = read_run(run_path), read_qrels(qrels_path)
    ascending = {q: [(d, float(-i)) for i, (d, _) in enumerate(hits)] for q, hits in run.items()}
    _, expected = ours_vs_trec(qrels_path, run_path, complete=False)
    naive = evaluate_per_query(ascending, qrels, ["ndcg@10", "mrr@10"])
    assert any(abs(naive[q][m] - expected[q][m]) > 1e-3 for q in naive for m in ("ndcg@10", "mrr@10"))


def test_parity_float32_score_ties(tmp_path):
    """trec_eval keeps scores as C floats: 1.00000002 and 1.00000001 tie, 1.0000002 and 1.0000001 do not."""
    qrels = write_trec_qrels({"1": {"a": 1, "c": 0}, "2": {"a": 1, "c": 0}}, tmp_path / "qrels")
    run = tmp_path / "run"
    run.write_text("1 Q0 a 1 1.00000002 t\n1 Q0 c 2 1.00000001 t\n2 Q0 a 1 1.0000002 t\n2 Q0 c 2 1.0000001 t\n")
    ours, expected = ours_vs_trec(qrels, run, complete=False)
    assert expected["1"]["mrr"] == 0.5 and expected["2"]["mrr"] == 1.0
    assert_same(ours, expected)


# ---------------------------------------------------------------- worked by hand

def test_ndcg_graded_by_hand():
    qrels = {"q": {"a": 3, "b": 1, "c": 0}}
    run = {"q": [("a", 3.0), ("x", 2.0), ("b", 1.0)]}
    expected = (3 / math.log2(2) + 1 / math.log2(4)) / (3 / math.log2(2) + 1 / math.log2(3))
    assert evaluate(run, qrels, ["ndcg@10"])["ndcg@10"] == pytest.approx(expected)
    # the cutoff also truncates the ideal ranking
    flat = {"q": {"a": 2, "b": 2, "c": 2}}
    assert evaluate({"q": [("a", 1.0)]}, flat, ["ndcg@1"])["ndcg@1"] == pytest.approx(1.0)
    assert evaluate({"q": [("a", 1.0)]}, flat, ["ndcg@3"])["ndcg@3"] == pytest.approx(
        2 / (2 + 2 / math.log2(3) + 2 / math.log2(4)))


def test_ties_break_by_docid_descending():
    qrels = {"q": {"d1": 1}}
    run = {"q": [("d1", 1.0), ("d2", 1.0), ("d0", 0.5)]}
    assert trec_order(run["q"]) == ["d2", "d1", "d0"]
    assert evaluate(run, qrels, ["mrr@10"])["mrr@10"] == pytest.approx(1 / 2)
    # lexical, not numeric: "9" sorts after "10", so it comes first in a tie
    assert trec_order([("10", 2.0), ("9", 2.0)]) == ["9", "10"]


def test_mrr_map_recall_precision_by_hand():
    qrels = {"q": {"a": 1, "b": 2, "c": 1, "z": 0}}
    run = {"q": [("a", 5.0), ("z", 4.0), ("b", 3.0), ("y", 2.0)]}  # relevant at ranks 1 and 3 of R = 3
    values = evaluate(run, qrels, ["map", "map@2", "recall@2", "recall@100", "p@2", "p@10", "mrr@10"])
    assert values["map"] == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert values["map@2"] == pytest.approx((1 / 1) / 3)
    assert values["recall@2"] == pytest.approx(1 / 3)
    assert values["recall@100"] == pytest.approx(2 / 3)
    assert values["p@2"] == pytest.approx(1 / 2)
    assert values["p@10"] == pytest.approx(2 / 10)  # fewer hits than k still divides by k
    assert values["mrr@10"] == pytest.approx(1.0)
    late = {"q": [("y", 3.0), ("z", 2.0), ("c", 1.0)]}
    assert evaluate(late, qrels, ["mrr@2"])["mrr@2"] == 0.0
    assert evaluate(late, qrels, ["mrr@3"])["mrr@3"] == pytest.approx(1 / 3)


def test_query_averaging_rules():
    qrels = {"q1": {"a": 1}, "q2": {"b": 0}, "q3": {"c": 1}}  # q2: judged, nothing relevant
    run = {"q1": [("a", 1.0)], "q2": [("b", 1.0)], "q4": [("c", 1.0)]}  # q3 missing, q4 unjudged
    assert evaluate(run, qrels, ["mrr@10"])["mrr@10"] == pytest.approx((1 + 0) / 2)
    assert evaluate(run, qrels, ["mrr@10"], complete=True)["mrr@10"] == pytest.approx((1 + 0 + 0) / 3)
    assert sorted(evaluate_per_query(run, qrels, ["map"], complete=True)) == ["q1", "q2", "q3"]
    with pytest.raises(ValueError, match="no query has both"):
        evaluate({"q9": [("a", 1.0)]}, qrels)


def test_parse_metric():
    assert parse_metric("nDCG@10") == Metric("ndcg", 10)
    assert parse_metric("MRR@10").name == "mrr@10"
    assert parse_metric("P@5") == Metric("p", 5)
    assert parse_metric("map") == Metric("map", None)
    assert parse_metric(" recall@1000 ").name == "recall@1000"
    for bad in ("foo", "p", "ndcg@0", "ndcg@-1", "ndcg@", "ndcg10", "map@x"):
        with pytest.raises(ValueError):
            parse_metric(bad)


# ---------------------------------------------------------------- CLI

@pytest.fixture()
def small_files(tmp_path) -> tuple[Path, Path]:
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq\ta\t3\nq\tb\t1\nq\tc\t0\n")
    run = tmp_path / "run.trec"
    run.write_text("q Q0 a 1 3.0 t\nq Q0 x 2 2.0 t\nq Q0 b 3 1.0 t\n")
    return qrels, run


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--metrics" in out and "--complete" in out and "trec_eval" in out


def test_cli_json_and_table(small_files, capsys):
    qrels, run = small_files
    assert main(["--run", str(run), "--qrels", str(qrels), "--metrics", "ndcg@10", "p@2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_queries"] == 1
    assert out["metrics"]["ndcg@10"] == pytest.approx((3 + 1 / math.log2(4)) / (3 + 1 / math.log2(3)))
    assert out["metrics"]["p@2"] == pytest.approx(1 / 2)
    assert main(["--run", str(run), "--qrels", str(qrels), "--metrics", "p@2", "--per-query"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split() == ["q", "0.5000"] and rows[2].split() == ["all", "0.5000"]
    assert main(["--run", str(run), "--qrels", str(qrels), "--metrics", "p@2"]) == 0  # the default: no per-query
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split() == ["all", "0.5000"]


def test_cli_msmarco_run(small_files, tmp_path, capsys):
    qrels, _ = small_files
    run = tmp_path / "run.tsv"
    run.write_text("q\tx\t1\nq\tb\t2\n")
    assert main(["--run", str(run), "--qrels", str(qrels), "--metrics", "mrr@10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["mrr@10"] == pytest.approx(1 / 2)


def test_cli_bad_qrels_line_exits_2_without_traceback(small_files, tmp_path):
    _, run = small_files
    bad = tmp_path / "bad_qrels.txt"
    bad.write_text("q 0 a 1\nq 0 b 1 extra\n")
    proc = subprocess.run([sys.executable, "-m", "pyserini_dense_ext.eval", "--run", str(run), "--qrels", str(bad)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "line 2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_unknown_metric_and_missing_file(small_files, capsys):
    qrels, run = small_files
    with pytest.raises(SystemExit) as exc:
        main(["--run", str(run), "--qrels", str(qrels), "--metrics", "ndcg@ten"])
    assert exc.value.code == 2 and "unknown metric 'ndcg@ten'" in capsys.readouterr().err
    assert main(["--run", str(run) + ".missing", "--qrels", str(qrels)]) == 2
    assert "run file does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- bench/seen_positives.py

def test_seen_positives_splits_queries_by_documents_training_judged(tmp_path):
    """A query is 'seen' when one of its relevant documents is relevant to a training query (a judged
    but non-relevant training document does not count); each part is scored on its own queries only."""
    train = tmp_path / "train.qrels"
    train.write_text("t1 0 d1 1\nt1 0 d9 0\nt2 0 d2 2\n")
    test = tmp_path / "test.qrels"
    test.write_text("a 0 d1 1\na 0 d5 1\nb 0 d9 1\nc 0 d2 1\nd 0 d7 1\n")
    run = tmp_path / "run.trec"
    run.write_text("a Q0 d1 1 3.0 x\na Q0 d5 2 2.0 x\nb Q0 d3 1 1.0 x\nb Q0 d9 2 0.5 x\n"
                   "c Q0 d4 1 1.0 x\nd Q0 d7 1 1.0 x\n")
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import seen_positives
    finally:
        sys.path.remove(str(ROOT / "bench"))
    result = seen_positives.main(["--run", f"r={run}", "--qrels", str(test), "--train-qrels", str(train),
                                  "--metric", "ndcg@10", "--output", str(tmp_path / "out.json")])
    assert result["queries"] == {"seen": 2, "unseen": 2}
    qrels, ranked = read_qrels(test), read_run(run)
    per_query = evaluate_per_query(ranked, qrels, ["ndcg@10"])
    scores = result["runs"]["r"]
    assert scores["seen"] == pytest.approx((per_query["a"]["ndcg@10"] + per_query["c"]["ndcg@10"]) / 2)
    assert scores["unseen"] == pytest.approx((per_query["b"]["ndcg@10"] + per_query["d"]["ndcg@10"]) / 2)
    assert scores["all"] == pytest.approx(evaluate(ranked, qrels, ["ndcg@10"], complete=True)["ndcg@10"])
    assert scores["seen"] != scores["unseen"]
    assert json.loads((tmp_path / "out.json").read_text()) == result
