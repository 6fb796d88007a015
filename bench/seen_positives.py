"""Where fine-tuning gains come from: test queries whose relevant documents training saw, and the rest.

SciFact's train and test claims cite overlapping abstracts: 196 of the 300 test queries have a
relevant document that is also relevant to a training query. A model fine-tuned on the train
queries can score those documents well by memorising them, which says nothing about a collection it
never saw. This script splits the test queries in two (``seen``: at least one relevant document is
judged relevant for a training query; ``unseen``: none is) and reports each run's metric on both,
so a training table can say which part of a gain generalises.

    python bench/seen_positives.py --run base=repro/output/steps/scifact-tune/runs/dense.eval.trec \\
        --run ME-BERT=repro/output/runs/mebert-scifact.trec
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import OUTPUT, default_data  # noqa: E402
from pyserini_dense_ext.eval import evaluate_per_query, mean_metrics  # noqa: E402
from pyserini_dense_ext.io.errors import InputError  # noqa: E402
from pyserini_dense_ext.io.qrels import Qrels, read_qrels  # noqa: E402
from pyserini_dense_ext.io.runs import read_run  # noqa: E402
from pyserini_dense_ext.train.data import positives  # noqa: E402


def split_by_seen(qrels: Qrels, train_qrels: Qrels) -> dict[str, Qrels]:
    """``qrels`` split into queries with a relevant document that training judged relevant, and the rest."""
    seen_docs = {d for judged in train_qrels.values() for d in positives(judged)}
    seen = {q for q, judged in qrels.items() if seen_docs.intersection(positives(judged))}
    return {"seen": {q: j for q, j in qrels.items() if q in seen},
            "unseen": {q: j for q, j in qrels.items() if q not in seen}}


def main(argv: list[str] | None = None) -> dict:
    data = default_data()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=PATH",
                        help="a run file to score, with its label (repeatable)")
    parser.add_argument("--qrels", default=data and f"{data}/qrels/test.tsv", help="judgements scored on")
    parser.add_argument("--train-qrels", default=data and f"{data}/qrels/train.tsv",
                        help="judgements of the queries the models were trained on")
    parser.add_argument("--metric", default="ndcg@10")
    parser.add_argument("--output", default=str(OUTPUT / "seen_positives.json"))
    args = parser.parse_args(argv)
    if not args.qrels or not args.train_qrels:
        parser.error("no SciFact under ../shared/data or $DENSE_EXT_DATA: pass --qrels and --train-qrels")
    try:
        qrels = read_qrels(args.qrels)
        parts = split_by_seen(qrels, read_qrels(args.train_qrels))
        result = {"metric": args.metric, "queries": {name: len(q) for name, q in parts.items()}, "runs": {}}
        print(f"{'run':<28} {'all':>7} " + " ".join(f"{f'{n} ({len(q)})':>13}" for n, q in parts.items()))
        for spec in args.run:
            label, sep, path = spec.partition("=")
            if not sep:
                parser.error(f"--run {spec!r}: expected LABEL=PATH")
            # one evaluation per run; a part's score is the mean of its queries' (trec_eval -c: missing = 0)
            per_query = evaluate_per_query(read_run(path), qrels, [args.metric], complete=True)
            scores = {name: mean_metrics({q: per_query[q] for q in part}, [args.metric])[args.metric]
                      for name, part in (("all", qrels), *parts.items())}
            result["runs"][label] = {"path": path, **scores}
            print(f"{label:<28} {scores['all']:>7.4f} " + " ".join(f"{scores[n]:>13.4f}" for n in parts))
    except (InputError, ValueError) as e:
        parser.error(str(e))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
