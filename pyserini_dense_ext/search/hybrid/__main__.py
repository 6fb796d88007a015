"""``python -m pyserini_dense_ext.search.hybrid dense ... sparse ... fusion ... run ...``: hybrid runs.

The groups mirror ``python -m pyserini.search.hybrid``; ``fusion --method`` adds every method of
``pyserini_dense_ext.fusion`` to Pyserini's min-fill linear one, and the search runs through
the batch path of :class:`~pyserini_dense_ext.search.hybrid.HybridSearcher`. Without ``--method``
the fusion is ``auto`` (the whole run's dense weight estimated without judgements), unless one of
Pyserini's ``--alpha``/``--normalization``/``--weight-on-dense`` is given: then, as in Pyserini,
it is the linear fusion.
"""
from __future__ import annotations

import argparse
import sys
import time

import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from ...cli import fusion_from_args, parse_groups, run_cli
from .options import (METHOD_LIST, dense_group, fusion_group, hybrid_from_groups, rerank_group, reranker_from_group,
                      run_group, sparse_group)

GROUPS = ("dense", "sparse", "fusion", "run", "rerank")
EXAMPLE = """examples (SciFact, MiniLM + BM25):
  # the default fusion, auto, needs no judged queries; this run scores nDCG@10 0.7397 on test
  python -m pyserini_dense_ext.search.hybrid \\
    dense  --index indexes/scifact-minilm --encoder MODEL_DIR --family repbert --pooling mean --l2-norm \\
           --query-max-length 256 --doc-segment-id 0 \\
    sparse --index indexes/scifact-bm25 --k1 0.9 --b 0.4 \\
    run    --topics ../shared/data/scifact/queries.jsonl --qids-from ../shared/data/scifact/qrels/test.tsv \\
           --output runs/scifact.hybrid.trec --hits 1000 --threads 2

  # Pyserini's linear fusion with centred scores, alpha 1 as python -m pyserini_dense_ext.tune picks it
  # on the train queries; this run scores nDCG@10 0.7320 on test
  python -m pyserini_dense_ext.search.hybrid \\
    dense  --index indexes/scifact-minilm --encoder MODEL_DIR --family repbert --pooling mean --l2-norm \\
           --query-max-length 256 --doc-segment-id 0 \\
    sparse --index indexes/scifact-bm25 --k1 0.9 --b 0.4 \\
    fusion --method linear --alpha 1 --normalization centred --hits 1000 \\
    run    --topics ../shared/data/scifact/queries.jsonl --qids-from ../shared/data/scifact/qrels/test.tsv \\
           --output runs/scifact.hybrid.trec --hits 1000 --threads 2

  # CODER: a group "rerank --encoder CODER_DIR" re-scores each fused list against the dense index's
  # stored vectors (docs/coder.md); with run --max-passage, each fused document by its best passage

fusion """ + METHOD_LIST


def parsers() -> dict[str, argparse.ArgumentParser]:
    top = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.search.hybrid",
                                  description="Hybrid sparse + dense search written as a TREC (or MS MARCO) run. "
                                              "Arguments come in groups: dense, sparse, fusion, run and "
                                              "rerank (fusion and rerank are optional; run a group with "
                                              "--help for its options).",
                                  epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("groups", nargs="*", metavar="{dense,sparse,fusion,run,rerank}",
                     help="argument groups, in any order")
    return {"": top, "dense": dense_group(), "sparse": sparse_group(), "fusion": fusion_group(), "run": run_group(),
            "rerank": rerank_group()}


def main(argv: list[str] | None = None) -> int:
    args = parse_groups(parsers(), sys.argv[1:] if argv is None else argv, GROUPS, optional=("fusion", "rerank"),
                        help_if_empty=True)
    return hybrid_search(**args)


def hybrid_search(dense: argparse.Namespace, sparse: argparse.Namespace, fusion: argparse.Namespace,
                  run: argparse.Namespace, rerank: argparse.Namespace | None = None) -> int:
    from ...io.qrels import read_qrels
    from ...io.runs import write_run
    from ...index.lucene import LuceneRecord
    from ...io.topics import read_topics
    from ..maxp import warn_unless_max_passage

    from . import unnamed_method

    if fusion.method is None:
        fusion.method = unnamed_method(fusion.alpha, fusion.normalization, fusion.weight_on_dense)
    chosen = fusion_from_args(fusion)  # checked once, before anything slow: a wrong flag fails at once
    if min(fusion.hits, run.hits, run.batch_size, run.threads) < 1:
        raise ValueError("--hits, --batch-size and --threads must be positive")
    if run.max_passage_hits < 1:
        raise ValueError("--max-passage-hits must be positive")
    qids = set(read_qrels(run.qids_from)) if run.qids_from else None
    topics = read_topics(run.topics, qids)
    delimiter = run.max_passage_delimiter if run.max_passage else None
    hybrid = hybrid_from_groups(dense, sparse, delimiter)
    warn_unless_max_passage(run.max_passage, hybrid.dense_searcher, dense.index)
    warn_unless_max_passage(run.max_passage, LuceneRecord.of(sparse.index), sparse.index)
    reranker = (reranker_from_group(rerank, dense, progress=not run.quiet, max_passage_delimiter=delimiter)
                if rerank is not None else None)
    start = time.perf_counter()
    written = run.max_passage_hits if run.max_passage else run.hits
    fused = hybrid.search_run(topics, k0=fusion.hits, k=written, threads=run.threads, fusion=chosen,
                              chunk_size=run.batch_size, progress=not run.quiet)
    if reranker is not None:  # with --max-passage, the fused documents by their best passage in the index
        fused = reranker.rerank_run(topics, fused, rerank.depth, written, progress=not run.quiet)
        hybrid.timings.update({f"rerank {k}": v for k, v in reranker.timings.items()})
    elapsed = time.perf_counter() - start
    write_run(run.output, fused, tag=run.run_tag or f"hybrid-{fusion.method}", fmt=run.output_format)
    used = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in hybrid.fusion_params.items())
    print(f"wrote {run.output}: {len(fused)} queries fused with {fusion.method}" + (f" ({used})" if used else "")
          + f", {len(fused) / elapsed:.1f} queries/s ({', '.join(f'{k} {v:.2f}s' for k, v in hybrid.timings.items())})")
    return 0


if __name__ == "__main__":
    run_cli(main)
