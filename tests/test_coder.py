"""The coder recipe on tiny models: its loss against a brute-force recomputation for every family, training
that improves its own training ranking, resume after a kill, the output dir everywhere, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pyserini_dense_ext.cli import run_cli
from pyserini_dense_ext.index.encode import encode_corpus
from pyserini_dense_ext.encoders import load_model
from pyserini_dense_ext.eval.metrics import evaluate
from pyserini_dense_ext.io import read_corpus, read_qrels, write_run
from pyserini_dense_ext.rerank import Reranker
from pyserini_dense_ext.search import DenseSearcher
from pyserini_dense_ext.train.__main__ import main as train_main
from pyserini_dense_ext.train.listwise import listnet_loss
from pyserini_dense_ext.train.recipes.coder import CoderRecipe

from conftest import make_tiny_bert, write_jsonl

TEXTS = ["protein expression in human cells", "cancer risk and gene expression", "heat flow in a boundary layer",
         "shock wave at mach number two", "mice study of disease treatment", "wing", "reduced effect",
         "increased risk of cancer in patients with the gene", "pressure on aircraft wing in flow",
         "the effect of treatment on cells", "hello world document", "boundary layer at mach number"]


def make_data(root, model_dir):
    """A BEIR dir: 12 documents, a query per document (its first and last word) judging it relevant,
    query 0 also judging document 11 (grade 2); the run ranks every document in a fixed, query-blind order."""
    root.mkdir(parents=True, exist_ok=True)
    write_jsonl(root / "corpus.jsonl", [{"_id": f"d{i}", "text": t} for i, t in enumerate(TEXTS)])
    write_jsonl(root / "queries.jsonl", [{"_id": f"q{i}", "text": f"{t.split()[0]} {t.split()[-1]}"}
                                         for i, t in enumerate(TEXTS)])
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "q0\td11\t2\n" +
                                              "".join(f"q{i}\td{i}\t1\n" for i in range(len(TEXTS))))
    write_run(root / "run.trec", {f"q{i}": [(f"d{j}", float(-j)) for j in range(len(TEXTS))]
                                  for i in range(len(TEXTS))})
    index = encode_corpus(read_corpus(root / "corpus.jsonl"), load_model(model_dir), root / "index",
                          {"model": str(model_dir)}, progress=False)
    return {"data": root, "index": index, "run": root / "run.trec", "model": model_dir}


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_family_dirs):
    root = tmp_path_factory.mktemp("coder")
    return {family: make_data(root / family, path) for family, path in tiny_family_dirs.items()}


def train_args(d, output, *extra):
    return ["coder", "--model", str(d["model"]), "--index", str(d["index"]), "--data", str(d["data"]),
            "--negatives", str(d["run"]), "--output", str(output), "--quiet", "--no-plot", *map(str, extra)]


def recipe_for(d, *extra):
    from pyserini_dense_ext.train.args import resolve
    from pyserini_dense_ext.train.recipes.coder import CoderArgs

    given = {"model": str(d["model"]), "index": str(d["index"]), "data": str(d["data"]), "negatives": str(d["run"]),
             "output": "unused", "quiet": True, **dict(extra)}
    args, options = resolve("coder", CoderArgs, CoderRecipe.defaults, given)
    recipe = CoderRecipe(args, options, torch.device("cpu"))
    recipe.prepare()
    return recipe


@pytest.mark.parametrize("family", ["repbert", "tct_colbert", "mebert"])
def test_loss_equals_a_brute_force_recomputation(data, family):
    """Query vectors from ``encode``, document vectors re-encoded from text (ME-BERT: max over m rows),
    the candidates of the lists (top 8 + the missed positive): the recipe's loss is that ListNet value."""
    d = data[family]
    recipe = recipe_for(d, ("negative_depth", 8), ("eval_depth", 8), ("tau_s", 0.5), ("tau_y", 0.2))
    lists = recipe.lists
    assert lists.ids.shape[1] == 9 and lists.missed == sum(1 for q in lists.qids if int(q[1:]) >= 8) + (
        "q0" in lists.qids)  # d8..d11 are outside the top 8; q0's second positive is d11
    model = recipe.model.eval()
    rows = np.arange(len(lists.qids))
    with torch.no_grad():
        got = recipe.loss(rows)
    docs = model.encode(TEXTS, "document")
    docs = docs if docs.ndim == 3 else docs[:, None]
    q = model.encode([recipe.queries[qid] for qid in lists.qids], "query")
    scores = np.einsum("qd,nmd->qnm", q, docs).max(2)
    cand = np.take_along_axis(scores, np.maximum(lists.ids, 0), 1)
    expected = listnet_loss(torch.from_numpy(cand), torch.from_numpy(lists.grades), torch.from_numpy(lists.ids >= 0),
                            0.2, 0.5)
    assert torch.allclose(got, expected, atol=1e-5)
    grade = dict(zip(*np.unique(lists.grades, return_counts=True)))
    assert grade[2.0] == ("q0" in lists.qids) and grade[1.0] == len(lists.qids)


def test_training_improves_its_own_training_ranking(data, tmp_path):
    d = data["repbert"]
    out = tmp_path / "model"
    assert train_main(train_args(d, out, "--dev-fraction", 0, "--epochs", 30, "--batch-size", 4,
                                 "--learning-rate", 1e-3, "--tau-s", 1.0, "--negative-depth", 10,
                                 "--eval-depth", 10)) == 0
    qrels = read_qrels(d["data"] / "qrels" / "train.tsv")
    topics = {f"q{i}": f"{t.split()[0]} {t.split()[-1]}" for i, t in enumerate(TEXTS)}
    from pyserini_dense_ext.io import read_run

    run = read_run(d["run"])
    before = evaluate(Reranker(d["index"], d["model"]).rerank_run(topics, run, 10, progress=False), qrels)
    after = evaluate(Reranker(d["index"], out).rerank_run(topics, run, 10, progress=False), qrels)
    assert after["ndcg@10"] > before["ndcg@10"] + 0.1 and after["mrr@10"] > before["mrr@10"]
    record = json.loads((out / "training.json").read_text())
    assert record["recipe"] == "coder" and record["loss"]["name"] == "listnet"
    assert record["index"]["fingerprint"] == Reranker(d["index"], out).vectors.fingerprint
    assert record["candidates"] == {"depth": 10, "train_queries": 12, "missed_positives_added": 3}


@pytest.mark.parametrize("family", ["repbert", "tct_colbert", "mebert"])
def test_every_family_trains_into_a_model_every_command_reads(data, tmp_path, family):
    d = data[family]
    out = tmp_path / "model"
    assert train_main(train_args(d, out, "--max-steps", 3, "--batch-size", 4, "--negative-depth", 10,
                                 "--eval-depth", 10, "--eval-steps", 2, "--loss",
                                 "max-margin" if family == "tct_colbert" else "listnet")) == 0
    trained, base = load_model(out), load_model(d["model"])
    assert trained.config.family == family and trained.config == base.config
    hits = DenseSearcher(d["index"], out).search("protein cells", k=3)  # single-stage, on the unchanged index
    _, scores = Reranker(d["index"], out).rerank(["protein cells"], [[f"d{i}" for i in range(12)]], k=3)[0]
    np.testing.assert_allclose(scores, [h.score for h in hits], atol=1e-5)
    dev = read_qrels(out / "dev_qrels.tsv")  # the held-out split, written for downstream tuning
    record = json.loads((out / "training.json").read_text())
    assert len(dev) == record["dev_queries"] == 12 - record["candidates"]["train_queries"] > 0
    log = (out / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("step") and len(log) >= 4


def test_resumes_after_a_kill_to_the_same_weights(data, tmp_path, monkeypatch):
    d = data["repbert"]
    args = ["--max-steps", 6, "--save-steps", 2, "--batch-size", 4, "--negative-depth", 10, "--eval-depth", 10,
            "--eval-steps", 3]
    assert train_main(train_args(d, tmp_path / "straight", *args)) == 0
    calls = {"n": 0}
    original = CoderRecipe.loss

    def dies_at_step_5(self, rows):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, rows)

    monkeypatch.setattr(CoderRecipe, "loss", dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train_main(train_args(d, tmp_path / "resumed", *args))
    monkeypatch.setattr(CoderRecipe, "loss", original)
    assert train_main(train_args(d, tmp_path / "resumed", *args)) == 0
    a = load_model(tmp_path / "straight").state_dict()
    b = load_model(tmp_path / "resumed").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "resumed" / "training.json").read_text())["resumes"] == 1


def cli(*args):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(train_main, [str(a) for a in args])
    return exit_info.value.code


def test_bad_input_exits_2_naming_file_line_and_field(data, tmp_path, capsys):
    d = data["repbert"]
    out = tmp_path / "model"
    depth = ["--negative-depth", 10, "--eval-depth", 10]
    bad_run = tmp_path / "bad.trec"
    bad_run.write_text("q0 Q0 d1 1 3.0 x\nq0 Q0 nope 2 2.0 x\n")
    assert cli(*train_args({**d, "run": bad_run}, out), *depth) == 2
    assert f"{bad_run}, line 2: field 'docid' names document 'nope', which the dense index" in capsys.readouterr().err

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "queries.jsonl").write_text((d["data"] / "queries.jsonl").read_text())
    (data_dir / "qrels").mkdir()
    (data_dir / "qrels" / "train.tsv").write_text("q0\td0\t1\nq77\td1\t1\n")
    assert cli(*train_args({**d, "data": data_dir}, out), *depth) == 2
    err = capsys.readouterr().err
    assert f"train.tsv, line 2: field 'qid' names query 'q77', which has no text in {data_dir}" in err

    wide = load_model(make_tiny_bert(tmp_path / "wide", hidden=48), family="repbert")
    wide.save(tmp_path / "wide-model")
    assert cli(*train_args({**d, "model": tmp_path / "wide-model"}, out), *depth) == 2
    assert f"{d['index'] / 'index'}: field 'dim' has dimension 32 but" in capsys.readouterr().err

    assert cli(*train_args(d, out), "--negative-depth", 13, "--eval-depth", 10) == 2
    assert "docid: field 'negative_depth' --negative-depth 13 exceeds the 12 documents of the index" in \
        capsys.readouterr().err

    assert cli(*train_args({**d, "index": tmp_path}, out), *depth) == 2  # not an index dir
    assert "is missing: not a FAISS index dir" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".model.*"))


def test_trained_dir_exports_to_onnx_and_plugs_into_pyserini(data, tmp_path):
    from pyserini.search.faiss import FaissSearcher

    from pyserini_dense_ext.encoders import load_query_encoder
    from pyserini_dense_ext.onnx import export_onnx

    d = data["repbert"]
    out = tmp_path / "model"
    assert train_main(train_args(d, out, "--max-steps", 2, "--batch-size", 4, "--negative-depth", 10,
                                 "--eval-depth", 10, "--dev-fraction", 0)) == 0
    export_onnx(out, "query", tmp_path / "q.onnx")
    queries, qids = ["protein cells", "mach number"], ["a", "b"]
    theirs = FaissSearcher(str(d["index"]), load_query_encoder(out)).batch_search(queries, qids, k=5)
    onnx = FaissSearcher(str(d["index"]), load_query_encoder(tmp_path / "q.onnx")).batch_search(queries, qids, k=5)
    for qid in qids:
        np.testing.assert_allclose([h.score for h in onnx[qid]], [h.score for h in theirs[qid]], atol=1e-4)


def test_dev_ranking_search_scores_the_whole_index(data, tmp_path):
    """``--dev-ranking search``: the dev score at the start is the base model's full-index search of the dev queries."""
    d = data["repbert"]
    out = tmp_path / "model"
    assert train_main(train_args(d, out, "--max-steps", 1, "--batch-size", 4, "--negative-depth", 3,
                                 "--eval-depth", 3, "--dev-ranking", "search", "--dev-fraction", 0.5)) == 0
    dev = read_qrels(out / "dev_qrels.tsv")
    topics = {f"q{i}": f"{t.split()[0]} {t.split()[-1]}" for i, t in enumerate(TEXTS) if f"q{i}" in dev}
    run = DenseSearcher(d["index"], d["model"]).search_run(topics, k=12, progress=False)
    expected = evaluate(run, dev, ["ndcg@10", "recall@100"], complete=True)
    start = json.loads((out / "training.json").read_text())["dev_at_start"]
    assert start == pytest.approx(expected, abs=1e-6)  # the rerank mode would see only the run's first 3 hits
