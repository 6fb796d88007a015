"""``python -m pyserini_dense_ext.search``: batch dense search of a topic file, written as a run.

Like ``python -m pyserini.search.faiss`` but all queries are encoded in batches and searched with
one FAISS call per chunk; ME-BERT indexes return k distinct documents scored by their best row.
"""
from __future__ import annotations

import argparse
import time

import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from ..cli import (add_encoder_options, add_max_passage_options, add_query_backend_options, add_run_output_options,
                   encoder_overrides, run_cli)

EXAMPLE = """example (MODEL_DIR is all-MiniLM-L6-v2, a plain Hugging Face dir, so its recipe is given as flags):
  python -m pyserini_dense_ext.search --index indexes/scifact-minilm --encoder MODEL_DIR \\
    --family repbert --pooling mean --l2-norm --query-max-length 256 --doc-segment-id 0 \\
    --topics ../shared/data/scifact/queries.jsonl --qids-from ../shared/data/scifact/qrels/test.tsv \\
    --output runs/scifact.dense.trec --hits 1000

an index of passages (encode ... --passages 64 32), documents ranked by their best passage:
  python -m pyserini_dense_ext.search --index indexes/scifact-minilm-maxp --encoder MODEL_DIR \\
    --topics ../shared/data/scifact/queries.jsonl --qids-from ../shared/data/scifact/qrels/test.tsv \\
    --output runs/scifact.maxp.trec --hits 10000 --max-passage --max-passage-hits 1000
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.search", epilog=EXAMPLE,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Search a FAISS index dir (ours or Pyserini's) with a query encoder "
                                            "and write a TREC or MS MARCO run file.")
    p.add_argument("--index", required=True, nargs="+", metavar="DIR",
                   help="FAISS index dir ('index' + 'docid' files); several shard dirs are searched as one "
                        "(merged top-k, no merged index needed)")
    add_encoder_options(p)
    add_query_backend_options(p)
    p.add_argument("--topics", required=True, help="queries: Pyserini TSV (qid<TAB>text) or BEIR queries.jsonl")
    p.add_argument("--qids-from", metavar="QRELS", default=None,
                   help="search only the queries judged in this qrels file (a BEIR split, say)")
    p.add_argument("--hits", type=int, default=1000,
                   help="documents per query, or passages searched with --max-passage (default 1000; more than "
                        "the index holds gives all of them)")
    add_max_passage_options(p)
    p.add_argument("--threads", type=int, default=None, help="FAISS threads (default: all cores)")
    p.add_argument("--ef-search", type=int, default=None,
                   help="HNSW search beam width (default: the one stored with the index, raised to the rows "
                        "asked for)")
    p.add_argument("--mmap", action="store_true",
                   help="do not load the index: map it from disk while searching (flat and flat-fp16 a window at a "
                        "time, so an index larger than memory can be searched; others via FAISS's mmap)")
    add_run_output_options(p, "dense_ext")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..io.qrels import read_qrels
    from ..io.runs import write_run
    from ..io.topics import read_topics
    from .dense import DenseSearcher
    from .maxp import max_passage_run, warn_unless_max_passage
    from .shards import ShardedSearcher

    qids = set(read_qrels(args.qids_from)) if args.qids_from else None
    topics = read_topics(args.topics, qids)
    searcher_cls, index = (DenseSearcher, args.index[0]) if len(args.index) == 1 else (ShardedSearcher, args.index)
    searcher = searcher_cls(index, args.encoder, family=args.family, device=args.device, ef_search=args.ef_search,
                            batch_size=args.batch_size, mmap=args.mmap, backend=args.backend,
                            precision=args.precision, **encoder_overrides(args))
    warn_unless_max_passage(args.max_passage, searcher, args.index)
    start = time.perf_counter()
    run = searcher.search_run(topics, k=args.hits, threads=args.threads, progress=not args.quiet)
    if args.max_passage:
        run = max_passage_run(run, args.max_passage_hits, args.max_passage_delimiter)
    elapsed = time.perf_counter() - start
    write_run(args.output, run, tag=args.run_tag, fmt=args.output_format)
    print(f"wrote {args.output}: {len(run)} queries, {len(run) / elapsed:.1f} queries/s")
    return 0


if __name__ == "__main__":
    run_cli(main)
