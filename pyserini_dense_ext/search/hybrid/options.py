"""The argument groups of ``python -m pyserini_dense_ext.search.hybrid``; ``tune`` reuses its dense and sparse ones."""
from __future__ import annotations

import argparse

from ...cli import (add_encoder_options, add_fusion_options, add_max_passage_options, add_query_backend_options,
                   encoder_overrides)
from ...fusion import DEFAULT_METHOD, METHODS
from ...io.runs import FORMATS
from ...rerank import Reranker
from . import HybridSearcher, build_hybrid

METHOD_LIST = "methods:\n" + "".join(f"  {n:<11}{m.summary}\n" for n, m in METHODS.items())


def dense_group() -> argparse.ArgumentParser:
    dense = argparse.ArgumentParser(prog="... dense", description="The dense index and its query encoder (the "
                                                                  "index's recorded encoder config is the default).")
    dense.add_argument("--index", required=True, help="FAISS index dir ('index' + 'docid'; flat, HNSW or ME-BERT)")
    add_encoder_options(dense)
    add_query_backend_options(dense)
    dense.add_argument("--ef-search", type=int, default=None,
                       help="HNSW search beam width (default: the one stored with the index, raised to the rows "
                            "asked for)")
    dense.add_argument("--mmap", action="store_true",
                       help="map the index from disk while searching instead of loading it (see the search command)")
    return dense


def sparse_group() -> argparse.ArgumentParser:
    sparse = argparse.ArgumentParser(prog="... sparse", description="The Lucene index (BM25).")
    sparse.add_argument("--index", required=True, help="Lucene index dir (plain or docT5query-expanded text)")
    sparse.add_argument("--k1", type=float, default=0.9, help="BM25 k1 (default 0.9)")
    sparse.add_argument("--b", type=float, default=0.4, help="BM25 b (default 0.4)")
    sparse.add_argument("--language", default="en", help="analyzer language (default en)")
    return sparse


def fusion_group() -> argparse.ArgumentParser:
    fusion = argparse.ArgumentParser(prog="... fusion", description="How the two lists are fused.", epilog=METHOD_LIST,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    fusion.add_argument("--method", choices=sorted(METHODS), default=None,
                        help=f"fusion method (default {DEFAULT_METHOD}; linear when --alpha, --normalization or "
                             "--weight-on-dense is given, as in Pyserini)")
    add_fusion_options(fusion, with_method=False)
    # Pyserini's --normalization is a bare flag meaning its centred normalisation; keep that form working.
    for action in fusion._actions:
        if action.dest == "normalization":
            action.nargs, action.const = "?", "centred"
    fusion.add_argument("--hits", type=int, default=1000, help="k0: hits taken from each of dense and sparse "
                                                               "(default 1000)")
    return fusion


def run_group() -> argparse.ArgumentParser:
    run = argparse.ArgumentParser(prog="... run", description="Topics, output and threads.")
    run.add_argument("--topics", required=True, help="queries: Pyserini TSV (qid<TAB>text) or BEIR queries.jsonl")
    run.add_argument("--qids-from", metavar="QRELS", default=None, help="search only the queries judged here")
    run.add_argument("--hits", type=int, default=1000, help="k: fused hits written per query (default 1000; with "
                                                            "--max-passage, --max-passage-hits)")
    run.add_argument("--output", required=True, help="run file to write (atomically)")
    run.add_argument("--output-format", choices=FORMATS, default="trec", help="run format (default trec)")
    run.add_argument("--run-tag", default=None, help="last column of TREC lines (default hybrid-METHOD)")
    run.add_argument("--threads", type=int, default=1, help="Lucene and FAISS threads (default 1)")
    run.add_argument("--batch-size", type=int, default=512, help="queries encoded and searched together "
                                                                  "(default 512)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    add_max_passage_options(run)
    for action in run._actions:  # each side folds its passages before fusion (HybridSearcher), unlike Pyserini
        if action.dest == "max_passage":
            action.help = ("both indexes hold passages docid#k (--passages): each side's fusion --hits passages "
                           "are folded into documents by their best passage, then fused; --max-passage-hits "
                           "documents are written")
    return run


def rerank_group() -> argparse.ArgumentParser:
    rerank = argparse.ArgumentParser(prog="... rerank", description="Optional: rerank each fused list with a query "
                                     "encoder (a CODER model, say) against the dense index's stored vectors (with "
                                     "run --max-passage, each fused document scores the max over its passages).")
    add_encoder_options(rerank, encoder_default="no reranking")
    rerank.add_argument("--index", default=None, help="dense index whose vectors score the fused candidates "
                                                      "(default: the dense group's)")
    rerank.add_argument("--depth", type=int, default=None, help="fused candidates reranked per query (default: all)")
    rerank.add_argument("--vectors", default=None, metavar="NPY", help="document vectors .npy (PQ/HNSW indexes)")
    rerank.add_argument("--vectors-cache", default=None, metavar="DIR",
                        help="where the vectors read back from a flat index are kept (default: the index dir)")
    return rerank


def reranker_from_group(rerank: argparse.Namespace, dense: argparse.Namespace, progress: bool = True,
                        max_passage_delimiter: str | None = None) -> Reranker | None:
    """The :class:`Reranker` the ``rerank`` group asks for; None without ``--encoder``. With
    ``max_passage_delimiter`` (``run --max-passage``) documents are scored by their best passage (MaxP)."""
    if rerank.encoder is None:
        return None
    if rerank.depth is not None and rerank.depth < 1:
        raise ValueError("rerank --depth must be positive")
    return Reranker(rerank.index or dense.index, rerank.encoder, vectors=rerank.vectors,
                    vectors_cache=rerank.vectors_cache, family=rerank.family,
                    device=rerank.device, batch_size=rerank.batch_size, progress=progress,
                    max_passage_delimiter=max_passage_delimiter, **encoder_overrides(rerank))


def hybrid_from_groups(dense: argparse.Namespace, sparse: argparse.Namespace,
                       max_passage_delimiter: str | None = None) -> HybridSearcher:
    """The searcher the ``dense`` and ``sparse`` groups describe (``max_passage_delimiter``: MaxP on each side)."""
    return build_hybrid(dense.index, dense.encoder, sparse.index, bm25=(sparse.k1, sparse.b), language=sparse.language,
                        family=dense.family, device=dense.device, ef_search=dense.ef_search,
                        batch_size=dense.batch_size, mmap=dense.mmap, backend=dense.backend,
                        precision=dense.precision, max_passage_delimiter=max_passage_delimiter,
                        **encoder_overrides(dense))
