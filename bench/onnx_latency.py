"""Query-encoding latency: torch vs ONNX fp32 vs ONNX int8 vs Pyserini's AutoQueryEncoder, one run, 2 threads.

Every path encodes the SciFact test queries with the same MiniLM recipe at batch size 1 and 32;
the paths take turns pass by pass (the first one rotating), so drift in a shared machine's load
hits them alike; the load average before and after is recorded with the results. Times
are per query (a batch's time divided by its size). Pyserini's ``AutoQueryEncoder`` has no
batch method (``FaissSearcher.batch_search`` calls ``encode`` once per query), so its batch-32
row is 32 single calls.

    python bench/onnx_latency.py            # writes bench/output/onnx_latency.json
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Callable

from common import (add_common_args, check_common_args, ensure_export, load_torch, machine, set_threads,
                    table, test_queries, write_json)

TOKENISE = "tokenise only"
TARGETS = {"onnx fp32 vs torch": 2.5, "onnx fp32 vs pyserini auto": 3.0, "onnx int8 vs torch": 3.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_common_args(parser)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32], help="batch sizes (default 1 32)")
    parser.add_argument("--passes", type=int, default=5, help="passes over the queries per path (default 5)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed queries per path first (default 20)")
    args = parser.parse_args()
    check_common_args(parser, args)

    import numpy as np
    from pyserini.encode import AutoQueryEncoder

    from pyserini_dense_ext.onnx import load_onnx

    set_threads(args.threads)
    paths = {"fp32": ensure_export(args.model, "query", "fp32", args.reexport),
             "int8": ensure_export(args.model, "query", "int8", args.reexport)}
    _, texts, _ = test_queries(args.data)
    torch_model = load_torch(args.model)
    onnx_fp32 = load_onnx(paths["fp32"], side="query", threads=args.threads)
    onnx_int8 = load_onnx(paths["int8"], side="query", threads=args.threads)
    auto = AutoQueryEncoder(args.model, device="cpu", pooling="mean", l2_norm=True)

    encoders: dict[str, Callable[[list[str]], np.ndarray]] = {
        "torch": lambda batch: torch_model.encode(batch, "query", batch_size=len(batch)),
        "onnx fp32": lambda batch: onnx_fp32.encode(batch, "query", batch_size=len(batch)),
        "onnx int8": lambda batch: onnx_int8.encode(batch, "query", batch_size=len(batch)),
        "pyserini auto": lambda batch: np.stack([auto.encode(q) for q in batch]),
        TOKENISE: lambda batch: onnx_fp32.tokenizer(batch, max_length=256, truncation=True)["input_ids"],
    }

    # The vectors first: a fast path that computes something else would be no result.
    reference = encoders["torch"](texts)
    agreement = {}
    for name in ("onnx fp32", "onnx int8", "pyserini auto"):
        vectors = np.concatenate([encoders[name](texts[i:i + 32]) for i in range(0, len(texts), 32)])
        cosine = (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)
        agreement[name] = {"max_abs_diff": float(np.abs(vectors - reference).max()),
                           "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean())}
    for name, a in agreement.items():
        print(f"{name} vs torch: max abs diff {a['max_abs_diff']:.2e}, cosine min {a['min_cosine']:.4f} "
              f"mean {a['mean_cosine']:.4f}", flush=True)

    times: dict[tuple[str, int], list[float]] = {(n, b): [] for n in encoders for b in args.batch_sizes}
    pass_p50: list[dict[str, float]] = []  # batch-1 p50 of each path, pass by pass
    for name, encode in encoders.items():
        for i in range(args.warmup):
            encode([texts[i % len(texts)]])
    load_before = os.getloadavg()
    start = time.perf_counter()
    names = list(encoders)
    for p in range(args.passes):
        order = names[p % len(names):] + names[:p % len(names)]  # who goes first rotates pass by pass
        for batch_size in args.batch_sizes:
            batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
            for name in order:
                encode = encoders[name]
                for batch in batches:
                    t0 = time.perf_counter()
                    encode(batch)
                    times[name, batch_size].append((time.perf_counter() - t0) * 1000 / len(batch))
        if 1 in args.batch_sizes:
            per_pass = len(texts)
            pass_p50.append({n: float(np.percentile(times[n, 1][-per_pass:], 50)) for n in encoders})
        print(f"pass {p + 1}/{args.passes} done ({time.perf_counter() - start:.0f} s, load "
              f"{os.getloadavg()[0]:.1f})", flush=True)

    results, rows = [], []
    for batch_size in args.batch_sizes:
        p50 = {n: float(np.percentile(times[n, batch_size], 50)) for n in encoders}
        for name in encoders:
            ms = np.asarray(times[name, batch_size])
            row = {"path": name, "batch_size": batch_size, "p50_ms": float(np.percentile(ms, 50)),
                   "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "samples": len(ms)}
            if name != TOKENISE:  # a part of every path, not a path: no speed-up to state
                row.update(speedup_vs_torch_p50=p50["torch"] / p50[name],
                           speedup_vs_pyserini_auto_p50=p50["pyserini auto"] / p50[name])
            results.append(row)
            rows.append([name, batch_size, row["p50_ms"], row["p99_ms"], row.get("speedup_vs_torch_p50", "-"),
                         row.get("speedup_vs_pyserini_auto_p50", "-")])
    print()
    print(table(rows, ["path", "batch", "p50 ms/query", "p99 ms/query", "x torch (p50)", "x pyserini auto (p50)"]))

    p50_b1 = {r["path"]: r["p50_ms"] for r in results if r["batch_size"] == 1}
    checks = {}
    if p50_b1:
        pairs = {"onnx fp32 vs torch": ("torch", "onnx fp32"), "onnx fp32 vs pyserini auto": ("pyserini auto",
                                                                                          "onnx fp32"),
                 "onnx int8 vs torch": ("torch", "onnx int8")}
        print("\nbatch 1 targets (p50 of all passes; per pass: median [min, max], as load comes and goes):")
        for name, (slow, fast) in pairs.items():
            ratio = p50_b1[slow] / p50_b1[fast]
            per_pass = [p[slow] / p[fast] for p in pass_p50]
            checks[name] = {"ratio": ratio, "target": TARGETS[name], "met": ratio >= TARGETS[name],
                            "per_pass": per_pass}
            verdict = "met" if ratio >= TARGETS[name] else "MISSED"
            print(f"  {name}: {ratio:.2f}x (target >= {TARGETS[name]}x) {verdict}; per pass "
                  f"{np.median(per_pass):.2f}x [{min(per_pass):.2f}, {max(per_pass):.2f}]")
    out = write_json("onnx_latency.json", {"machine": machine(), "load_before": load_before,
                                          "threads": args.threads, "queries": len(texts),
                                          "passes": args.passes, "agreement_with_torch": agreement,
                                          "results": results, "targets_batch1": checks,
                                          "exports": {k: str(v) for k, v in paths.items()}})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
