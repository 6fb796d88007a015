"""``python -m pyserini_dense_ext.rerank``: rerank a first-stage run (BM25, dense, hybrid) with a scorer.

``--scorer colbert``: a ColBERT model dir (``python -m pyserini_dense_ext.train colbert``) re-scores
each query's top ``--depth`` candidates by MaxSim; the candidate documents are encoded from
``--corpus`` (each once), so no index is needed and its quality is visible on its own.
"""
from __future__ import annotations

import argparse

import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from ..cli import run_cli
from ..io.runs import FORMATS

SCORERS = ("colbert",)
EXAMPLE = """example (SciFact: BM25's top 100 of the test queries reranked by a ColBERT teacher trained here):
  python -m pyserini_dense_ext.rerank --scorer colbert --encoder models/colbert-scifact \\
    --run runs/scifact.bm25.test.trec --corpus ../shared/data/scifact/corpus.jsonl \\
    --topics ../shared/data/scifact/queries.jsonl \\
    --qids-from ../shared/data/scifact/qrels/test.tsv --depth 100 --output runs/scifact.bm25.colbert.trec
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.rerank", epilog=EXAMPLE,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Re-score each query's first-stage candidates with a scorer and write "
                                            "the reranked run.")
    p.add_argument("--scorer", choices=SCORERS, default="colbert",
                   help="colbert: MaxSim of a ColBERT model's token vectors (default)")
    p.add_argument("--run", required=True, help="first-stage run: TREC (6 columns) or MS MARCO (qid docid rank)")
    p.add_argument("--encoder", required=True, metavar="DIR", help="the scorer's model dir (colbert: a colbert dir)")
    p.add_argument("--corpus", required=True, help="documents of the run: JsonCollection dir/file or BEIR corpus.jsonl")
    p.add_argument("--topics", required=True, help="query texts: Pyserini TSV (qid<TAB>text) or BEIR queries.jsonl")
    p.add_argument("--qids-from", metavar="QRELS", default=None, help="rerank only the queries judged here")
    p.add_argument("--depth", type=int, default=100, metavar="N", help="candidates per query (default 100)")
    p.add_argument("--hits", type=int, default=None, metavar="K", help="hits written per query (default: --depth)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="texts per forward pass (default 32)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--output", required=True, help="run file to write (atomically)")
    p.add_argument("--output-format", choices=FORMATS, default="trec", help="run format (default trec)")
    p.add_argument("--run-tag", default="dense_ext-rerank", help="last column of TREC lines")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..encoders import load_model
    from ..encoders.colbert import ColBertModel, rerank
    from ..io import read_corpus, read_qrels, read_run, read_topics, write_run
    from ..io.errors import InputError

    for flag in ("depth", "hits", "batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be positive, got {value}")
    model = load_model(args.encoder, device=args.device)
    if not isinstance(model, ColBertModel):
        raise InputError(args.encoder, f"is a {model.config.family} model; --scorer colbert needs a colbert dir",
                         field="family")
    texts = {d.docid: d.contents for d in read_corpus(args.corpus)}
    run = read_run(args.run, docids=texts, docid_source=f"the corpus {args.corpus}")
    qids = set(read_qrels(args.qids_from)) if args.qids_from else None
    topics = read_topics(args.topics, qids)
    if qids is not None:
        run = {q: hits for q, hits in run.items() if q in qids}
    missing = [q for q in run if q not in topics]
    if missing:
        raise InputError(args.run, f"{len(missing)} queries have no text in {args.topics}, e.g. {missing[:3]} "
                                   "(--qids-from limits the queries)", field="qid")
    candidates = {q: [d for d, _ in hits[:args.depth]] for q, hits in run.items()}
    reranked = rerank(model, {q: topics[q] for q in run}, candidates, texts, args.batch_size, not args.quiet)
    hits = args.hits or args.depth
    write_run(args.output, {q: ranking[:hits] for q, ranking in reranked.items()}, tag=args.run_tag,
              fmt=args.output_format)
    print(f"wrote {args.output}: {len(reranked)} queries, top {args.depth} of each reranked by {args.scorer}")
    return 0


if __name__ == "__main__":
    run_cli(main)
