"""Reranking speed: ms/query to re-score 1000 candidates against stored vectors, beyond encoding the query.

Zerveas et al. report ~5.5 ms/query on a GPU (batching included) for CODER reranking 1000
candidates; the target here is <= 2 ms/query on CPU. Measured on SciFact test (300 queries,
MiniLM's flat index, candidates = the first-stage run given, top 1000) and, to show the cost does
not grow with the corpus, on a synthetic flat index of ``--synthetic`` random unit vectors with
1000 random candidates per query. Query vectors are encoded once beforehand (that time is
reported apart). In the same run, for scale, bare FAISS exhaustive search (``IndexFlatIP.search``,
k = 1000) over the whole index with the same query vectors: what single-stage search costs.

* ``rerank_ids``: int32 candidates in, sorted ids and scores out (gather + batched matrix product + sort);
* ``rerank_run``: docids in, a run dict out (adds mapping docids to ids and back).

Each figure is the median of ``--rounds`` rounds, the two paths interleaved.

    .venv/bin/python bench/coder_speed.py --run runs/scifact.bm25.test.trec [--index DIR] [--synthetic 500000]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyserini_dense_ext  # noqa: E402,F401  (Java/offline settings before Pyserini)
from common import OUTPUT, add_common_args, check_common_args, load_torch, set_threads  # noqa: E402

DEPTH = 1000


class Precomputed:
    """A query encoder that returns vectors computed beforehand, so ``rerank_run`` times reranking alone."""

    def __init__(self, texts, vectors):
        self.table, self.dim = dict(zip(texts, vectors)), vectors.shape[1]

    def encode_batch(self, texts):
        import numpy as np

        return np.stack([self.table[t] for t in texts])


def measure(reranker, vectors, ids, topics, run, index, rounds: int) -> dict[str, float]:
    """Median ms/query of each path over interleaved rounds."""
    from pyserini_dense_ext.rerank import Reranker

    by_run = Reranker(reranker.vectors, Precomputed(list(topics.values()), vectors))
    paths = {"rerank_ids": lambda: reranker.rerank_ids(vectors, ids),
             "rerank_run": lambda: by_run.rerank_run(topics, run, DEPTH, progress=False),
             "faiss_flat_k1000": lambda: index.search(vectors, DEPTH)}
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: 1e3 * statistics.median(v) / len(vectors) for k, v in times.items()}


def main() -> None:
    import faiss
    import numpy as np

    from pyserini_dense_ext.io import read_qrels, read_run, read_topics
    from pyserini_dense_ext.rerank import Reranker, candidates_from_run

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(p)
    p.add_argument("--index", required=True, help="MiniLM flat index dir of SciFact")
    p.add_argument("--run", required=True, help="first-stage run on the SciFact test queries (top 1000 used)")
    p.add_argument("--synthetic", type=int, default=500_000, help="documents in the synthetic index (0: skip)")
    p.add_argument("--rounds", type=int, default=7, help="rounds per path (median reported)")
    p.add_argument("--json", default=str(OUTPUT / "coder_speed.json"), help="where to write the results")
    args = p.parse_args()
    check_common_args(p, args)
    set_threads(args.threads)
    faiss.cvar.distance_compute_blas_threshold = 20  # FAISS's own batched-GEMM path for 300 queries (MEASURED.md)

    qrels = read_qrels(Path(args.data) / "qrels" / "test.tsv")
    topics = read_topics(Path(args.data) / "queries.jsonl", set(qrels))
    run = read_run(args.run)
    model = load_torch(args.model)
    start = time.perf_counter()
    vectors = model.encode(list(topics.values()), "query", batch_size=32)
    encode_ms = 1e3 * (time.perf_counter() - start) / len(topics)
    results = {"queries": len(topics), "threads": args.threads, "run": Path(args.run).name,
               "encode_ms_per_query (torch, batch 32)": encode_ms}

    reranker = Reranker(args.index, model, vectors_cache=OUTPUT / "coder" / "vectors")
    ids = candidates_from_run(run, reranker.vectors.doc_index, DEPTH, list(topics), args.run).ids
    index = faiss.read_index(str(Path(args.index) / "index"))
    results["scifact"] = {"docs": reranker.vectors.num_docs,
                          **measure(reranker, vectors, ids, topics, run, index, args.rounds)}
    print(json.dumps(results["scifact"]), flush=True)

    if args.synthetic:
        from coder_memory import build_inputs

        paths = build_inputs(args.synthetic)
        synthetic = Reranker(paths["index"], model)
        syn_topics = read_topics(paths["topics"])
        syn_run = read_run(paths["run"])
        syn_vectors = model.encode(list(syn_topics.values()), "query", batch_size=32)
        syn_ids = candidates_from_run(syn_run, synthetic.vectors.doc_index, DEPTH, list(syn_topics)).ids
        syn_index = faiss.read_index(str(paths["index"] / "index"), faiss.IO_FLAG_MMAP_IFC)
        results["synthetic"] = {"docs": synthetic.vectors.num_docs,
                                **measure(synthetic, syn_vectors, syn_ids, syn_topics, syn_run, syn_index,
                                          args.rounds)}
        print(json.dumps(results["synthetic"]), flush=True)

    print(f"\nquery encoding (excluded below): {encode_ms:.2f} ms/query")
    print(f"{'index':<12}{'docs':>9}{'rerank_ids':>12}{'rerank_run':>12}{'FAISS flat k=1000':>19}{'ratio':>8}")
    for name in ("scifact", "synthetic"):
        if name in results:
            r = results[name]
            print(f"{name:<12}{r['docs']:>9}{r['rerank_ids']:>12.3f}{r['rerank_run']:>12.3f}"
                  f"{r['faiss_flat_k1000']:>19.3f}{r['faiss_flat_k1000'] / r['rerank_ids']:>7.1f}x")
    print("(ms/query; ratio = FAISS exhaustive search time / rerank_ids time)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
