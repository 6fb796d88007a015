"""End to end at scale: a synthetic corpus and a tiny model, encoded, indexed four ways and searched, each step
next to bare FAISS and Pyserini.

One command makes a ``--docs``-document corpus (default 1,000,000 documents of 60 random words),
1,000 topics and a tiny random model (1 layer, width 64: the model is not what is measured), then
runs every step as a fresh process and reports its wall time, rate and peak resident memory (the
kernel's ``ru_maxrss`` for that process):

1. encode: ``python -m pyserini_dense_ext.encode`` (flat index) against Pyserini's ``encode``
   (``--to-faiss``, same model class through our launcher);
2. index: flat-fp16, HNSW and PQ built from the flat dir by ``python -m pyserini_dense_ext.index.merge``
   (one shard in, another type out), against bare FAISS building the same type from the same
   vectors;
3. search (``--hits 1000``, all topics): ``python -m pyserini_dense_ext.search`` on each index
   (flat and flat-fp16 also ``--mmap``), against Pyserini's ``search.faiss`` (flat; our model
   class, ``--batch-size`` = all topics) and bare FAISS ``index.search`` on the precomputed query
   vectors. GFLOP/s counts 2 * queries * rows * dim for the exhaustive (flat) scans over the
   command's own search time.

Everything goes under ``bench/output/scale/``; inputs are reused between runs.

    python bench/scale.py                 # 1,000,000 documents
    python bench/scale.py --docs 100000   # a shorter run
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import time

from common import OUTPUT, machine, table, write_json
from synthetic import PYTHON, measured, synthetic_corpus, synthetic_topics, tiny_model

BARE_FAISS = """
import json, sys, time
import faiss, numpy as np
faiss.omp_set_num_threads({threads})
mode, source, arg = sys.argv[1], sys.argv[2], sys.argv[3]
start = time.perf_counter()
if mode == "build":
    index = faiss.read_index(source + "/index")
    vectors = index.reconstruct_n(0, index.ntotal)
    del index
    built = {{"flat-fp16": lambda: faiss.IndexScalarQuantizer(vectors.shape[1], faiss.ScalarQuantizer.QT_fp16,
                                                              faiss.METRIC_INNER_PRODUCT),
             "hnsw": lambda: faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT),
             "pq": lambda: faiss.IndexPQ(vectors.shape[1], vectors.shape[1] // 4, 8, faiss.METRIC_INNER_PRODUCT)}}[arg]()
    if arg == "hnsw":
        built.hnsw.efConstruction = 200
    built.train(vectors)
    built.add(vectors)
    faiss.write_index(built, sys.argv[4])
    print(json.dumps({{"seconds": time.perf_counter() - start}}))
else:
    index = faiss.read_index(source)
    queries = np.load(arg)
    loaded = time.perf_counter()
    scores, ids = index.search(queries, {hits})
    print(json.dumps({{"seconds": time.perf_counter() - loaded, "load_seconds": loaded - start}}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=1_000_000, help="documents in the synthetic corpus")
    p.add_argument("--topics", type=int, default=1000, help="queries searched")
    p.add_argument("--hits", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64, help="documents per forward pass when encoding")
    p.add_argument("--no-pyserini-encode", action="store_true", help="skip Pyserini's encode (the slowest step)")
    args = p.parse_args()
    began = time.perf_counter()
    work = OUTPUT / "scale" / str(args.docs)
    work.mkdir(parents=True, exist_ok=True)
    corpus, topics, model = synthetic_corpus(args.docs), synthetic_topics(args.topics), tiny_model()
    dim = json.loads((model / "config.json").read_text())["hidden_size"]
    env = {"OMP_NUM_THREADS": str(args.threads)}
    steps: list[dict] = []

    def step(name: str, tool: str, cmd: list[str], count: int | None = None, unit: str = "", flops: float = 0,
             inner_seconds=None) -> dict:
        run = measured(cmd, env=env)
        if run["returncode"] != 0:
            raise SystemExit(f"{name} / {tool} failed:\n{run['output'][-3000:]}")
        inner = inner_seconds(run["output"]) if inner_seconds else None
        row = {"step": name, "tool": tool, "seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"],
               "inner_seconds": inner}
        if count:
            row[f"{unit}_per_second"] = count / (inner or run["seconds"])
        if flops:
            row["gflops"] = flops / (inner or run["seconds"]) / 1e9
        steps.append(row)
        rate = f", {row[f'{unit}_per_second']:.0f} {unit}/s" if count else ""
        print(f"{name:<22} {tool:<34} {run['seconds']:8.1f} s{rate}, peak RSS {run['peak_rss_mb']:.0f} MB",
              flush=True)
        return row

    # 1. encode
    flat = work / "flat"
    shutil.rmtree(flat, ignore_errors=True)
    step("encode (flat)", "ours: dense_ext.encode", [PYTHON, "-m", "pyserini_dense_ext.encode", "input", "--corpus",
         str(corpus), "encoder", "--encoder", str(model), "--batch-size", str(args.batch_size), "output", "--index",
         str(flat), "--quiet"], args.docs, "docs")
    if not args.no_pyserini_encode:
        theirs = work / "pyserini-flat"
        shutil.rmtree(theirs, ignore_errors=True)
        step("encode (flat)", "Pyserini: pyserini.encode", [PYTHON, "-m", "pyserini_dense_ext.launch", "encode",
             "input", "--corpus", str(corpus), "--fields", "title", "text", "output", "--embeddings", str(theirs),
             "--to-faiss", "encoder", "--encoder", str(model), "--fields", "title", "text", "--batch-size",
             str(args.batch_size), "--dimension", str(dim), "--device", "cpu"], args.docs, "docs")

    # 2. the other index types, from the flat dir
    bare = BARE_FAISS.format(threads=args.threads, hits=args.hits)
    dirs = {"flat": flat}
    for index_type in ("flat-fp16", "hnsw", "pq"):
        out = work / index_type
        shutil.rmtree(out, ignore_errors=True)
        step(f"index ({index_type})", "ours: dense_ext.index.merge", [PYTHON, "-m", "pyserini_dense_ext.index.merge",
             "--shards", str(flat), "--output", str(out), "--index-type", index_type, "--quiet"], args.docs, "docs")
        step(f"index ({index_type})", "bare FAISS (train + add)", [PYTHON, "-c", bare, "build", str(flat), index_type,
             str(work / f"bare-{index_type}.faiss")], args.docs, "docs")
        dirs[index_type] = out

    # 3. search
    import numpy as np

    from pyserini_dense_ext.encoders import load_model
    from pyserini_dense_ext.io import read_topics

    queries_npy = work / "queries.npy"
    texts = list(read_topics(topics).values())
    np.save(queries_npy, load_model(model).encode(texts, "query", batch_size=256), allow_pickle=False)
    n_topics = len(texts)
    exhaustive = 2.0 * n_topics * args.docs * dim

    def command_rate(output: str) -> float | None:
        """Our search command prints 'N queries/s' for its own search time (encoding included)."""
        found = re.search(r"([\d.]+) queries/s", output)
        return n_topics / float(found.group(1)) if found else None

    def bare_seconds(output: str) -> float:
        return json.loads(output.strip().splitlines()[-1])["seconds"]

    for index_type, directory in dirs.items():
        flops = exhaustive if index_type.startswith("flat") else 0
        for mmap in ((), ("--mmap",)) if index_type.startswith("flat") else ((),):
            step(f"search ({index_type})", "ours: dense_ext.search" + (" --mmap" if mmap else ""),
                 [PYTHON, "-m", "pyserini_dense_ext.search", "--index", str(directory), "--encoder", str(model),
                  "--topics", str(topics), "--hits", str(args.hits), "--threads", str(args.threads), "--output",
                  str(work / f"run.{index_type}.trec"), "--quiet", *mmap], n_topics, "queries", flops, command_rate)
        faiss_file = directory / "index" if index_type == "flat" else work / f"bare-{index_type}.faiss"
        step(f"search ({index_type})", "bare FAISS index.search (vectors)", [PYTHON, "-c", bare, "search",
             str(faiss_file), str(queries_npy)], n_topics, "queries", flops, bare_seconds)
    step("search (flat)", "Pyserini: pyserini.search.faiss", [PYTHON, "-m", "pyserini_dense_ext.launch",
         "search.faiss", "--index", str(flat), "--encoder", str(model), "--topics", str(topics), "--hits",
         str(args.hits), "--batch-size", str(n_topics), "--threads", str(args.threads), "--output",
         str(work / "run.pyserini.trec")], n_topics, "queries", exhaustive)

    elapsed = time.perf_counter() - began
    rows = [[s["step"], s["tool"], f"{s['seconds']:.1f}",
             f"{s.get('docs_per_second', s.get('queries_per_second', 0)):,.0f}",
             f"{s['gflops']:.0f}" if "gflops" in s else "", f"{s['peak_rss_mb']:,.0f}"] for s in steps]
    print()
    print(table(rows, ["step", "tool", "seconds", "docs/s or q/s", "GFLOP/s", "peak RSS MB"]))
    sizes = {name: sum(f.stat().st_size for f in d.iterdir()) / 2 ** 20 for name, d in dirs.items()}
    print(f"\nindex dirs (MB): " + ", ".join(f"{k} {v:,.0f}" for k, v in sizes.items()))
    print(f"whole run: {elapsed / 60:.1f} min")
    write_json(f"scale-{args.docs}.json", {"machine": machine(), "docs": args.docs, "topics": n_topics,
                                           "hits": args.hits, "threads": args.threads, "dim": dim, "steps": steps,
                                           "index_dir_mb": sizes, "minutes": elapsed / 60})


if __name__ == "__main__":
    main()
