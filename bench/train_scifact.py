"""Training recipes on SciFact from all-MiniLM-L6-v2: train on the train queries, score the test queries.

Stages (each reuses what an earlier run left in bench/output/train/):

1. ``runs``: the top 100 of BM25 (Pyserini Lucene, k1=0.9, b=0.4) and of the base MiniLM for the
   809 train queries (hard negatives and dev candidates; nothing here sees a test query), and BM25's
   top 1000 for the 300 test queries (what the ColBERT teacher reranks).
2. ``train``: ``python -m pyserini_dense_ext.train RECIPE`` with the options below, timed as a whole
   command (the wall time of the recipe on this machine).
3. ``test``: a bi-encoder is scored with ``python -m pyserini_dense_ext.encode``, ``search`` and
   ``eval`` on the 300 test queries (trained dir, no encoder flag) and in a hybrid with BM25 at the
   default fusion (``search.hybrid`` without a fusion group); the ColBERT teacher reranks the top 100
   of BM25 and of the base dense run (``python -m pyserini_dense_ext.rerank --scorer colbert``), each
   fused with BM25 by the same default (``fusion --method auto``).

    python bench/train_scifact.py                       # RepBERT, all stages: bench/output/train_scifact.repbert.json
    python bench/train_scifact.py --recipe colbert --name colbert
    python bench/train_scifact.py --recipe tct_colbert --name tct -- --teacher bench/output/train/models/colbert
    python bench/train_scifact.py --recipe debert --name debert
    python bench/train_scifact.py --recipe mebert --name mebert -- --model bench/output/train/models/debert
    python bench/train_scifact.py --stage train --name lr5e-5 -- --learning-rate 5e-5   # a dev trial
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import OUTPUT, ROOT, default_data, default_model, machine, write_json

WORK = OUTPUT / "train"
# The MiniLM checkpoint's own settings (see encoders/presets.py): one segment, mean pooling, L2, 256 tokens.
BASE = ["--family", "repbert", "--pooling", "mean", "--l2-norm", "--query-segment-id", "0", "--doc-segment-id", "0",
        "--query-max-length", "256", "--doc-max-length", "256"]
# Chosen on the dev split (81 of the 809 train queries); see docs/training.md for the trials.
TRAIN = ["--l2-norm", "--query-segment-id", "0", "--doc-segment-id", "0", "--query-max-length", "256",
         "--doc-max-length", "256", "--negatives", "{runs}/bm25.train.trec", "--negative-depth", "100",
         "--eval-candidates", "{runs}/minilm.train.trec", "--eval-depth", "20", "--batch-size", "32",
         "--gradient-accumulation", "1", "--learning-rate", "2e-5", "--epochs", "2", "--score-scale", "20",
         "--eval-steps", "25", "--save-steps", "25", "--eval-batch-size", "32"]
# The other recipes: one epoch, documents cut at 192 tokens, one BM25 hard negative per pair (32 pairs a
# batch), evaluated on the dev split at the end; the 2-core budget allowed no dev sweep for them.
SHORT = ["--negatives", "{runs}/bm25.train.trec", "--negative-depth", "100", "--hard-negatives", "1",
         "--eval-candidates", "{runs}/minilm.train.trec", "--eval-depth", "20", "--batch-size", "32",
         "--gradient-accumulation", "1", "--learning-rate", "2e-5", "--epochs", "1", "--eval-steps", "0",
         "--save-steps", "10", "--eval-batch-size", "32", "--doc-max-length", "192"]
# ME-BERT and DE-BERT start from vectors MiniLM never trained as summaries (its first m token vectors; one
# epoch at 2e-5 left dev nDCG@10 still rising): 3 epochs at 5e-5, evaluated every half epoch, best kept.
LONGER = ["--learning-rate", "5e-5", "--epochs", "3", "--eval-steps", "13", "--save-steps", "13"]
# MiniLM's cosine vectors, at the score scale chosen on dev for the RepBERT recipe
MINILM_SIDE = ["--l2-norm", "--pooling", "mean", "--score-scale", "20"]
RECIPE_TRAIN = {
    "repbert": TRAIN,
    "repbert-short": [*SHORT, *MINILM_SIDE, "--query-segment-id", "0", "--doc-segment-id", "1",
                      "--query-max-length", "256"],  # the TCT student's data and steps, RepBERT's loss
    # from the DE-BERT model (pass its dir: -- --model bench/output/train/models/debert); chosen on dev over
    # MiniLM at 256 and 192 tokens. Patience ends the run after its kept step, the same weights as 3 epochs.
    "mebert": [*SHORT, *MINILM_SIDE, *LONGER, "--num-vectors", "3", "--doc-max-length", "256", "--patience", "2"],
    "debert": [*SHORT, *MINILM_SIDE, *LONGER, "--num-vectors", "1"],
    "colbert": SHORT,
    "tct_colbert": [*SHORT, "--l2-norm", "--score-scale", "20"],
}
METRICS = ["ndcg@10", "recall@100"]


def sh(cmd: list[str], log: Path | None = None) -> float:
    """Run a command (stdout/stderr to ``log`` when given); returns its wall seconds, exits on failure."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    print("$ " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    with open(log, "w") if log else open(os.devnull, "w") as out:
        done = subprocess.run(cmd, env=env, stdout=out if log else None, stderr=subprocess.STDOUT if log else None)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}" + (f"; see {log}" if log else ""))
    return time.perf_counter() - start


def runs_stage(data: Path, model: str) -> Path:
    """BM25 and base-MiniLM top 100 for the train queries (hard negatives, dev candidates), BM25 top 1000 for test."""
    runs = WORK / "runs"
    bm25_index, dense_index = WORK / "scifact-bm25", WORK / "scifact-minilm"
    py = sys.executable
    if not bm25_index.exists():
        sh([py, "-m", "pyserini_dense_ext.index.lucene", "--corpus", str(data / "corpus.jsonl"), "--index",
            str(bm25_index)])
    if not dense_index.exists():
        sh([py, "-m", "pyserini_dense_ext.encode", "input", "--corpus", str(data / "corpus.jsonl"), "encoder",
            "--encoder", model, *BASE, "output", "--index", str(dense_index)])
    for split, depth in (("train", 100), ("test", 1000)):
        if not (runs / f"bm25.{split}.trec").is_file():
            bm25_run(data, bm25_index, split, depth, runs / f"bm25.{split}.trec")
    if not (runs / "minilm.train.trec").is_file():
        sh([py, "-m", "pyserini_dense_ext.search", "--index", str(dense_index), "--encoder", model, *BASE,
            "--topics", str(data / "queries.jsonl"), "--qids-from", str(data / "qrels" / "train.tsv"),
            "--hits", "100", "--output", str(runs / "minilm.train.trec"), "--quiet"])
    return runs


def bm25_run(data: Path, index: Path, split: str, depth: int, out: Path) -> None:
    """Pyserini's BM25 (k1=0.9, b=0.4) top ``depth`` for the queries judged in qrels/<split>.tsv."""
    from pyserini.search.lucene import LuceneSearcher

    from pyserini_dense_ext.io import read_qrels, read_topics, write_run

    topics = read_topics(data / "queries.jsonl", set(read_qrels(data / "qrels" / f"{split}.tsv")))
    searcher = LuceneSearcher(str(index))
    searcher.set_bm25(0.9, 0.4)
    hits = searcher.batch_search(list(topics.values()), list(topics), k=depth, threads=2)
    write_run(out, {q: [(h.docid, h.score) for h in hits[q]] for q in topics}, tag="bm25")


def train_stage(data: Path, model: str, runs: Path, recipe: str, name: str, extra: list[str]
                ) -> tuple[Path, float, list[str]]:
    out = WORK / "models" / name
    command = {"repbert-short": "repbert", "debert": "mebert"}.get(recipe, recipe)
    cmd = [sys.executable, "-m", "pyserini_dense_ext.train", command, "--model", model, "--data", str(data),
           *[a.format(runs=runs) for a in RECIPE_TRAIN[recipe]], *extra, "--output", str(out), "--quiet"]
    if out.exists():
        print(f"reusing {out} (delete it to train again)")
        return out, json.loads((out / "training.json").read_text())["train_seconds"], cmd
    return out, sh(cmd, WORK / f"{name}.train.log"), cmd


def test_stage(data: Path, encoder: str, name: str, flags: list[str], index: Path | None = None) -> dict[str, float]:
    """Encode the corpus (unless ``index`` is given), search the test queries, evaluate: a user's commands."""
    index, run = index or WORK / "indexes" / name, WORK / "runs" / f"{name}.test.trec"
    py = sys.executable
    if not index.exists():
        sh([py, "-m", "pyserini_dense_ext.encode", "input", "--corpus", str(data / "corpus.jsonl"), "encoder",
            "--encoder", encoder, *flags, "output", "--index", str(index)])
    if not run.is_file():
        sh([py, "-m", "pyserini_dense_ext.search", "--index", str(index), "--encoder", encoder, *flags, "--topics",
            str(data / "queries.jsonl"), "--qids-from", str(data / "qrels" / "test.tsv"), "--hits", "1000",
            "--output", str(run), "--quiet"])
    hybrid = WORK / "runs" / f"{name}.hybrid.test.trec"
    if not hybrid.is_file():
        sh([py, "-m", "pyserini_dense_ext.search.hybrid", "dense", "--index", str(index), "--encoder", encoder, *flags,
            "sparse", "--index", str(WORK / "scifact-bm25"), "--k1", "0.9", "--b", "0.4",
            "run", "--topics", str(data / "queries.jsonl"), "--qids-from", str(data / "qrels" / "test.tsv"),
            "--output", str(hybrid), "--hits", "1000", "--threads", "2"])
    return {"dense": score(data, run), "hybrid with BM25": score(data, hybrid)}


def score(data: Path, run: Path) -> dict[str, float]:
    from pyserini_dense_ext.eval import evaluate
    from pyserini_dense_ext.io import read_qrels, read_run

    return evaluate(read_run(run), read_qrels(data / "qrels" / "test.tsv"), METRICS)


def rerank_stage(data: Path, model: Path, name: str) -> dict[str, dict[str, float]]:
    """The ColBERT teacher reranks the top 100 of BM25 and of the base dense run; each fused with BM25."""
    py, runs, out = sys.executable, WORK / "runs", {}
    for first in ("bm25", "base"):
        reranked, fused = runs / f"{name}.{first}.test.trec", runs / f"{name}.{first}.hybrid.test.trec"
        sh([py, "-m", "pyserini_dense_ext.rerank", "--scorer", "colbert", "--encoder", str(model), "--run",
            str(runs / f"{first}.test.trec"), "--corpus", str(data / "corpus.jsonl"), "--topics",
            str(data / "queries.jsonl"), "--qids-from", str(data / "qrels" / "test.tsv"), "--depth", "100",
            "--output", str(reranked), "--quiet"])
        sh([py, "-m", "pyserini_dense_ext.fusion", "--runs", str(runs / "bm25.test.trec"), str(reranked),
            "--method", "auto", "--k", "1000", "--output", str(fused)])
        out[f"reranks {first} top 100"] = score(data, reranked)
        out[f"reranks {first} top 100, hybrid with BM25"] = score(data, fused)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=default_model(), help="MiniLM dir (default: the demo extra's)")
    parser.add_argument("--data", default=default_data(), help="SciFact in BEIR layout (default: ../shared/data)")
    parser.add_argument("--stage", choices=("runs", "train", "test", "all"), default="all")
    parser.add_argument("--recipe", choices=sorted(RECIPE_TRAIN), default="repbert",
                        help="options set above (repbert-short: RepBERT on the other recipes' data and steps; "
                             "debert: mebert with m=1)")
    parser.add_argument("--name", default=None, help="name of the trained model under bench/output/train/models "
                                                     "(default: the recipe)")
    parser.add_argument("extra", nargs="*", help="after --: more train options (they win over the defaults above)")
    args = parser.parse_args()
    if not args.model or not args.data:
        parser.error("MiniLM (demo extra) and SciFact (DENSE_EXT_DATA or ../shared/data) are needed")
    data, name = Path(args.data), args.name or args.recipe
    runs = runs_stage(data, args.model)
    if args.stage == "runs":
        return
    out, seconds, cmd = train_stage(data, args.model, runs, args.recipe, name, args.extra)
    record = json.loads((out / "training.json").read_text())
    print(f"trained in {seconds:.0f} s; kept step {record['kept_step']} of {record['steps']}; "
          f"dev {record['dev_at_kept_step']}"
          f" (start {record['dev_at_start']})")
    if args.stage == "train":
        return
    base = test_stage(data, args.model, "base", BASE, WORK / "scifact-minilm")
    trained = rerank_stage(data, out, name) if args.recipe == "colbert" else test_stage(data, str(out), name, [])
    result = {"command": " ".join(cmd), "train_wall_seconds": round(seconds, 1), "training": record,
              "test": {"base MiniLM": base, f"{args.recipe} ({name})": trained}, "machine": machine()}
    print(json.dumps(result["test"], indent=2))
    print(f"wrote {write_json(f'train_scifact.{name}.json', result)}")


if __name__ == "__main__":
    main()
