"""Corpus encoding throughput on SciFact: ONNX fp32 / int8 vs our torch encoder vs ``python -m pyserini.encode``.

Same model (MiniLM, mean pooling, L2 norm), same max length 256, batch size 32, 2 threads, one
run. ``pyserini.encode`` (class ``auto``) runs as the command users type, so its wall time
includes Python start-up and model loading; a one-batch run of the same command measures that
fixed cost, and its docs/s is reported with and without it. Every path's vectors are checked
against the torch vectors (kept as the flat index onnx_search.py uses), and nDCG@10 on
SciFact test is computed for the int8 document vectors.

    python bench/onnx_corpus.py             # ~10 min on 2 cores; writes bench/output/onnx_corpus.json
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (ROOT, add_common_args, check_common_args, ensure_export, load_torch, machine, ndcg10,
                    save_minilm_index, set_threads, table, test_queries, write_json)

PATHS = ("pyserini.encode", "torch", "onnx fp32", "onnx int8")
TARGET = 1.5  # ONNX docs/s over pyserini.encode's


def pyserini_encode(corpus: Path, model: str, out: Path, threads: int) -> float:
    """Wall seconds of ``python -m pyserini.encode`` (auto class) writing a FAISS index to ``out``."""
    # Pyserini's own encode CLI, run through our launcher only for the Java 21 / JVM-option set-up
    # this machine needs (the launcher registers classes but '--encoder-class auto' picks Pyserini's).
    cmd = [sys.executable, "-m", "pyserini_dense_ext.launch", "encode", "input", "--corpus", str(corpus), "--fields", "title", "text",
           "output", "--embeddings", str(out), "--to-faiss",
           "encoder", "--encoder", model, "--encoder-class", "auto", "--fields", "title", "text", "--pooling", "mean",
           "--l2-norm", "--max-length", "256", "--batch-size", "32", "--dimension", "384", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"pyserini.encode failed:\n{done.stdout[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_common_args(parser)
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS), help="what to time (default all)")
    parser.add_argument("--limit", type=int,
                        help="encode only the first N documents (quick runs; writes onnx_corpus.limit-N.json)")
    parser.add_argument("--batch-size", type=int, default=32, help="documents per batch (default 32)")
    args = parser.parse_args()
    check_common_args(parser, args)

    import faiss
    import numpy as np

    from pyserini_dense_ext.io.corpus import read_corpus
    from pyserini_dense_ext.onnx import load_onnx

    set_threads(args.threads)
    docs = read_corpus(Path(args.data) / "corpus.jsonl")[:args.limit]
    texts, docids = [d.contents for d in docs], [d.docid for d in docs]
    exports = {p: ensure_export(args.model, "document", p.split()[1], args.reexport)
               for p in args.paths if p.startswith("onnx")}
    seconds: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}
    work = Path(tempfile.mkdtemp(prefix="onnx-corpus-"))
    corpus = Path(args.data) / "corpus.jsonl"
    if args.limit:
        corpus = work / "corpus.jsonl"
        with open(Path(args.data) / "corpus.jsonl", encoding="utf-8") as f, open(corpus, "w", encoding="utf-8") as g:
            g.writelines(line for _, line in zip(range(args.limit), f))

    startup = None
    for path in args.paths:
        print(f"[{path}] encoding {len(texts)} documents ...", flush=True)
        if path == "pyserini.encode":
            one_batch = work / "one-batch.jsonl"
            with open(corpus, encoding="utf-8") as f, open(one_batch, "w", encoding="utf-8") as g:
                g.writelines(line for _, line in zip(range(args.batch_size), f))
            startup = pyserini_encode(one_batch, args.model, work / "pyserini-one", args.threads)
            seconds[path] = pyserini_encode(corpus, args.model, work / "pyserini", args.threads)
            index = faiss.read_index(str(work / "pyserini" / "index"))
            vectors[path] = index.reconstruct_n(0, index.ntotal)
            written = (work / "pyserini" / "docid").read_text().splitlines()
            if written != docids:
                raise SystemExit("pyserini.encode wrote documents in another order than the corpus")
        else:
            model = load_torch(args.model) if path == "torch" else load_onnx(exports[path], side="document",
                                                                            threads=args.threads)
            model.encode(texts[:args.batch_size], "document", batch_size=args.batch_size)  # warm-up
            start = time.perf_counter()
            vectors[path] = model.encode(texts, "document", batch_size=args.batch_size, progress=True)
            seconds[path] = time.perf_counter() - start
        print(f"[{path}] {seconds[path]:.1f} s, {len(texts) / seconds[path]:.1f} docs/s", flush=True)

    if "torch" in vectors and not args.limit:  # the reference for the other benchmarks
        save_minilm_index(args.data, args.model, docs, vectors["torch"])
    reference = vectors.get("torch")
    rows, results = [], {}
    base = seconds.get("pyserini.encode")
    for path in args.paths:
        rate = len(texts) / seconds[path]
        entry = {"seconds": seconds[path], "docs_per_s": rate}
        if path == "pyserini.encode" and startup is not None:
            entry["startup_seconds_one_batch_run"] = startup
            entry["docs_per_s_without_startup"] = len(texts) / max(seconds[path] - startup, 1e-9)
        if reference is not None:
            a, b = vectors[path], reference
            cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            entry.update(max_abs_diff_vs_torch=float(np.abs(a - b).max()), min_cosine_vs_torch=float(cosine.min()))
        if base:
            entry["speedup_vs_pyserini_encode"] = base / seconds[path]
        results[path] = entry
        rows.append([path, f"{seconds[path]:.1f}", f"{rate:.1f}",
                     f"{entry.get('speedup_vs_pyserini_encode', float('nan')):.2f}",
                     f"{entry.get('max_abs_diff_vs_torch', float('nan')):.1e}"])
    print()
    print(table(rows, ["path", "seconds", "docs/s", "x pyserini.encode", "max abs diff vs torch"]))
    if startup is not None:
        entry = results["pyserini.encode"]
        print(f"\npyserini.encode start-up (a one-batch run): {startup:.1f} s; without it "
              f"{entry['docs_per_s_without_startup']:.1f} docs/s")

    effectiveness = {}
    if not args.limit and {"torch", "onnx int8"} <= set(vectors):
        qids, queries, qrels = test_queries(args.data)
        q = load_torch(args.model).encode(queries, "query")
        for path in ("torch", "onnx int8"):
            scores, rows_ = faiss.knn(q, vectors[path], 10, metric=faiss.METRIC_INNER_PRODUCT)
            run = {qid: [(docids[r], float(s)) for r, s in zip(rows_[i], scores[i])] for i, qid in enumerate(qids)}
            effectiveness[path] = ndcg10(run, qrels)
        print(f"\nSciFact test nDCG@10 with torch query vectors: torch documents {effectiveness['torch']:.4f}, "
              f"int8 documents {effectiveness['onnx int8']:.4f}")
    if base:
        print("\ntarget: ONNX >= 1.5x pyserini.encode")
        for path in ("onnx fp32", "onnx int8"):
            if path in results:
                ratio = results[path]["speedup_vs_pyserini_encode"]
                print(f"  {path}: {ratio:.2f}x {'met' if ratio >= TARGET else 'MISSED'}")
    name = f"onnx_corpus.limit-{args.limit}.json" if args.limit else "onnx_corpus.json"  # never the full run's
    out = write_json(name, {"machine": machine(), "threads": args.threads, "documents": len(texts),
                                         "batch_size": args.batch_size, "max_length": 256, "results": results,
                                         "ndcg@10_test_torch_queries": effectiveness})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
