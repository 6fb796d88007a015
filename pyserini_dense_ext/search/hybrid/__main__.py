"""``python -m pyserini_dense_ext.search.hybrid dense ... sparse ... fusion ... run ...``: hybrid runs.

The groups mirror ``python -m pyserini.search.hybrid``; ``fusion --method`` adds every method of
``pyserini_dense_ext.fusion`` to Pyserini's min-fill linear one, and the search runs through
the batch path of :class:`~pyserini_dense_ext.search.hybrid.HybridSearcher`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from ...cli import add_encoder_options, encoder_overrides, parse_groups, run_cli
from ...fuse import add_method_options, method_params
from ...fusion import METHODS
from ...io.runs import FORMATS

GROUPS = ("dense", "sparse", "fusion", "run")
EXAMPLE = """example (SciFact, MiniLM + BM25, alpha tuned with python -m pyserini_dense_ext.tune):
  python -m pyserini_dense_ext.search.hybrid \\
    dense  --index indexes/scifact-minilm --encoder MODEL_DIR --family repbert --pooling mean --l2-norm \\
    sparse --index indexes/scifact-bm25 --k1 0.9 --b 0.4 \\
    fusion --method linear --alpha 0.1 --normalization centred --hits 1000 \\
    run    --topics data/scifact/queries.jsonl --qids-from data/scifact/qrels/test.tsv \\
           --output runs/scifact.hybrid.trec --hits 1000 --threads 2

fusion methods:
""" + "".join(f"  {name:<11}{m.summary}\n" for name, m in METHODS.items())


def parsers() -> dict[str, argparse.ArgumentParser]:
    top = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.search.hybrid",
                                  description="Hybrid sparse + dense search written as a TREC (or MS MARCO) run. "
                                              "Arguments come in four groups: dense, sparse, fusion, run "
                                              "(run a group with --help for its options).",
                                  epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("groups", nargs="*", metavar="{dense,sparse,fusion,run}", help="argument groups, in any order")
    dense = argparse.ArgumentParser(prog="... dense", description="The dense index and its query encoder.")
    dense.add_argument("--index", required=True, help="FAISS index dir ('index' + 'docid'; flat, HNSW or ME-BERT)")
    add_encoder_options(dense)
    dense.add_argument("--ef-search", type=int, default=None, help="HNSW search beam width")
    sparse = argparse.ArgumentParser(prog="... sparse", description="The Lucene index (BM25).")
    sparse.add_argument("--index", required=True, help="Lucene index dir (plain or docT5query-expanded text)")
    sparse.add_argument("--k1", type=float, default=0.9, help="BM25 k1 (default 0.9)")
    sparse.add_argument("--b", type=float, default=0.4, help="BM25 b (default 0.4)")
    sparse.add_argument("--language", default="en", help="analyzer language (default en)")
    methods = "methods:\n" + "".join(f"  {n:<11}{m.summary}\n" for n, m in METHODS.items())
    fusion = argparse.ArgumentParser(prog="... fusion", description="How the two lists are fused.", epilog=methods,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    fusion.add_argument("--method", choices=sorted(METHODS), default="linear", help="fusion method (default linear)")
    add_method_options(fusion, with_method=False)
    # Pyserini's --normalization is a bare flag meaning its centred normalisation; keep that form working.
    for action in fusion._actions:
        if action.dest == "normalization":
            action.nargs, action.const = "?", "centred"
    fusion.add_argument("--hits", type=int, default=1000, help="k0: hits taken from each of dense and sparse "
                                                               "(default 1000)")
    run = argparse.ArgumentParser(prog="... run", description="Topics, output and threads.")
    run.add_argument("--topics", required=True, help="queries: Pyserini TSV (qid<TAB>text) or BEIR queries.jsonl")
    run.add_argument("--qids-from", metavar="QRELS", default=None, help="search only the queries judged here")
    run.add_argument("--hits", type=int, default=1000, help="k: fused hits written per query (default 1000)")
    run.add_argument("--output", required=True, help="run file to write (atomically)")
    run.add_argument("--output-format", choices=FORMATS, default="trec", help="run format (default trec)")
    run.add_argument("--run-tag", default=None, help="last column of TREC lines (default hybrid-METHOD)")
    run.add_argument("--threads", type=int, default=1, help="Lucene and FAISS threads (default 1)")
    run.add_argument("--batch-size", type=int, default=512, help="queries encoded and searched together "
                                                                  "(default 512)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    return {"": top, "dense": dense, "sparse": sparse, "fusion": fusion, "run": run}


def main(argv: list[str] | None = None) -> int:
    args = parse_groups(parsers(), sys.argv[1:] if argv is None else argv, GROUPS, optional=("fusion",),
                        help_if_empty=True)
    return hybrid_search(**args)


def build_hybrid(dense: argparse.Namespace, sparse: argparse.Namespace):
    """The ``HybridSearcher`` the ``dense`` and ``sparse`` argument groups describe (also used by ``tune``)."""
    from pyserini.search.lucene import LuceneSearcher

    from ...io.errors import InputError
    from .. import DenseSearcher
    from . import HybridSearcher

    sparse_dir = Path(sparse.index)
    if not sparse_dir.is_dir() or not any(sparse_dir.glob("segments_*")):
        raise InputError(sparse_dir, "is not a Lucene index dir (no segments_N file)")
    lucene = LuceneSearcher(str(sparse_dir))
    lucene.set_bm25(sparse.k1, sparse.b)
    if sparse.language != "en":
        lucene.set_language(sparse.language)
    searcher = DenseSearcher(dense.index, dense.encoder, family=dense.family, device=dense.device,
                             ef_search=dense.ef_search, batch_size=dense.batch_size, **encoder_overrides(dense))
    return HybridSearcher(searcher, lucene)


def hybrid_search(dense: argparse.Namespace, sparse: argparse.Namespace, fusion: argparse.Namespace,
        run: argparse.Namespace) -> int:
    from ...io.qrels import read_qrels
    from ...io.runs import write_run
    from ...io.topics import read_topics

    params = method_params(fusion)  # before anything slow: a wrong flag fails at once
    if min(fusion.hits, run.hits, run.batch_size, run.threads) < 1:
        raise ValueError("--hits, --batch-size and --threads must be positive")
    qids = set(read_qrels(run.qids_from)) if run.qids_from else None
    topics = read_topics(run.topics, qids)
    hybrid = build_hybrid(dense, sparse)
    start = time.perf_counter()
    fused = hybrid.search_run(topics, k0=fusion.hits, k=run.hits, threads=run.threads, fusion=fusion.method,
                              chunk_size=run.batch_size, progress=not run.quiet, **params)
    elapsed = time.perf_counter() - start
    write_run(run.output, fused, tag=run.run_tag or f"hybrid-{fusion.method}", fmt=run.output_format)
    print(f"wrote {run.output}: {len(fused)} queries, {len(fused) / elapsed:.1f} queries/s "
          f"({', '.join(f'{k} {v:.2f}s' for k, v in hybrid.timings.items())})")
    return 0


if __name__ == "__main__":
    run_cli(main)
