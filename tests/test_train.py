"""The training framework and the RepBERT recipe, on tiny models made here and a toy corpus."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pyserini_dense_ext.encoders import load_model, load_query_encoder
from pyserini_dense_ext.eval import evaluate
from pyserini_dense_ext.io import read_qrels, read_run
from pyserini_dense_ext.train import RECIPES, TrainArgs, load_training_data, rank_by_encoding, train
from pyserini_dense_ext.train.__main__ import main as train_main
from pyserini_dense_ext.train.args import resolve
from pyserini_dense_ext.train.data import split_dev
from pyserini_dense_ext.train.loop import partial_dir
from pyserini_dense_ext.train.pairs import PairArgs
from pyserini_dense_ext.train.recipes.repbert import RepBertRecipe

from conftest import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
TOPICS = ["protein expression cells", "cancer risk gene", "heat flow boundary layer", "shock wave mach number",
          "mice disease treatment", "wing pressure aircraft", "patients study effect", "human cells increased",
          "hello world query", "reduced effects treatment"]


def make_toy(data: Path) -> Path:
    """BEIR layout: two relevant documents per query (the words in two orders), one shared by q0 and q7."""
    docs, queries, qrels = [], [], []
    for i, topic in enumerate(TOPICS):
        words = topic.split()
        docs += [{"_id": f"d{i}a", "title": "", "text": " ".join(words + words[:2])},
                 {"_id": f"d{i}b", "title": "", "text": " ".join(reversed(words))}]
        queries.append({"_id": f"q{i}", "text": " ".join(words[:2])})
        qrels += [f"q{i}\td{i}a\t1", f"q{i}\td{i}b\t1"]
    qrels.append("q7\td0a\t1")  # judged relevant to two queries: in-batch it must count as q7's positive too
    (data / "qrels").mkdir(parents=True)
    write_jsonl(data / "corpus.jsonl", docs)
    write_jsonl(data / "queries.jsonl", queries)
    (data / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    return data


@pytest.fixture()
def toy(tmp_path) -> Path:
    return make_toy(tmp_path / "toy")


@pytest.fixture()
def toy_run(toy, tmp_path) -> Path:
    """A 'BM25' run over every query: all documents, in an order unrelated to relevance."""
    docids = [json.loads(line)["_id"] for line in (toy / "corpus.jsonl").read_text().splitlines()]
    lines = [f"q{i} Q0 {d} {r + 1} {100 - r} bm25\n" for i in range(len(TOPICS))
             for r, d in enumerate(np.random.default_rng(i).permutation(docids))]
    path = tmp_path / "bm25.trec"
    path.write_text("".join(lines))
    return path


def argv(toy: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return ["repbert", "--model", str(model), "--data", str(toy), "--output", str(out), "--epochs", "6",
            "--batch-size", "4", "--gradient-accumulation", "2", "--learning-rate", "1e-3", "--warmup-ratio", "0.1",
            "--eval-steps", "4", "--save-steps", "3", "--quiet", "--no-plot", *extra]


def train_ranking(model, toy: Path) -> float:
    """nDCG@10 of the training queries over the whole toy corpus."""
    args = TrainArgs(model="unused", output="unused", data=str(toy), dev_fraction=0.0)
    data = load_training_data(args)
    queries = {q: data.queries[q] for q in data.train_qrels}
    return evaluate(rank_by_encoding(model, queries, data.corpus, None, 8), data.train_qrels, ["ndcg@10"])["ndcg@10"]


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def log_rows(out: Path) -> list[dict[str, str]]:
    import csv

    with open(out / "train_log.csv", newline="") as f:
        return list(csv.DictReader(f))


# ----- the recipe trains ----------------------------------------------------------------------

def test_loss_falls_and_training_ranking_improves(toy, tiny_bert, tmp_path):
    out = tmp_path / "model"
    assert train_main(argv(toy, tiny_bert, out, "--dev-fraction", "0", "--epochs", "10")) == 0
    losses = [float(r["loss"]) for r in log_rows(out) if r["loss"]]
    assert len(losses) == 10 * 3  # 21 pairs / 4 = 6 batches, 2 per step: 3 steps an epoch
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    before = train_ranking(load_model(tiny_bert, family="repbert"), toy)
    after = train_ranking(load_model(out), toy)
    assert after > before + 0.2 and after > 0.8, (before, after)


def test_batch_targets_are_every_judged_positive_and_negatives_never_are(toy, toy_run, tiny_bert, tmp_path):
    args = TrainArgs(model=str(tiny_bert), output=str(tmp_path / "o"), data=str(toy), dev_fraction=0.0,
                     negatives=str(toy_run), negative_depth=6, batch_size=5)
    recipe = RepBertRecipe(args, PairArgs(hard_negatives=2), torch.device("cpu"))
    recipe.prepare()
    qrels = read_qrels(toy / "qrels" / "train.tsv")
    run = read_run(toy_run)
    shared_seen = False
    for epoch in range(4):
        for batch in recipe.batches(epoch):
            docids = [recipe.data.corpus.docids[r] for r in batch.doc_rows]
            assert len(set(docids)) == len(docids)
            for row, qid in enumerate(batch.qids):
                targets = {c for c in batch.targets[row].tolist() if c >= 0}
                assert targets == {c for c, d in enumerate(docids) if qrels[qid].get(d, 0) >= 1}
                shared_seen |= qid == "q7" and "d0a" in docids
            pairs_positive = {d for q in batch.qids for d in qrels[q]}
            negatives = set(docids) - pairs_positive
            for qid in batch.qids:  # each sampled negative came from some batch query's top 6, unjudged for it
                assert negatives <= {d for q in batch.qids for d, _ in run[q][:6] if qrels[q].get(d, 0) < 1}
    assert shared_seen
    # batches are a pure function of (seed, epoch): the resume guarantee rests on it
    again = [b.doc_rows for b in recipe.batches(2)]
    assert again == [b.doc_rows for b in recipe.batches(2)] != [b.doc_rows for b in recipe.batches(3)]


def test_loss_is_multilabel_margin_over_the_batch(toy, tiny_bert, tmp_path):
    """Re-computed from its definition: sum over (target j, non-target i) of max(0, 1 - s_j + s_i) / C."""
    args = TrainArgs(model=str(tiny_bert), output=str(tmp_path / "o"), data=str(toy), dev_fraction=0.0,
                     batch_size=6)
    recipe = RepBertRecipe(args, PairArgs(score_scale=3.0), torch.device("cpu"))
    recipe.prepare()
    recipe.model.eval()
    batch = recipe.batches(0)[0]
    with torch.no_grad():
        got = recipe.loss(batch).item()
        q = recipe.model.encode([recipe.data.queries[x] for x in batch.qids], "query")
        d = recipe.model.encode([recipe.data.corpus.texts[r] for r in batch.doc_rows], "document")
    scores = 3.0 * q @ d.T
    want = []
    for row in range(len(batch.qids)):
        targets = [c for c in batch.targets[row] if c >= 0]
        others = [c for c in range(scores.shape[1]) if c not in targets]
        want.append(sum(max(0.0, 1 - scores[row, j] + scores[row, i]) for j in targets for i in others) / scores.shape[1])
    assert got == pytest.approx(float(np.mean(want)), rel=1e-4)


def test_saved_dir_encodes_exactly_as_the_trainer(toy, tiny_bert, tmp_path):
    args, options = resolve("repbert", PairArgs, RepBertRecipe.defaults,
                            dict(model=str(tiny_bert), data=str(toy), output=str(tmp_path / "m"), epochs=2,
                                 batch_size=4, learning_rate=1e-3, quiet=True, plot=False))
    result = train(RepBertRecipe, args, options)
    trained = result.recipe.model
    texts = [TOPICS[0], "a much longer text about heat flow in a boundary layer at mach number two", "wing"]
    saved = load_model(result.output)
    assert saved.config == trained.config and saved.config.doc_segment_id == 1
    trained.eval()
    for side in ("query", "document"):
        with torch.no_grad():
            inside = trained.embed(texts, side).numpy()  # the training path (one padded batch)
        np.testing.assert_allclose(saved.encode(texts, side, batch_size=2), inside, atol=1e-5)


def test_trained_dir_round_trips_through_every_command(toy, tiny_bert, tmp_path):
    model = tmp_path / "model"
    assert train_main(argv(toy, tiny_bert, model, "--epochs", "2")) == 0
    assert_round_trip(model, toy, tmp_path)


def assert_round_trip(model: Path, toy: Path, tmp_path: Path) -> None:
    """A trained dir, without flags: encode + search equal the Python searcher, each side's ONNX export encodes
    as the torch model (1e-4) and Pyserini's own search.faiss (through launch) returns the same run."""
    from pyserini_dense_ext.encode.__main__ import main as encode_main
    from pyserini_dense_ext.onnx import export_onnx, load_onnx
    from pyserini_dense_ext.search import DenseSearcher
    from pyserini_dense_ext.search.__main__ import main as search_main
    from test_launch import launch

    index, run = tmp_path / "idx", tmp_path / "run.trec"
    assert encode_main(["input", "--corpus", str(toy / "corpus.jsonl"), "encoder", "--encoder", str(model),
                        "output", "--index", str(index), "--quiet"]) == 0
    assert search_main(["--index", str(index), "--encoder", str(model), "--topics", str(toy / "queries.jsonl"),
                        "--output", str(run), "--hits", "5", "--quiet"]) == 0
    ours = read_run(run)
    queries = {json.loads(l)["_id"]: json.loads(l)["text"] for l in (toy / "queries.jsonl").read_text().splitlines()}
    direct = DenseSearcher(index, load_query_encoder(model)).batch_search(list(queries.values()), list(queries), k=5)
    assert {q: [d for d, _ in hits] for q, hits in ours.items()} == {q: [h.docid for h in direct[q]] for q in queries}

    for side in ("query", "document"):
        path = tmp_path / f"model-{side}.onnx"
        export_onnx(model, side, path, check=False)
        texts = list(queries.values())
        np.testing.assert_allclose(load_onnx(path).encode(texts, side), load_model(model).encode(texts, side),
                                   atol=1e-4)

    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"{q}\t{t}\n" for q, t in queries.items()))
    pyserini_run = tmp_path / "pyserini.trec"
    done = launch("search.faiss", "--index", str(index), "--encoder", str(model), "--topics", str(topics),
                  "--output", str(pyserini_run), "--hits", "5")
    assert done.returncode == 0, done.stderr[-2000:]
    # Pyserini's searcher returns index rows: an ME-BERT document (m rows) can appear more than once, and its
    # first appearance carries its best row's score, which is ours. Folded so, the lists must agree.
    theirs: dict[str, list[tuple[str, float]]] = {}
    for line in pyserini_run.read_text().splitlines():
        qid, _, docid, _, score, _ = line.split()
        if docid not in dict(theirs.setdefault(qid, [])):
            theirs[qid].append((docid, float(score)))
    for qid, hits in ours.items():
        assert [d for d, _ in theirs[qid]] == [d for d, _ in hits[:len(theirs[qid])]]
        np.testing.assert_allclose([s for _, s in theirs[qid]], [s for _, s in hits[:len(theirs[qid])]], atol=1e-4)


# ----- the loop -----------------------------------------------------------------------------

# The train command with each loss call of its recipe (argv[1]) slowed, so a kill lands mid-run.
SLOW_CLI = """
import sys, time
from pyserini_dense_ext.cli import run_cli
from pyserini_dense_ext.train.__main__ import main
from pyserini_dense_ext.train.recipes import RECIPES
recipe = RECIPES[sys.argv[1]]
loss = recipe.loss
def slow(self, batch):
    time.sleep(0.05)
    return loss(self, batch)
recipe.loss = slow
run_cli(main)
"""


def test_sigkill_then_resume_gives_the_same_weights_as_an_uninterrupted_run(toy, toy_run, tiny_bert, tmp_path):
    extra = ("--negatives", str(toy_run), "--negative-depth", "8", "--epochs", "8", "--dev-fraction", "0.2")
    reference = tmp_path / "reference"
    assert train_main(argv(toy, tiny_bert, reference, *extra)) == 0

    out = tmp_path / "resumed"
    cmd = [sys.executable, "-c", SLOW_CLI, *argv(toy, tiny_bert, out, *extra)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    work = partial_dir(out)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(work.glob("ckpt-000000[6-9]")):  # past two checkpoints and a kept best step
        assert proc.poll() is None, f"training ended before it could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(np.random.default_rng().uniform(0, 0.3))  # somewhere in the next steps, maybe mid-checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL and not out.exists() and work.is_dir()

    resume = [sys.executable, "-m", "pyserini_dense_ext.train", *argv(toy, tiny_bert, out, *extra)]
    done = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from ckpt-" in done.stderr
    assert not work.exists()
    got, want = weights(out), weights(reference)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name
    ref_log, got_log = log_rows(reference), log_rows(out)
    assert got_log == ref_log  # the same losses and dev scores, step by step
    record = json.loads((out / "training.json").read_text())
    assert record["resumes"] == 1 and record["kept_step"] == json.loads((reference / "training.json").read_text())[
        "kept_step"]


def test_best_step_is_kept_and_patience_stops(toy, tiny_bert, tmp_path, monkeypatch):
    """Dev scores scripted by step: the output must hold the weights seen at the best evaluation."""
    import pyserini_dense_ext.train.loop as loop

    scripted = iter([0.3, 0.5, 0.9, 0.4, 0.8, 0.7])  # start, then steps 4, 8 (best), 12, 16, 20
    monkeypatch.setattr(loop, "dev_metrics", lambda run, qrels, metrics: {m: next(scripted) for m in metrics[:1]})
    snapshots = {}

    class Probe(RepBertRecipe):
        def dev_run(self):
            snapshots[len(snapshots)] = {k: v.clone() for k, v in self.model.backbone.state_dict().items()}
            return super().dev_run()

    args, options = resolve("repbert", PairArgs, RepBertRecipe.defaults,
                            dict(model=str(tiny_bert), data=str(toy), output=str(tmp_path / "m"), epochs=20,
                                 batch_size=4, gradient_accumulation=1, learning_rate=1e-3, eval_steps=4,
                                 save_steps=5, patience=3, eval_metrics=["ndcg@10"], quiet=True, plot=False))
    result = train(Probe, args, options)
    assert result.stopped_early and result.steps == 20 and result.best_step == 8
    assert result.best_metrics == {"ndcg@10": 0.9} and result.start_metrics == {"ndcg@10": 0.3}
    saved = load_model(result.output).backbone.state_dict()
    for name, tensor in snapshots[2].items():  # the evaluation at step 8
        assert torch.equal(saved[name], tensor), name
    assert not torch.equal(saved["embeddings.word_embeddings.weight"],
                           snapshots[5]["embeddings.word_embeddings.weight"])
    assert [r["ndcg@10"] for r in log_rows(result.output) if r["ndcg@10"]] == ["0.3", "0.5", "0.9", "0.4", "0.8",
                                                                                 "0.7"]


def test_plot_and_provenance_are_written(toy, tiny_bert, tmp_path):
    out = tmp_path / "model"
    assert train_main(argv(toy, tiny_bert, out, "--plot", "--epochs", "2", "--seed", "7")) == 0
    assert (out / "train_log.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((out / "training.json").read_text())
    assert record["seed"] == 7 and record["base_model"]["path"] == str(tiny_bert)
    assert set(record["data"]["files"]) == {"corpus", "queries", "qrels"}
    assert record["data"]["train_queries"] + record["data"]["dev_queries"] == len(TOPICS)
    saved_args = json.loads((out / "training_args.json").read_text())
    assert saved_args["recipe"] == "repbert" and saved_args["seed"] == 7 and saved_args["learning_rate"] == 1e-3
    # training_args.json is a valid --config: the same run again, from the file alone
    again = tmp_path / "again"
    assert train_main(["repbert", "--config", str(out / "training_args.json"), "--output", str(again)]) == 0
    for name, tensor in weights(out).items():
        assert torch.equal(weights(again)[name], tensor)


def test_options_come_from_defaults_recipe_config_and_flags_in_that_order(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"learning_rate": 5e-5, "batch_size": 8, "hard_negatives": 2, "seed": 1}))
    args, options = resolve("repbert", PairArgs, RepBertRecipe.defaults,
                            {"model": "m", "output": "o", "data": "d", "seed": 3}, str(config))
    assert (args.learning_rate, args.batch_size, args.seed) == (5e-5, 8, 3)  # config over recipe, flag over config
    assert args.gradient_accumulation == 2 and args.weight_decay == 0.01  # recipe (paper) defaults
    assert args.eval_metrics == ["ndcg@10", "recall@100"] and options.hard_negatives == 2


@pytest.mark.parametrize("content, message", [
    ({"learning_rat": 1e-5}, "field 'learning_rat' unknown option"),
    ({"batch_size": "8"}, "field 'batch_size'"),
    ({"recipe": "mebert"}, "field 'recipe'"),
    ([1, 2], "one JSON object"),
])
def test_bad_config_files_are_named(tmp_path, content, message, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps(content))
    code = cli_code(["repbert", "--config", str(config), "--model", "m", "--data", "d", "--output", str(tmp_path / "o")])
    assert code == 2 and message in capsys.readouterr().err


def test_dev_split_is_seeded_disjoint_and_complete(toy):
    qrels = read_qrels(toy / "qrels" / "train.tsv")
    train_a, dev_a = split_dev(qrels, 0.3, seed=5)
    train_b, dev_b = split_dev(qrels, 0.3, seed=5)
    assert (train_a, dev_a) == (train_b, dev_b) and len(dev_a) == 3
    assert not set(train_a) & set(dev_a) and {**train_a, **dev_a} == qrels
    assert set(split_dev(qrels, 0.3, seed=6)[1]) != set(dev_a) or set(split_dev(qrels, 0.3, seed=7)[1]) != set(dev_a)


def test_help_lists_recipes_with_an_example(capsys):
    assert "repbert" in RECIPES
    with pytest.raises(SystemExit):
        train_main(["--help"])
    assert "repbert" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        train_main(["repbert", "--help"])
    text = capsys.readouterr().out
    assert "example:" in text and "--hard-negatives" in text and "(default: 3e-06)" in text
    assert "dense-ext-train = pyserini_dense_ext.cli:train" in (ROOT / "setup.cfg").read_text()


# ----- bad input: exit 2, one line naming file, line and field, no output dir -----------------------

def cli_code(args: list[str]) -> int:
    from pyserini_dense_ext.cli import run_cli

    with pytest.raises(SystemExit) as exit_info:
        run_cli(train_main, args)
    return exit_info.value.code


def edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new, 1))


@pytest.mark.parametrize("case", ["qrels_unknown_doc", "qrels_query_without_text", "empty_query_text",
                                  "negatives_unknown_doc", "dev_qrels_overlap", "hard_negatives_without_run",
                                  "eval_candidates_miss_dev_query"])
def test_bad_input_is_one_clear_line_and_no_output(case, toy, toy_run, tiny_bert, tmp_path, capsys):
    out = tmp_path / "model"
    extra: list[str] = []
    qrels = toy / "qrels" / "train.tsv"
    if case == "qrels_unknown_doc":
        edit(qrels, "q3\td3b", "q3\tnot-a-doc")
        wanted = f"{qrels}, line 9: field 'docid' names document 'not-a-doc', which the corpus"
    elif case == "qrels_query_without_text":
        edit(qrels, "q3\td3b", "q99\td3b")
        wanted = f"{qrels}, line 9: field 'qid' names query 'q99', which has no text in"
    elif case == "empty_query_text":
        edit(toy / "queries.jsonl", '"text": "shock wave"', '"text": "  "')
        wanted = f"{toy / 'queries.jsonl'}, line 4: field 'text' query 'q3' has empty text"
    elif case == "negatives_unknown_doc":
        edit(toy_run, "q1 Q0 d", "q1 Q0 xx")
        lineno = next(i for i, l in enumerate(toy_run.read_text().splitlines(), 1) if " xx" in l)
        extra = ["--negatives", str(toy_run)]
        wanted = f"{toy_run}, line {lineno}: field 'docid' names document 'xx"
    elif case == "dev_qrels_overlap":
        edit(qrels, "q9\td9a\t1\nq9\td9b\t1\n", "")
        dev = tmp_path / "dev.tsv"
        dev.write_text("q9 0 d9a 1\nq2 0 d2a 1\n")
        extra = ["--dev-qrels", str(dev)]
        wanted = f"{dev}, line 2: field 'qid' query 'q2' is also a training query"
    elif case == "hard_negatives_without_run":
        extra = ["--hard-negatives", "2"]
        wanted = "--hard-negatives 2 needs --negatives RUN"
    else:
        only_some = tmp_path / "some.trec"
        only_some.write_text("q0 Q0 d0a 1 1.0 x\n")
        extra = ["--eval-candidates", str(only_some), "--dev-fraction", "0.3"]
        wanted = f"{only_some}: field 'qid' has no hits for dev query"
    assert cli_code(argv(toy, tiny_bert, out, *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and wanted in err, err
    assert not out.exists() and not partial_dir(out).exists()


def test_existing_output_and_other_arguments_for_a_partial_run_are_refused(toy, tiny_bert, tmp_path, capsys):
    out = tmp_path / "model"
    out.mkdir()
    assert cli_code(argv(toy, tiny_bert, out)) == 2 and "--overwrite" in capsys.readouterr().err
    out.rmdir()
    partial_dir(out).mkdir()
    (partial_dir(out) / "fingerprint.json").write_text(json.dumps({"args": {"seed": 0}}))
    assert cli_code(argv(toy, tiny_bert, out)) == 2
    assert "partial training run with other arguments" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("family", ["repbert", "mebert"])
def test_dev_ranking_by_encoding_equals_searching_an_index_of_the_same_model(family, tiny_family_dirs, toy, tmp_path):
    """Re-encoding candidates (RepBERT-style recipes) and searching a fixed flat index (CODER-style) agree
    when the documents are the model's own, ME-BERT's max over m included."""
    from pyserini_dense_ext.index.encode import encode_corpus
    from pyserini_dense_ext.io import read_corpus
    from pyserini_dense_ext.train import rank_with_index

    model = load_model(tiny_family_dirs[family])
    index = encode_corpus(read_corpus(toy / "corpus.jsonl"), model, tmp_path / "idx", {"m": family}, progress=False)
    data = load_training_data(TrainArgs(model="unused", output="unused", data=str(toy), dev_fraction=0.0))
    queries = {q: data.queries[q] for q in data.train_qrels}
    encoded = rank_by_encoding(model, queries, data.corpus, None, 8)
    searched = rank_with_index(model, queries, index, 8)
    for qid in queries:  # the toy corpus is under the depth: both score every document (order may differ in ties)
        a, b = dict(encoded[qid]), dict(searched[qid])
        assert a.keys() == b.keys() == set(data.corpus.docids)
        np.testing.assert_allclose([a[d] for d in a], [b[d] for d in a], rtol=1e-5, atol=1e-5)
    subset = {q: [0, 3, 5] for q in queries}  # candidates: only those rows are scored
    rescored = rank_by_encoding(model, queries, data.corpus, subset, 8)
    assert all(sorted(d for d, _ in rescored[q]) == sorted(data.corpus.docids[r] for r in (0, 3, 5)) for q in queries)


def test_schedule_warms_up_linearly_then_decays_to_zero():
    from pyserini_dense_ext.train.loop import linear_schedule

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    schedule = linear_schedule(optimizer, warmup=4, total=12)
    seen = []
    for _ in range(12):
        seen.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert seen == pytest.approx([1 / 5, 2 / 5, 3 / 5, 4 / 5, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])


def test_autocast_is_for_cuda_only():
    from pyserini_dense_ext.train.loop import autocast_dtype

    assert autocast_dtype("auto", torch.device("cpu")) is None and autocast_dtype("fp32", torch.device("cpu")) is None
    with pytest.raises(ValueError, match="CUDA only"):
        autocast_dtype("bf16", torch.device("cpu"))


def test_no_weight_decay_on_biases_and_layer_norms(tiny_bert):
    from pyserini_dense_ext.train.loop import param_groups

    model = load_model(tiny_bert, family="repbert")
    decayed, plain = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert all(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)] for p in plain["params"])
    assert all(names[id(p)].endswith("weight") and "LayerNorm" not in names[id(p)] for p in decayed["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(names)
