"""RepBERT recipe on SciFact from all-MiniLM-L6-v2: train on the train queries, score the test queries.

Stages (each reuses what an earlier run left in bench/output/train/):

1. ``runs``: the top 100 of BM25 (Pyserini Lucene, k1=0.9, b=0.4) and of the base MiniLM for the
   809 train queries: hard negatives and dev candidates. Nothing here sees a test query.
2. ``train``: ``python -m pyserini_dense_ext.train repbert`` with the options below (chosen on the
   dev split held out from the train queries), timed as a whole command.
3. ``test``: ``python -m pyserini_dense_ext.encode``, ``search`` and ``eval`` with the trained dir
   and no encoder flag, on the 300 test queries; the base model's row comes from the same commands.

    python bench/train_scifact.py                       # all stages; writes bench/output/train_scifact.json
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
# Chosen on the dev split (82 of the 809 train queries); see docs/training.md for the trials.
TRAIN = ["--l2-norm", "--query-segment-id", "0", "--doc-segment-id", "0", "--query-max-length", "256",
         "--doc-max-length", "256", "--negatives", "{runs}/bm25.train.trec", "--negative-depth", "100",
         "--eval-candidates", "{runs}/minilm.train.trec", "--eval-depth", "20", "--batch-size", "32",
         "--gradient-accumulation", "1", "--learning-rate", "2e-5", "--epochs", "2", "--score-scale", "20",
         "--eval-steps", "25", "--save-steps", "25", "--eval-batch-size", "32"]
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
    """BM25 and base-MiniLM top 100 for the train queries (hard negatives and dev candidates)."""
    runs = WORK / "runs"
    bm25_index, dense_index = WORK / "scifact-bm25", WORK / "scifact-minilm"
    py = sys.executable
    if not bm25_index.exists():
        sh([py, "-m", "pyserini_dense_ext.index.lucene", "--corpus", str(data / "corpus.jsonl"), "--index",
            str(bm25_index)])
    if not dense_index.exists():
        sh([py, "-m", "pyserini_dense_ext.encode", "input", "--corpus", str(data / "corpus.jsonl"), "encoder",
            "--encoder", model, *BASE, "output", "--index", str(dense_index)])
    if not (runs / "bm25.train.trec").is_file():
        from pyserini.search.lucene import LuceneSearcher

        from pyserini_dense_ext.io import read_qrels, read_topics, write_run

        topics = read_topics(data / "queries.jsonl", set(read_qrels(data / "qrels" / "train.tsv")))
        searcher = LuceneSearcher(str(bm25_index))
        searcher.set_bm25(0.9, 0.4)
        hits = searcher.batch_search(list(topics.values()), list(topics), k=100, threads=2)
        write_run(runs / "bm25.train.trec", {q: [(h.docid, h.score) for h in hits[q]] for q in topics}, tag="bm25")
    if not (runs / "minilm.train.trec").is_file():
        sh([py, "-m", "pyserini_dense_ext.search", "--index", str(dense_index), "--encoder", model, *BASE,
            "--topics", str(data / "queries.jsonl"), "--qids-from", str(data / "qrels" / "train.tsv"),
            "--hits", "100", "--output", str(runs / "minilm.train.trec"), "--quiet"])
    return runs


def train_stage(data: Path, model: str, runs: Path, name: str, extra: list[str]) -> tuple[Path, float, list[str]]:
    out = WORK / "models" / name
    cmd = [sys.executable, "-m", "pyserini_dense_ext.train", "repbert", "--model", model, "--data", str(data),
           *[a.format(runs=runs) for a in TRAIN], *extra, "--output", str(out), "--quiet"]
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
    sh([py, "-m", "pyserini_dense_ext.search", "--index", str(index), "--encoder", encoder, *flags, "--topics",
        str(data / "queries.jsonl"), "--qids-from", str(data / "qrels" / "test.tsv"), "--hits", "1000",
        "--output", str(run), "--quiet"])
    from pyserini_dense_ext.eval import evaluate
    from pyserini_dense_ext.io import read_qrels, read_run

    return evaluate(read_run(run), read_qrels(data / "qrels" / "test.tsv"), METRICS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=default_model(), help="MiniLM dir (default: the demo extra's)")
    parser.add_argument("--data", default=default_data(), help="SciFact in BEIR layout (default: ../shared/data)")
    parser.add_argument("--stage", choices=("runs", "train", "test", "all"), default="all")
    parser.add_argument("--name", default="repbert", help="name of the trained model under bench/output/train/models")
    parser.add_argument("extra", nargs="*", help="after --: more train options (they win over the defaults above)")
    args = parser.parse_args()
    if not args.model or not args.data:
        parser.error("MiniLM (demo extra) and SciFact (DENSE_EXT_DATA or ../shared/data) are needed")
    data = Path(args.data)
    runs = runs_stage(data, args.model)
    if args.stage == "runs":
        return
    out, seconds, cmd = train_stage(data, args.model, runs, args.name, args.extra)
    record = json.loads((out / "training.json").read_text())
    print(f"trained in {seconds:.0f} s; kept step {record['kept_step']} of {record['steps']}; dev {record['dev_at_kept_step']}"
          f" (start {record['dev_at_start']})")
    if args.stage == "train":
        return
    result = {"command": " ".join(cmd), "train_wall_seconds": round(seconds, 1), "training": record,
              "test": {"base MiniLM": test_stage(data, args.model, "base", BASE, WORK / "scifact-minilm"),
                       f"RepBERT recipe ({args.name})": test_stage(data, str(out), args.name, [])},
              "machine": machine()}
    print(json.dumps(result["test"], indent=2))
    print(f"wrote {write_json(f'train_scifact.{args.name}.json', result)}")


if __name__ == "__main__":
    main()
