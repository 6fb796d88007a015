"""``python -m pyserini_dense_ext.rerank``: rerank a first-stage run with a query encoder and fixed document vectors.

The run can come from anywhere (BM25, dense, hybrid); its documents are re-scored against the
dense index's stored vectors (flat or flat-fp16, read back exactly; ``--vectors`` for others),
so nothing is re-encoded but the queries.
"""
from __future__ import annotations

import argparse

import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from ..cli import add_encoder_options, add_run_output_options, encoder_overrides, run_cli

EXAMPLE = """example (SciFact: BM25's top 1000 reranked by a CODER model trained on MiniLM's vectors):
  python -m pyserini_dense_ext.rerank --run runs/scifact.bm25.test.trec --index indexes/scifact-minilm \\
    --encoder models/coder-minilm --topics ../shared/data/scifact/queries.jsonl \\
    --qids-from ../shared/data/scifact/qrels/test.tsv --output runs/scifact.bm25.coder.trec
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.rerank", epilog=EXAMPLE,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Re-score each query's first-stage candidates as the inner product of "
                                            "the query vector and the documents' stored vectors (ME-BERT: max over "
                                            "a document's m rows); write the reranked run.")
    p.add_argument("--run", required=True, help="first-stage run: TREC (6 columns) or MS MARCO (qid docid rank)")
    p.add_argument("--index", required=True, metavar="DIR", help="dense FAISS index dir whose vectors score the "
                                                                 "candidates (flat or flat-fp16, or see --vectors)")
    add_encoder_options(p)
    p.add_argument("--topics", required=True, help="query texts: Pyserini TSV (qid<TAB>text) or BEIR queries.jsonl")
    p.add_argument("--qids-from", metavar="QRELS", default=None, help="rerank only the queries judged here")
    p.add_argument("--depth", type=int, default=None, metavar="N",
                   help="candidates taken from each query's list (default: all of them)")
    p.add_argument("--hits", type=int, default=None, metavar="K", help="hits written per query (default: all)")
    p.add_argument("--vectors", default=None, metavar="NPY",
                   help="document vectors as .npy, rows in the index's row order (needed for PQ/HNSW indexes)")
    p.add_argument("--vectors-cache", default=None, metavar="DIR",
                   help="where the vectors read back from a flat index are kept (default: the index dir)")
    add_run_output_options(p, "dense_ext-rerank")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..index import DOCID_FILE
    from ..io.errors import InputError
    from ..io.qrels import read_qrels
    from ..io.runs import read_run, write_run
    from ..io.topics import read_topics
    from . import Reranker

    for flag in ("depth", "hits", "batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be positive, got {value}")
    qids = set(read_qrels(args.qids_from)) if args.qids_from else None
    topics = read_topics(args.topics, qids)
    reranker = Reranker(args.index, args.encoder, vectors=args.vectors, vectors_cache=args.vectors_cache,
                        family=args.family, device=args.device, batch_size=args.batch_size,
                        progress=not args.quiet, **encoder_overrides(args))
    docid_file = reranker.vectors.source / DOCID_FILE
    if args.depth is not None and args.depth > reranker.vectors.num_docs:
        raise InputError(docid_file, f"--depth {args.depth} exceeds the {reranker.vectors.num_docs} documents of the "
                                     "index", field="depth")
    run = read_run(args.run, docids=reranker.vectors.doc_index, docid_source=f"the dense index ({docid_file})")
    missing = [q for q in run if q not in topics] if qids is None else []
    if missing:
        raise InputError(args.run, f"{len(missing)} queries have no text in {args.topics}, e.g. {missing[:3]} "
                                   "(--qids-from limits the queries)", field="qid")
    reranked = reranker.rerank_run(topics, run, args.depth, args.hits, source=args.run, progress=not args.quiet)
    write_run(args.output, reranked, tag=args.run_tag, fmt=args.output_format)
    n = max(len(reranked), 1)
    print(f"wrote {args.output}: {len(reranked)} queries; encoding {1e3 * reranker.timings.get('encode', 0) / n:.2f} "
          f"ms/query, reranking {1e3 * reranker.timings.get('rerank', 0) / n:.2f} ms/query")
    return 0


if __name__ == "__main__":
    run_cli(main)
