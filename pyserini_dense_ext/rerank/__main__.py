"""``python -m pyserini_dense_ext.rerank``: rerank a first-stage run (BM25, dense, hybrid) with a scorer.

``--scorer dense`` (default): the query encoder's vectors against the dense index's stored document
vectors (flat or flat-fp16, read back exactly; ``--vectors`` for others), so nothing is re-encoded
but the queries: CODER's second stage. ``--scorer colbert``: a ColBERT model dir
(``python -m pyserini_dense_ext.train colbert``) re-scores each query's candidates by MaxSim over
token vectors, the candidate documents encoded from ``--corpus`` (each once), no index needed.

``--max-passage`` (dense, an index of passages ``docid#k`` built with ``encode --passages``): a run of
documents is reranked by each document's best passage in the index (MaxP); a run of passages is reranked
as passages, then folded into documents by Pyserini's ``--max-passage`` rule. ``--max-passage-hits``
documents are written per query.
"""
from __future__ import annotations

import argparse
from typing import Any

import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from ..cli import add_encoder_options, add_max_passage_options, add_run_output_options, encoder_overrides, run_cli

SCORERS = ("dense", "colbert")
COLBERT_DEPTH = 100  # MaxSim encodes every candidate: the teacher's depth in TCT-ColBERT
EXAMPLE = """examples (SciFact):
  # BM25's top 1000 reranked by a CODER model trained on MiniLM's vectors
  python -m pyserini_dense_ext.rerank --run runs/scifact.bm25.test.trec --index indexes/scifact-minilm \\
    --encoder models/coder-minilm --topics ../shared/data/scifact/queries.jsonl \\
    --qids-from ../shared/data/scifact/qrels/test.tsv --output runs/scifact.bm25.coder.trec
  # BM25's top 100 reranked by a ColBERT teacher trained here
  python -m pyserini_dense_ext.rerank --scorer colbert --encoder models/colbert-scifact \\
    --run runs/scifact.bm25.test.trec --corpus ../shared/data/scifact/corpus.jsonl \\
    --topics ../shared/data/scifact/queries.jsonl \\
    --qids-from ../shared/data/scifact/qrels/test.tsv --output runs/scifact.bm25.colbert.trec
  # BM25's top 1000 documents reranked by their best passage in a passage index (encode --passages 64 32)
  python -m pyserini_dense_ext.rerank --run runs/scifact.bm25.test.trec --index indexes/scifact-minilm-p64s32 \\
    --encoder MODEL_DIR --topics ../shared/data/scifact/queries.jsonl \\
    --qids-from ../shared/data/scifact/qrels/test.tsv --max-passage --max-passage-hits 1000 \\
    --output runs/scifact.bm25.maxp.trec
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.rerank", epilog=EXAMPLE,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Re-score each query's first-stage candidates and write the reranked run.")
    p.add_argument("--scorer", choices=SCORERS, default="dense",
                   help="dense (default): inner product of the query vector and the documents' stored vectors in "
                        "--index (ME-BERT: max over a document's m rows); colbert: MaxSim of a ColBERT dir's token "
                        "vectors, documents from --corpus")
    p.add_argument("--run", required=True, help="first-stage run: TREC (6 columns) or MS MARCO (qid docid rank)")
    p.add_argument("--index", metavar="DIR", help="dense: FAISS index dir whose vectors score the candidates (flat or "
                                                  "flat-fp16, or see --vectors)")
    p.add_argument("--corpus", help="colbert: documents of the run, JsonCollection dir/file or BEIR corpus.jsonl")
    add_encoder_options(p)
    p.add_argument("--topics", required=True, help="query texts: Pyserini TSV (qid<TAB>text) or BEIR queries.jsonl")
    p.add_argument("--qids-from", metavar="QRELS", default=None, help="rerank only the queries judged here")
    p.add_argument("--depth", type=int, default=None, metavar="N",
                   help=f"candidates taken from each query's list (default: dense all of them, colbert "
                        f"{COLBERT_DEPTH})")
    p.add_argument("--hits", type=int, default=None, metavar="K",
                   help="hits written per query (default: all reranked; with --max-passage, --max-passage-hits)")
    p.add_argument("--vectors", default=None, metavar="NPY",
                   help="dense: document vectors as .npy, rows in the index's row order (needed for PQ/HNSW indexes)")
    p.add_argument("--vectors-cache", default=None, metavar="DIR",
                   help="dense: where the vectors read back from a flat index are kept (default: the index dir)")
    add_max_passage_options(p)
    for action in p._actions:
        if action.dest == "max_passage":
            action.help = ("dense, an index of passages docid#k (encode --passages): rank documents by their best "
                           "passage. A run of documents: each scores the max over all its passages in --index; a "
                           "run of passages (ids docid#k): reranked, then each document kept at its best passage, "
                           "as Pyserini's --max-passage; --max-passage-hits documents are written")
    add_run_output_options(p, "dense_ext-rerank")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    needs = {"dense": "index", "colbert": "corpus"}[args.scorer]
    if getattr(args, needs) is None:
        parser.error(f"--scorer {args.scorer} needs --{needs}")
    for flag in ("depth", "hits", "batch_size", "max_passage_hits"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be positive, got {value}")
    if args.max_passage and args.scorer != "dense":
        parser.error("--max-passage reranks against a dense index of passages: --scorer dense")
    if args.max_passage and args.hits is not None:
        parser.error("with --max-passage, --max-passage-hits says how many documents are written, not --hits")
    from ..io.qrels import read_qrels
    from ..io.topics import read_topics

    qids = set(read_qrels(args.qids_from)) if args.qids_from else None
    topics = read_topics(args.topics, qids)
    rerank = _dense if args.scorer == "dense" else _colbert
    return rerank(args, topics, qids)


def _check_topics(args: argparse.Namespace, run: dict[str, Any], topics: dict[str, str]) -> None:
    from ..io.errors import InputError

    missing = [q for q in run if q not in topics]
    if missing:
        raise InputError(args.run, f"{len(missing)} queries have no text in {args.topics}, e.g. {missing[:3]} "
                                   "(--qids-from limits the queries)", field="qid")


def _dense(args: argparse.Namespace, topics: dict[str, str], qids: set[str] | None) -> int:
    from ..index import DOCID_FILE
    from ..io.errors import InputError
    from ..io.runs import read_run, write_run
    from . import Reranker

    delimiter = args.max_passage_delimiter if args.max_passage else None
    reranker = Reranker(args.index, args.encoder, vectors=args.vectors, vectors_cache=args.vectors_cache,
                        family=args.family, device=args.device, batch_size=args.batch_size,
                        progress=not args.quiet, max_passage_delimiter=delimiter, **encoder_overrides(args))
    docid_file = reranker.vectors.source / DOCID_FILE
    run = read_run(args.run, docids=reranker.known_ids(), docid_source=f"the dense index ({docid_file})",
                   hint=reranker.missing_hint)
    if args.depth is not None:
        vectors, fold = reranker.vectors_for([[d for d, _ in hits[:args.depth]] for hits in run.values()], args.run)
        if args.depth > vectors.num_docs:
            raise InputError(docid_file, f"--depth {args.depth} exceeds the {vectors.num_docs} "
                                         f"{'passages' if fold else 'documents'} of the index", field="depth")
    if qids is None:
        _check_topics(args, run, topics)
    k = args.max_passage_hits if args.max_passage else args.hits
    reranked = reranker.rerank_run(topics, run, args.depth, k, source=args.run, progress=not args.quiet)
    write_run(args.output, reranked, tag=args.run_tag, fmt=args.output_format)
    n = max(len(reranked), 1)
    print(f"wrote {args.output}: {len(reranked)} queries; encoding {1e3 * reranker.timings.get('encode', 0) / n:.2f} "
          f"ms/query, reranking {1e3 * reranker.timings.get('rerank', 0) / n:.2f} ms/query")
    return 0


def _colbert(args: argparse.Namespace, topics: dict[str, str], qids: set[str] | None) -> int:
    from ..encoders import load_model
    from ..encoders.colbert import ColBertModel, rerank
    from ..io import read_corpus, read_run, write_run
    from ..io.errors import InputError

    model = load_model(args.encoder, device=args.device)
    if not isinstance(model, ColBertModel):
        raise InputError(args.encoder, f"is a {model.config.family} model; --scorer colbert needs a colbert dir",
                         field="family")
    texts = {d.docid: d.contents for d in read_corpus(args.corpus)}
    run = read_run(args.run, docids=texts, docid_source=f"the corpus {args.corpus}")
    if qids is not None:
        run = {q: hits for q, hits in run.items() if q in qids}
    _check_topics(args, run, topics)
    depth = args.depth or COLBERT_DEPTH
    candidates = {q: [d for d, _ in hits[:depth]] for q, hits in run.items()}
    reranked = rerank(model, {q: topics[q] for q in run}, candidates, texts, args.batch_size, not args.quiet)
    hits = args.hits or depth
    write_run(args.output, {q: ranking[:hits] for q, ranking in reranked.items()}, tag=args.run_tag,
              fmt=args.output_format)
    print(f"wrote {args.output}: {len(reranked)} queries, top {depth} of each reranked by {args.scorer}")
    return 0


if __name__ == "__main__":
    run_cli(main)
