"""End to end on SciFact test: ``python -m pyserini_dense_ext.search`` with the ONNX query encoder vs
Pyserini's ``FaissSearcher.batch_search`` with ``AutoQueryEncoder``, same flat index, same run.

Both search the 300 test queries for the top ``--hits`` (default 1000) over the MiniLM vectors
of the 5,183 documents (``bench/output/scifact-minilm-flat``: kept by onnx_corpus.py, or encoded here once). Queries/second are
the searchers' own time from the first query text to the last hit list (our command prints
it; its start-up is reported separately), best of ``--repeat`` rounds that take the searchers in
turn. The top-10 of every query must be identical.

    python bench/onnx_search.py             # writes bench/output/onnx_search.json
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (ROOT, add_common_args, check_common_args, ensure_export, machine, minilm_index, ndcg10,
                    set_threads, table, test_queries, write_json)


BASELINE = "pyserini FaissSearcher + AutoQueryEncoder"
CLI = "python -m pyserini_dense_ext.search"


def run_our_cli(index: Path, encoder: Path, data: str, hits: int, threads: int, out: Path) -> tuple[float, float]:
    """(queries/s the command reports for its search, wall seconds of the whole command)."""
    cmd = [sys.executable, "-m", "pyserini_dense_ext.search", "--index", str(index), "--encoder", str(encoder),
           "--topics", str(Path(data) / "queries.jsonl"), "--qids-from", str(Path(data) / "qrels" / "test.tsv"),
           "--hits", str(hits), "--threads", str(threads), "--output", str(out), "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    found = re.search(r"([\d.]+) queries/s", done.stdout)
    if done.returncode != 0 or not found:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}")
    return float(found.group(1)), wall


def top10_agreement(run, reference) -> dict[str, float]:
    same = sum([d for d, _ in run[q][:10]] == [d for d, _ in reference[q][:10]] for q in reference)
    same_set = sum({d for d, _ in run[q][:10]} == {d for d, _ in reference[q][:10]} for q in reference)
    score_diff = max(abs(a[1] - b[1]) for q in reference for a, b in zip(run[q][:10], reference[q][:10]))
    return {"identical_top10": same, "same_top10_set": same_set, "queries": len(reference),
            "max_top10_score_diff": score_diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_common_args(parser)
    parser.add_argument("--hits", type=int, default=1000, help="documents per query (default 1000)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="rounds over all searchers; each one's best round is kept (default 5)")
    args = parser.parse_args()
    check_common_args(parser, args)

    from pyserini.encode import AutoQueryEncoder
    from pyserini.search.faiss import FaissSearcher

    from pyserini_dense_ext.io.runs import read_run
    from pyserini_dense_ext.onnx import OnnxQueryEncoder
    from pyserini_dense_ext.search import DenseSearcher

    set_threads(args.threads)
    index = minilm_index(args.data, args.model)
    exports = {p: ensure_export(args.model, "query", p, args.reexport) for p in ("fp32", "int8")}
    qids, texts, qrels = test_queries(args.data)
    work = Path(tempfile.mkdtemp(prefix="onnx-search-"))

    pyserini_auto = FaissSearcher(str(index), AutoQueryEncoder(args.model, device="cpu", pooling="mean", l2_norm=True))
    pyserini_onnx = FaissSearcher(str(index), OnnxQueryEncoder(str(exports["fp32"]), threads=args.threads))
    ours = DenseSearcher(index, OnnxQueryEncoder(str(exports["fp32"]), threads=args.threads))

    def in_process(searcher):
        def once() -> tuple[float, dict, dict]:
            start = time.perf_counter()
            hits = searcher.batch_search(texts, qids, k=args.hits, threads=args.threads)
            qps = len(qids) / (time.perf_counter() - start)
            return qps, {q: [(h.docid, float(h.score)) for h in hits[q]] for q in qids}, {}
        return once

    def cli(precision: str):
        def once() -> tuple[float, dict, dict]:
            out = work / f"run.{precision}.trec"
            qps, wall = run_our_cli(index, exports[precision], args.data, args.hits, args.threads, out)
            return qps, read_run(out), {"command_wall_s": wall}
        return once

    searchers = {BASELINE: in_process(pyserini_auto),
                 "pyserini FaissSearcher + OnnxQueryEncoder fp32": in_process(pyserini_onnx),
                 "DenseSearcher + OnnxQueryEncoder fp32 (in-process)": in_process(ours),
                 f"{CLI}, ONNX fp32": cli("fp32"), f"{CLI}, ONNX int8": cli("int8")}
    results: dict[str, dict] = {label: {"qps": 0.0, "qps_rounds": []} for label in searchers}
    runs: dict[str, dict] = {}
    for round_ in range(args.repeat):  # rounds interleave the searchers, so load drift hits all alike
        for label, once in searchers.items():
            qps, runs[label], extra = once()
            results[label]["qps_rounds"].append(qps)
            if qps > results[label]["qps"]:
                results[label].update(qps=qps, **extra)
        print(f"round {round_ + 1}/{args.repeat} done (load {os.getloadavg()[0]:.1f})", flush=True)

    reference = runs[BASELINE]
    base = results[BASELINE]["qps"]
    rows = []
    for label, entry in results.items():
        run = runs[label]
        entry["speedup_vs_pyserini_auto"] = entry["qps"] / base
        entry["ndcg@10"] = ndcg10(run, qrels)
        entry["top10_vs_pyserini_auto"] = top10_agreement(run, reference)
        agree = entry["top10_vs_pyserini_auto"]
        rows.append([label, f"{entry['qps']:.1f}", f"{entry['speedup_vs_pyserini_auto']:.2f}",
                     f"{entry['ndcg@10']:.4f}", f"{agree['identical_top10']}/{agree['queries']}"])
    print(table(rows, ["searcher", "queries/s", "x pyserini auto", "nDCG@10", "identical top-10"]))
    cli = results[f"{CLI}, ONNX fp32"]
    print(f"\npython -m pyserini_dense_ext.search (ONNX fp32) vs FaissSearcher.batch_search (AutoQueryEncoder): "
          f"{cli['speedup_vs_pyserini_auto']:.2f}x queries/s, identical top-10 for "
          f"{cli['top10_vs_pyserini_auto']['identical_top10']}/{len(qids)} queries "
          f"(whole command incl. start-up: {cli['command_wall_s']:.1f} s)")
    out = write_json("onnx_search.json", {"machine": machine(), "threads": args.threads, "hits": args.hits,
                                         "queries": len(qids), "index": str(index), "results": results})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
