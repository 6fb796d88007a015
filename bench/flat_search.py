"""Exhaustive dense search at matrix-multiply speed: our scan vs numpy's GEMM, bare FAISS and Pyserini, one run.

For each size (default 500,000 and 1,000,000 random unit 384-dim rows, a flat index dir written
under ``bench/output/synthetic/``) and 300 random unit queries at k = 1000, on ``--threads``
threads, rounds take the paths in turn:

- numpy GEMM: the same products (queries x every row, in the blocks our scan uses) with no
  top-k at all: the machine's matrix-multiply speed, the ceiling;
- ours: ``DenseSearcher.search_vectors`` (arrays) and ``DenseSearcher.batch_search`` (Pyserini's
  hit objects) over the same dir;
- bare FAISS: ``IndexFlatIP.search`` with FAISS's defaults, and with
  ``distance_compute_blas_threshold = 1`` (its sgemm path for every batch);
- Pyserini: ``FaissSearcher.batch_search`` with the precomputed query vectors.

GFLOP/s counts 2 * queries * rows * dim. Results are checked against bare FAISS with
``faiss.contrib.evaluation.check_ref_knn_with_draws`` (same ids except for permutations among equal
scores and the last tied group) and against Pyserini's docids. Then, on the first size, the same
for flat-fp16 (FAISS's scalar-quantizer scan) and an ME-BERT layout (m = 3 rows per document;
FAISS's top k*m rows folded to documents, as before this scan), and a batch-size table
(``--rule-rows`` rows, 1 to 1000 queries): where the scan beats FAISS's own search.

    python bench/flat_search.py                      # writes bench/output/flat_search.json
"""
from __future__ import annotations

import argparse
import statistics
import time

from common import machine, table, write_json
from synthetic import synthetic_index, synthetic_rows


def timed(fn, rounds: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return times, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[500_000, 1_000_000], help="rows per index")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per path (slow FAISS paths: 1 after the first "
                                                       "size)")
    p.add_argument("--rule-rows", type=int, default=200_000, help="rows for the batch-size table (0: skip it)")
    p.add_argument("--rule-batches", type=int, nargs="+", default=[1, 2, 4, 8, 32, 100, 300, 1000])
    args = p.parse_args()

    import faiss
    import numpy as np
    from faiss.contrib.evaluation import check_ref_knn_with_draws
    from pyserini.search.faiss import FaissSearcher

    from pyserini_dense_ext.search import DenseSearcher
    from pyserini_dense_ext.search import flat

    faiss.omp_set_num_threads(args.threads)
    queries = next(synthetic_rows(args.queries, args.dim, seed=99))
    qids = [f"q{i}" for i in range(args.queries)]
    results: dict = {"machine": machine(), "threads": args.threads, "queries": args.queries, "k": args.k,
                     "dim": args.dim, "sizes": {}}
    default_threshold = faiss.cvar.distance_compute_blas_threshold

    def numpy_gemm(rows: np.ndarray, q: np.ndarray) -> None:
        block = flat.block_rows(len(q), 1)
        out = np.empty(len(q) * block, dtype=np.float32)
        for first in range(0, len(rows), block):
            part = rows[first:first + block]
            np.matmul(q, part.T, out=out[:len(q) * len(part)].reshape(len(q), len(part)))

    def faiss_search(index, q, k, threshold):
        faiss.cvar.distance_compute_blas_threshold = threshold
        try:
            return index.search(q, k)
        finally:
            faiss.cvar.distance_compute_blas_threshold = default_threshold

    def same(ref, ours) -> dict:
        (dr, ir), (do, io) = ref, ours
        check_ref_knn_with_draws(dr, ir, do, io, rtol=1e-5, atol=1e-5)  # raises if not the same modulo ties
        return {"rows_identical": f"{int((ir == io).all(axis=1).sum())}/{len(ir)}",
                "max_score_diff": float(np.abs(dr - do).max())}

    rows_out = []
    for n in args.sizes:
        rounds = args.rounds
        directory = synthetic_index(n, args.dim)
        ours = DenseSearcher(directory)
        theirs = FaissSearcher(str(directory), None)
        stored = flat.stored_rows(ours.index)
        flops = 2.0 * args.queries * n * args.dim
        times = {name: [] for name in ("numpy GEMM", "ours search_vectors", "ours batch_search", "FAISS default",
                                       "FAISS sgemm path", "Pyserini batch_search")}
        outs = {}
        slow_rounds = rounds if n == args.sizes[0] else 1
        for r in range(rounds):
            for name, fn in (("numpy GEMM", lambda: numpy_gemm(stored, queries)),
                             ("ours search_vectors", lambda: ours.search_vectors(queries, args.k, args.threads)),
                             ("ours batch_search", lambda: ours.batch_search(queries, qids, args.k, args.threads)),
                             ("FAISS sgemm path", lambda: faiss_search(theirs.index, queries, args.k, 1)),
                             ("FAISS default", lambda: faiss_search(theirs.index, queries, args.k, default_threshold)),
                             ("Pyserini batch_search",
                              lambda: theirs.batch_search(queries, qids, args.k, threads=args.threads))):
                if r >= slow_rounds and name in ("FAISS default", "Pyserini batch_search"):
                    continue
                t, out = timed(fn, 1)
                faiss.omp_set_num_threads(args.threads)  # Pyserini's batch_search leaves its own count behind
                times[name] += t
                outs[name] = out
            print(f"{n} rows, round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items() if v),
                  flush=True)
        median = {k: statistics.median(v) for k, v in times.items()}
        gflops = {k: flops / v / 1e9 for k, v in median.items()}
        qps = {k: args.queries / v for k, v in median.items()}
        checks = {"vs FAISS default": same(outs["FAISS default"], outs["ours search_vectors"]),
                  "vs FAISS sgemm path": same(outs["FAISS sgemm path"], outs["ours search_vectors"])}
        ours_hits, their_hits = outs["ours batch_search"], outs["Pyserini batch_search"]
        checks["docid lists equal Pyserini's"] = (f"{sum([h.docid for h in ours_hits[q]] == [h.docid for h in their_hits[q]] for q in qids)}"
                                                  f"/{len(qids)}")
        summary = {"seconds_median": median, "seconds_all": times, "gflops": gflops, "qps": qps,
                   "ours_vs_numpy_gemm": gflops["ours search_vectors"] / gflops["numpy GEMM"],
                   "ours_vs_faiss_default": median["FAISS default"] / median["ours search_vectors"],
                   "ours_vs_pyserini_batch_search": median["Pyserini batch_search"] / median["ours batch_search"],
                   "checks": checks, "index_bytes": (directory / "index").stat().st_size}
        results["sizes"][str(n)] = summary
        for name in times:
            rows_out.append([f"{n:,}", name, f"{median[name]:.3f}", f"{qps[name]:.0f}", f"{gflops[name]:.1f}",
                             f"{median[name] / median['ours search_vectors']:.2f}"])
        print(f"{n} rows: ours {gflops['ours search_vectors']:.0f} GFLOP/s = {summary['ours_vs_numpy_gemm']:.0%} of "
              f"numpy GEMM; {summary['ours_vs_faiss_default']:.1f}x bare FAISS; "
              f"{summary['ours_vs_pyserini_batch_search']:.1f}x Pyserini batch_search; checks {checks}", flush=True)
        del ours, theirs, stored, outs

    print()
    print(table(rows_out, ["rows", "path", "seconds", "queries/s", "GFLOP/s", "time / ours"]))

    # flat-fp16 and ME-BERT (m = 3) at the first size: FAISS's own search against our scan.
    n = args.sizes[0]
    variants = {}
    fp16_dir = synthetic_index(n, args.dim, "flat-fp16")
    fp16 = DenseSearcher(fp16_dir)
    t_ours, ours_out = timed(lambda: fp16.search_vectors(queries, args.k, args.threads), args.rounds)
    t_faiss, faiss_out = timed(lambda: fp16.index.search(queries, args.k), 1)
    variants["flat-fp16"] = {"ours_seconds": statistics.median(t_ours), "faiss_seconds": t_faiss[0],
                             "check": same(faiss_out, ours_out)}
    del fp16
    m = 3
    mebert = DenseSearcher(synthetic_index(n - n % m, args.dim, "flat", rows_per_doc=m))
    t_ours, (scores, docs) = timed(lambda: mebert.search_vectors(queries, args.k, args.threads), args.rounds)

    def rows_then_fold():  # what DenseSearcher did before the scan: FAISS's top k*m rows, first occurrences
        row_scores, rows = faiss_search(mebert.index, queries, args.k * m, default_threshold)
        return row_scores, rows // m

    t_faiss, (row_scores, row_docs) = timed(rows_then_fold, 1)
    firsts = [np.sort(np.unique(r, return_index=True)[1])[:args.k] for r in row_docs]
    ref = (np.stack([s[f] for s, f in zip(row_scores, firsts)]), np.stack([r[f] for r, f in zip(row_docs, firsts)]))
    variants["mebert m=3"] = {"ours_seconds": statistics.median(t_ours), "faiss_seconds": t_faiss[0],
                              "check": same(ref, (scores, docs))}
    del mebert
    for name, v in variants.items():
        v["speedup"] = v["faiss_seconds"] / v["ours_seconds"]
        v["ours_gflops"] = flops_n = 2.0 * args.queries * n * args.dim / v["ours_seconds"] / 1e9
        print(f"{name}, {n} rows: ours {v['ours_seconds']:.2f}s ({flops_n:.0f} GFLOP/s), FAISS {v['faiss_seconds']:.2f}s "
              f"-> {v['speedup']:.1f}x; check {v['check']}", flush=True)
    results["variants"] = variants

    # Batch sizes: where does the scan beat FAISS's own search?
    if args.rule_rows:
        index = faiss.IndexFlatIP(args.dim)
        for chunk in synthetic_rows(args.rule_rows, args.dim):
            index.add(chunk)
        stored = flat.stored_rows(index)
        rule = []
        for nq in args.rule_batches:
            q = np.concatenate([queries] * (-(-nq // len(queries))))[:nq]
            rounds = max(1, min(5, 3000 // nq))
            paths = {"FAISS default": lambda: faiss_search(index, q, args.k, default_threshold),
                     "FAISS sgemm path": lambda: faiss_search(index, q, args.k, 1),
                     "ours": lambda: flat.top_k(q, stored, args.k, threads=args.threads)}
            row = {"queries": nq}
            for name, fn in paths.items():
                row[name] = nq / statistics.median(timed(fn, rounds)[0])
            row["ours / FAISS default"] = row["ours"] / row["FAISS default"]
            rule.append(row)
            print(f"batch {nq}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items() if k != "queries"), flush=True)
        results["batch_sizes"] = {"rows": args.rule_rows, "queries_per_second": rule}
        print(table([[r["queries"], f"{r['FAISS default']:.0f}", f"{r['FAISS sgemm path']:.0f}", f"{r['ours']:.0f}",
                      f"{r['ours / FAISS default']:.2f}"] for r in rule],
                    ["queries", "FAISS default q/s", "FAISS sgemm q/s", "ours q/s", "ours / FAISS default"]))
    results["load_after"] = machine()["load_average_1_5_15_min"]
    print(f"wrote {write_json('flat_search.json', results)}")


if __name__ == "__main__":
    main()
