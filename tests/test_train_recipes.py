"""The ME-BERT, ColBERT and TCT-ColBERT recipes and the ColBERT reranker, on tiny models made here and the
toy corpus of test_train.py: losses recomputed from their definitions, training improves the training-set
ranking, SIGKILL + resume gives the same weights, trained dirs round-trip, bad input exits 2."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pyserini_dense_ext.encoders import load_model
from pyserini_dense_ext.encoders.colbert import LINEAR_FILE, ColBertModel, maxsim, rerank
from pyserini_dense_ext.eval import evaluate
from pyserini_dense_ext.io import read_qrels, read_run
from pyserini_dense_ext.train import TrainArgs, load_training_data
from pyserini_dense_ext.train.__main__ import main as train_main
from pyserini_dense_ext.train.loop import partial_dir
from pyserini_dense_ext.train.pairs import PairArgs
from pyserini_dense_ext.train.recipes.mebert import MeBertRecipe
from pyserini_dense_ext.train.recipes.tct_colbert import TctArgs, TctColBertRecipe

from conftest import make_tiny_bert
from test_train import (ROOT, SLOW_CLI, TOPICS, assert_round_trip, cli_code, log_rows, make_toy,  # noqa: F401
                        toy, toy_run, train_ranking, weights)

RECIPE_FLAGS = {"mebert": ["--num-vectors", "3", "--projection-dim", "16"], "debert": ["--num-vectors", "1"],
                "colbert": ["--projection-dim", "16"], "tct_colbert": []}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny) -> Path:
    """A tiny ColBERT teacher trained on the toy corpus (it ranks the toy queries well: asserted below)."""
    base = tmp_path_factory.mktemp("teacher")
    out = base / "colbert"
    assert train_main(argv("colbert", make_toy(base / "toy"), tiny, out, "--dev-fraction", "0", "--epochs", "10")) == 0
    return out


def argv(recipe: str, toy: Path, model: Path, out: Path, *extra: str) -> list[str]:
    name = "mebert" if recipe == "debert" else recipe
    return [name, "--model", str(model), "--data", str(toy), "--output", str(out), "--epochs", "6",
            "--batch-size", "4", "--gradient-accumulation", "2", "--learning-rate", "1e-3", "--warmup-ratio", "0.1",
            "--eval-steps", "4", "--save-steps", "3", "--quiet", "--no-plot", *RECIPE_FLAGS[recipe], *extra]


def colbert_ranking(model: ColBertModel, toy: Path) -> float:
    """nDCG@10 of the training queries, every toy document re-scored by MaxSim."""
    data = load_training_data(TrainArgs(model="unused", output="unused", data=str(toy), dev_fraction=0.0))
    queries = {q: data.queries[q] for q in data.train_qrels}
    run = rerank(model, queries, {q: data.corpus.docids for q in queries}, dict(zip(data.corpus.docids,
                                                                                     data.corpus.texts)))
    return evaluate(run, data.train_qrels, ["ndcg@10"])["ndcg@10"]


def ranking(recipe: str, model_dir: Path, toy: Path, family: str | None = None, **overrides) -> float:
    """The training-set ranking of a trained dir, or (``family`` given) of the untrained start with the
    options the recipe trains with (a fresh projection where it has one)."""
    flags = RECIPE_FLAGS[recipe]
    if family is not None:
        overrides.update({flags[i][2:].replace("-", "_"): int(flags[i + 1]) for i in range(0, len(flags), 2)})
    model = load_model(model_dir, family=family, strict=family is None, **overrides)
    return colbert_ranking(model, toy) if recipe == "colbert" else train_ranking(model, toy)


# ----- each recipe trains --------------------------------------------------------------------------

# Per recipe: options that let a 2-layer random model learn the toy in seconds. A random model's [CLS] barely
# differs between texts, so ME-BERT's queries are mean-pooled here (its documents stay the first m vectors);
# the TCT student's queries are cut to 8 tokens, as 30 [MASK] tokens drown 2 query words in its mean.
TOY_OPTIONS = {"mebert": ["--pooling", "mean", "--hard-negatives", "3"],
               "debert": ["--pooling", "mean", "--hard-negatives", "3", "--learning-rate", "1e-2"],
               "colbert": [], "tct_colbert": ["--query-max-length", "8"]}


@pytest.mark.parametrize("recipe", ["mebert", "debert", "colbert", "tct_colbert"])
def test_loss_falls_and_training_ranking_improves(recipe, toy, toy_run, tiny, teacher, tmp_path):
    out = tmp_path / "model"
    extra = ["--negatives", str(toy_run), *TOY_OPTIONS[recipe]]
    if recipe == "tct_colbert":
        extra += ["--teacher", str(teacher)]
    assert train_main(argv(recipe, toy, tiny, out, "--dev-fraction", "0", "--epochs", "10", *extra)) == 0
    losses = [float(r["loss"]) for r in log_rows(out) if r["loss"]]
    assert len(losses) == 30 and np.mean(losses[-6:]) < 0.75 * np.mean(losses[:6]), losses  # 3 steps an epoch
    family = {"debert": "mebert"}.get(recipe, recipe)
    before = ranking(recipe, tiny, toy, family, query_max_length=8 if recipe == "tct_colbert" else None,
                     pooling="mean" if family == "mebert" else None)
    after = ranking(recipe, out, toy)
    assert after > before + 0.1 and after > 0.9, (before, after)
    config = json.loads((out / "dense_ext.json").read_text())
    assert config["family"] == family
    if recipe in ("mebert", "debert"):
        assert config["num_vectors"] == (3 if recipe == "mebert" else 1)
        assert (out / "projection.safetensors").is_file() == (recipe == "mebert")
    if recipe == "tct_colbert":
        assert json.loads((out / "training.json").read_text())["teacher"]["path"] == str(teacher)


def test_mebert_trains_from_a_debert_dir_keeping_its_cls_vector(toy, toy_run, tiny, tmp_path):
    """The two-stage ME-BERT of docs/training.md: a DE-BERT dir (m=1) with ``--num-vectors 3`` starts
    from DE-BERT's weights, so slot 0 of every document is DE-BERT's vector, and the saved dir is m=3."""
    debert = tmp_path / "debert"
    extra = ["--negatives", str(toy_run), *TOY_OPTIONS["debert"], "--dev-fraction", "0"]
    assert train_main(argv("debert", toy, tiny, debert, "--epochs", "2", *extra)) == 0
    texts = ["a short document", "another one, a little longer than the first"]
    m1 = load_model(debert, strict=True).encode(texts, "document")
    start = load_model(debert, num_vectors=3)
    m3 = start.encode(texts, "document")
    assert m1.shape[:2] == (2, 1) and m3.shape == (2, 3, m1.shape[2])
    np.testing.assert_allclose(m3[:, 0], m1[:, 0], atol=1e-6)
    assert not np.allclose(m3[:, 1], m1[:, 0], atol=1e-3)  # the other slots start as token vectors
    mebert = tmp_path / "mebert"
    # the DE-BERT flags again, with the last --num-vectors winning: the same options, only m changes
    assert train_main(argv("debert", toy, debert, mebert, "--epochs", "6", *extra, "--num-vectors", "3")) == 0
    config = json.loads((mebert / "dense_ext.json").read_text())
    assert config["family"] == "mebert" and config["num_vectors"] == 3
    assert json.loads((mebert / "training.json").read_text())["base_model"]["path"] == str(debert)
    before, after = train_ranking(start, toy), train_ranking(load_model(mebert, strict=True), toy)
    assert after > before + 0.1, (before, after)


def test_mebert_loss_is_cross_entropy_of_the_max_over_m(toy, toy_run, tiny, tmp_path):
    """Recomputed: softmax over the batch's documents scored by their best of m vectors, other positives out."""
    args = TrainArgs(model=str(tiny), output=str(tmp_path / "o"), data=str(toy), dev_fraction=0.0, batch_size=6,
                     negatives=str(toy_run), num_vectors=3, projection_dim=8)
    recipe = MeBertRecipe(args, PairArgs(hard_negatives=2, score_scale=2.0), torch.device("cpu"))
    recipe.prepare()
    recipe.model.eval()
    assert recipe.n_negatives == 2 and MeBertRecipe.default_hard_negatives == 7
    qrels = read_qrels(toy / "qrels" / "train.tsv")
    for batch in recipe.batches(0)[:3]:
        with torch.no_grad():
            got = recipe.loss(batch).item()
        q = recipe.model.encode([recipe.data.queries[x] for x in batch.qids], "query")
        d = recipe.model.encode([recipe.data.corpus.texts[r] for r in batch.doc_rows], "document")
        assert d.shape[1:] == (3, 8)
        docids = [recipe.data.corpus.docids[r] for r in batch.doc_rows]
        want = []
        for row, qid in enumerate(batch.qids):
            scores = [2.0 * max(float(q[row] @ d[c, j]) for j in range(3)) for c in range(len(docids))]
            own = batch.positives[row]
            assert qrels[qid][docids[own]] >= 1
            kept = [s for c, s in enumerate(scores) if c == own or qrels[qid].get(docids[c], 0) < 1]
            want.append(np.log(np.sum(np.exp(kept))) - scores[own])
        assert got == pytest.approx(float(np.mean(want)), rel=1e-4)


def test_maxsim_is_the_sum_over_query_tokens_of_the_best_document_token():
    torch.manual_seed(0)
    q, d = torch.randn(2, 5, 4), torch.randn(3, 6, 4)
    mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3, [1] + [0] * 5])
    got = maxsim(q, d, mask)
    for i in range(2):
        for c in range(3):
            n = int(mask[c].sum())
            want = sum(max(float(q[i, t] @ d[c, u]) for u in range(n)) for t in range(5))
            assert got[i, c].item() == pytest.approx(want, rel=1e-5)


def test_tct_loss_mixes_hard_label_ce_and_kl_to_the_teacher(toy, toy_run, tiny, teacher, tmp_path):
    """gamma * CE(student) + (1 - gamma) * KL(softmax(teacher / tau) || softmax(student / tau)), recomputed
    from the teacher's MaxSim scores of every in-batch pair computed here one pair at a time."""
    args = TrainArgs(model=str(tiny), output=str(tmp_path / "o"), data=str(toy), dev_fraction=0.0, batch_size=5,
                     negatives=str(toy_run))
    options = TctArgs(teacher=str(teacher), temperature=0.5, gamma=0.3)
    recipe = TctColBertRecipe(args, options, torch.device("cpu"))
    recipe.prepare()
    recipe.model.eval()
    assert all(not p.requires_grad for p in recipe.teacher.parameters())
    assert not any(p is t for p in recipe.module.parameters() for t in recipe.teacher.parameters())
    batch = recipe.batches(1)[0]
    queries = [recipe.data.queries[x] for x in batch.qids]
    docs = [recipe.data.corpus.texts[r] for r in batch.doc_rows]
    with torch.no_grad():
        got = recipe.loss(batch).item()
    s = torch.from_numpy(recipe.model.encode(queries, "query") @ recipe.model.encode(docs, "document").T)
    q_tokens = recipe.teacher.encode_tokens(queries, "query")
    d_tokens = recipe.teacher.encode_tokens(docs, "document")
    t = torch.tensor([[float((q.astype(np.float32) @ d.astype(np.float32).T).max(1).sum()) for d in d_tokens]
                      for q in q_tokens])
    qrels = read_qrels(toy / "qrels" / "train.tsv")
    docids = [recipe.data.corpus.docids[r] for r in batch.doc_rows]
    ce = []
    for row, qid in enumerate(batch.qids):
        own = int(batch.positives[row])
        keep = [c for c in range(len(docids)) if c == own or qrels[qid].get(docids[c], 0) < 1]
        ce.append(-F.log_softmax(s[row, keep], 0)[keep.index(own)])
    p_teacher = F.softmax(t / 0.5, 1)
    kl = (p_teacher * (p_teacher.log() - F.log_softmax(s / 0.5, 1))).sum(1).mean()
    assert got == pytest.approx(float(0.3 * torch.stack(ce).mean() + 0.7 * kl), rel=2e-3)


# ----- resume, round trips ----------------------------------------------------------------------------

@pytest.mark.parametrize("recipe", ["mebert", "colbert", "tct_colbert"])
def test_sigkill_then_resume_gives_the_same_weights(recipe, toy, toy_run, tiny, teacher, tmp_path):
    extra = ["--negatives", str(toy_run), "--negative-depth", "8", "--epochs", "6", "--dev-fraction", "0.2",
             *(["--teacher", str(teacher)] if recipe == "tct_colbert" else [])]
    reference = tmp_path / "reference"
    assert train_main(argv(recipe, toy, tiny, reference, *extra)) == 0

    out = tmp_path / "resumed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    work = partial_dir(out)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CLI, *argv(recipe, toy, tiny, out, *extra)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(work.glob("ckpt-000000[6-9]")):
        assert proc.poll() is None, f"training ended before it could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(np.random.default_rng().uniform(0, 0.3))
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL and not out.exists()

    done = subprocess.run([sys.executable, "-m", "pyserini_dense_ext.train", *argv(recipe, toy, tiny, out, *extra)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from ckpt-" in done.stderr and not work.exists()
    for name, tensor in weights(reference).items():
        assert torch.equal(weights(out)[name], tensor), name
    extra_file = {"mebert": "projection.safetensors", "colbert": LINEAR_FILE}.get(recipe)
    if extra_file:  # the family's own weights too
        from safetensors.torch import load_file

        for name, tensor in load_file(str(reference / extra_file)).items():
            assert torch.equal(load_file(str(out / extra_file))[name], tensor), name
    assert log_rows(out) == log_rows(reference)


@pytest.mark.parametrize("recipe", ["mebert", "tct_colbert"])
def test_trained_bi_encoder_round_trips_through_every_command(recipe, toy, tiny, teacher, tmp_path):
    model = tmp_path / "model"
    extra = ["--teacher", str(teacher)] if recipe == "tct_colbert" else []
    assert train_main(argv(recipe, toy, tiny, model, "--epochs", "4", "--dev-fraction", "0", *TOY_OPTIONS[recipe],
                           "--hard-negatives", "0", *extra)) == 0
    assert_round_trip(model, toy, tmp_path)


def test_colbert_dir_reranks_and_is_refused_where_a_bi_encoder_is_needed(toy, teacher, tmp_path, capsys):
    """The rerank command equals MaxSim computed pair by pair; encode and ONNX export say it is late interaction."""
    from pyserini_dense_ext.cli import run_cli
    from pyserini_dense_ext.encode.__main__ import main as encode_main
    from pyserini_dense_ext.onnx import export_onnx
    from pyserini_dense_ext.rerank.__main__ import main as rerank_main

    docids = [json.loads(line)["_id"] for line in (toy / "corpus.jsonl").read_text().splitlines()]
    first = tmp_path / "first.trec"
    first.write_text("".join(f"q{i} Q0 {d} {r + 1} {50 - r} bm25\n" for i in range(len(TOPICS))
                             for r, d in enumerate(np.random.default_rng(i).permutation(docids)[:8])))
    out = tmp_path / "reranked.trec"
    assert rerank_main(["--scorer", "colbert", "--encoder", str(teacher), "--run", str(first), "--corpus",
                        str(toy / "corpus.jsonl"), "--topics", str(toy / "queries.jsonl"), "--depth", "5",
                        "--output", str(out), "--quiet"]) == 0
    got, candidates = read_run(out), read_run(first)
    model = load_model(teacher)
    texts = {json.loads(l)["_id"]: json.loads(l)["text"] for l in (toy / "corpus.jsonl").read_text().splitlines()}
    queries = {json.loads(l)["_id"]: json.loads(l)["text"] for l in (toy / "queries.jsonl").read_text().splitlines()}
    for qid, hits in got.items():
        top5 = [d for d, _ in candidates[qid][:5]]
        assert sorted(d for d, _ in hits) == sorted(top5)
        with torch.no_grad():
            q, _ = model.token_vectors([queries[qid]], "query")
            want = {}
            for d in top5:
                dv, dm = model.token_vectors([texts[d]], "document")
                want[d] = float((q[0] @ dv[0][dm[0].bool()].T).max(1).values.sum())
        np.testing.assert_allclose([s for _, s in hits], [want[d] for d, _ in hits], atol=2e-2)  # fp16 storage
        assert [d for d, _ in hits] == sorted(want, key=lambda d: (-want[d], d)) or \
            np.allclose(sorted(want.values(), reverse=True), [s for _, s in hits], atol=2e-2)

    index = tmp_path / "idx"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(encode_main, ["input", "--corpus", str(toy / "corpus.jsonl"), "encoder", "--encoder", str(teacher),
                              "output", "--index", str(index), "--quiet"])
    assert exit_info.value.code == 2 and "late interaction" in capsys.readouterr().err and not index.exists()
    with pytest.raises(ValueError, match="late interaction"):
        export_onnx(teacher, "query", tmp_path / "t.onnx", check=False)
    assert not (tmp_path / "t.onnx").exists()


# ----- bad input: exit 2, one line, no output -------------------------------------------------------------

def test_teacher_of_the_wrong_family_or_without_weights_is_refused(toy, tiny, teacher, tmp_path, capsys):
    out = tmp_path / "student"
    wrong = tmp_path / "wrong"
    load_model(tiny, family="tct_colbert").save(wrong)
    capsys.readouterr()
    assert cli_code(argv("tct_colbert", toy, tiny, out, "--teacher", str(wrong))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{wrong}: field 'family' is a tct_colbert model; --teacher needs a colbert dir" in err
    assert not out.exists() and not partial_dir(out).exists()

    broken = shutil.copytree(teacher, tmp_path / "broken")
    (broken / LINEAR_FILE).unlink()
    assert cli_code(argv("tct_colbert", toy, tiny, out, "--teacher", str(broken))) == 2
    err = capsys.readouterr().err  # (after transformers' own weight-loading bar)
    assert err.splitlines()[-1].startswith(f"error: {broken / LINEAR_FILE}: field 'projection_dim' is missing")
    assert not out.exists() and not partial_dir(out).exists()
    assert cli_code(argv("tct_colbert", toy, tiny, out)) == 2 and "--teacher: is required" in capsys.readouterr().err


def test_mebert_dir_without_its_projection_is_refused(toy, tiny, tmp_path, capsys):
    """Continuing an ME-BERT dir needs its projection; encoding and reranking with one too."""
    from pyserini_dense_ext.cli import run_cli
    from pyserini_dense_ext.rerank.__main__ import main as rerank_main

    start = tmp_path / "mebert"
    load_model(tiny, family="mebert", strict=False, projection_dim=8).save(start)
    (start / "projection.safetensors").unlink()
    out = tmp_path / "model"
    assert cli_code(argv("debert", toy, start, out)) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # (after transformers' own weight-loading bar)
    assert err.startswith(f"error: {start / 'projection.safetensors'}: field 'projection_dim' is missing")
    assert not out.exists() and not partial_dir(out).exists()
    # a fresh projection from a plain checkpoint is a normal start
    assert train_main(argv("mebert", toy, tiny, out, "--epochs", "1", "--dev-fraction", "0")) == 0
    # a bi-encoder dir is not a ColBERT scorer
    run = tmp_path / "r.trec"
    run.write_text("q0 Q0 d0a 1 1.0 x\n")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(rerank_main, ["--scorer", "colbert", "--encoder", str(out), "--run", str(run), "--corpus",
                              str(toy / "corpus.jsonl"),
                              "--topics", str(toy / "queries.jsonl"), "--output", str(tmp_path / "o.trec")])
    assert exit_info.value.code == 2 and "needs a colbert dir" in capsys.readouterr().err
    assert not (tmp_path / "o.trec").exists()
