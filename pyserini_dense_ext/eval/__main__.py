"""``python -m pyserini_dense_ext.eval``: score a run against qrels with trec_eval's numbers, no Java needed."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from ..cli import run_cli
from ..io import InputError, read_qrels, read_run
from .metrics import DEFAULT_METRICS, Metric, evaluate_per_query, mean_metrics, parse_metric


def _metric(name: str) -> Metric:
    """argparse shows only an ArgumentTypeError's own message, so re-raise the parser's reason as one."""
    try:
        return parse_metric(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pyserini_dense_ext.eval",
        description="Evaluate a run against relevance judgements. Values equal trec_eval's: hits are re-sorted "
                    "by score (float32) descending with ties by docid descending, a doc is relevant at grade >= 1, "
                    "and queries are averaged over those with both hits and judgements (see --complete).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="metric equivalents: ndcg@k = ndcg_cut.k, mrr@k = recip_rank with -M k, recall@k = recall.k,\n"
               "  map = map, map@k = map_cut.k, p@k = P.k\n\n"
               "example:\n  python -m pyserini_dense_ext.eval --run runs/scifact.minilm.trec \\\n"
               "    --qrels ../shared/data/scifact/qrels/test.tsv --metrics ndcg@10 recall@100 --per-query")
    parser.add_argument("--run", required=True, help="run file: TREC (qid Q0 docid rank score tag) or "
                                                     "MS MARCO (qid docid rank, scored 1/rank)")
    parser.add_argument("--qrels", required=True, help="judgements: TREC (qid 0 docid grade) or BEIR TSV "
                                                       "(query-id corpus-id score, with header)")
    parser.add_argument("--metrics", nargs="+", type=_metric, default=[parse_metric(m) for m in DEFAULT_METRICS],
                        metavar="METRIC", help="ndcg@k, mrr@k, recall@k, map, map@k, p@k "
                                               f"(default: {' '.join(DEFAULT_METRICS)})")
    parser.add_argument("--per-query", action="store_true", help="also print each query's values")
    parser.add_argument("--complete", action="store_true",
                        help="like trec_eval -c: average over every judged query, those missing from the run as 0")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def format_table(means: dict[str, float], num_queries: int,
                 per_query: dict[str, dict[str, float]] | None = None) -> str:
    """A fixed-width table: one row per query (if given), then the ``all`` row and the query count."""
    names = list(means)
    width = max([8, *(len(q) for q in per_query or ())])
    cols = [max(len(n), 6) for n in names]
    lines = ["query".ljust(width) + "".join(f"  {n:>{c}}" for n, c in zip(names, cols))]
    for qid, values in (per_query or {}).items():
        lines.append(qid.ljust(width) + "".join(f"  {values[n]:>{c}.4f}" for n, c in zip(names, cols)))
    lines.append("all".ljust(width) + "".join(f"  {means[n]:>{c}.4f}" for n, c in zip(names, cols)))
    lines.append(f"{num_queries} queries evaluated")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    metrics: list[Metric] = list(dict.fromkeys(args.metrics))
    try:
        qrels = read_qrels(args.qrels)
        run = read_run(args.run)
        per_query = evaluate_per_query(run, qrels, metrics, complete=args.complete)
    except (InputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    unjudged = sum(1 for q in run if q not in qrels)
    if unjudged:
        print(f"note: {unjudged} run queries have no judgements and are ignored", file=sys.stderr)
    means = mean_metrics(per_query, metrics)
    if args.json:
        out = {"num_queries": len(per_query), "metrics": means}
        if args.per_query:
            out["per_query"] = per_query
        print(json.dumps(out, indent=2))
    else:
        print(format_table(means, len(per_query), per_query if args.per_query else None))
    return 0


if __name__ == "__main__":
    run_cli(main)
