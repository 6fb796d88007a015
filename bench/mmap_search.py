"""Indexes larger than the memory a process may use: ``--mmap`` search against loading the index (ours, Pyserini).

Writes a flat and a flat-fp16 index of ``--rows`` random unit 384-dim rows (default 2,000,000:
3.1 GB and 1.5 GB) under ``bench/output/synthetic/`` and searches each with 300 queries, k = 1000,
in fresh processes:

- without a limit: our ``DenseSearcher(dir, mmap=True)``, our ``DenseSearcher(dir)`` (loads the
  index) and Pyserini's ``FaissSearcher`` (loads it), each process's peak resident memory (the
  kernel's ``ru_maxrss``) next to the index size;
- under a limit: each process first imports everything (torch, the JVM: their address-space
  reservations are not what is measured), then caps its address space (``RLIMIT_AS``, what
  ``ulimit -v`` sets) at what it has mapped so far plus ``--budget-mb`` (default 1,024 MB, less
  than either index), and only then opens and searches the index.

With ``--mmap`` the rows are read through a sliding window of memory-mapped blocks (one block per
scanning thread, unmapped when done), so neither the resident set nor the address space holds the
index; loading it (ours without ``--mmap``, or Pyserini, which always reads the whole index) needs
the index's size in memory and fails under the cap.

    python bench/mmap_search.py             # writes bench/output/mmap_search.json
"""
from __future__ import annotations

import argparse
import json
import sys

from common import machine, table, write_json
from synthetic import PYTHON, measured, synthetic_index, synthetic_rows

WORKER = "worker"


def worker(argv: list[str]) -> None:
    """One search in this process: ``worker PATH INDEX_DIR BUDGET_MB QUERIES K``; prints one JSON line."""
    path, directory, budget_mb, n_queries, k = argv[0], argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    import resource
    import time
    from pathlib import Path

    import pyserini_dense_ext  # noqa: F401
    from pyserini.search.faiss import FaissSearcher

    from pyserini_dense_ext.index import IndexMeta
    from pyserini_dense_ext.search import DenseSearcher

    def status(field: str) -> int:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
        return int(line.split()[1]) * 1024

    dim = IndexMeta.load(Path(directory)).dim
    queries = next(synthetic_rows(n_queries, dim, seed=99))
    before = {"rss": status("VmRSS"), "vsz": status("VmSize")}
    if budget_mb:
        limit = before["vsz"] + budget_mb * 2 ** 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    out = {"path": path, "rss_before_mb": before["rss"] / 2 ** 20, "vsz_before_mb": before["vsz"] / 2 ** 20}
    start = time.perf_counter()
    try:
        if path == "pyserini":
            searcher = FaissSearcher(directory, None)
            hits = searcher.batch_search(queries, [str(i) for i in range(n_queries)], k=k, threads=2)
            out["hits"] = sum(len(h) for h in hits.values())
        else:
            searcher = DenseSearcher(directory, mmap=path == "ours --mmap")
            scores, docs = searcher.search_vectors(queries, k, threads=2)
            out["hits"] = int((docs >= 0).sum())
        out["ok"] = True
    except (MemoryError, RuntimeError, ValueError) as e:  # FAISS's std::bad_alloc arrives as RuntimeError
        out["ok"], out["error"] = False, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    out["seconds"] = time.perf_counter() - start
    out["peak_rss_mb"] = status("VmHWM") / 2 ** 20
    print(json.dumps(out), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--budget-mb", type=int, default=1024, help="address space allowed beyond the start-up's")
    args = p.parse_args()
    results, rows = {"machine": machine(), "rows": args.rows, "dim": args.dim, "budget_mb": args.budget_mb,
                     "runs": []}, []
    for index_type in ("flat", "flat-fp16"):
        directory = synthetic_index(args.rows, args.dim, index_type)
        index_mb = (directory / "index").stat().st_size / 2 ** 20
        for budget in (0, args.budget_mb):
            for path in ("ours --mmap", "ours", "pyserini"):
                run = measured([PYTHON, __file__, WORKER, path, str(directory), str(budget), str(args.queries),
                                str(args.k)])
                lines = [line for line in run["output"].splitlines() if line.startswith("{")]
                if not lines:
                    raise SystemExit(f"{path} produced no result:\n{run['output'][-3000:]}")
                out = {**json.loads(lines[-1]), "index_type": index_type, "index_mb": index_mb,
                       "budget_mb": budget, "process_peak_rss_mb": run["peak_rss_mb"]}
                results["runs"].append(out)
                limit = f"address space + {budget:,} MB" if budget else "none"
                result = f"{out['hits']:,} hits in {out['seconds']:.1f} s" if out["ok"] else out["error"]
                rows.append([index_type, f"{index_mb:,.0f}", limit, path, result,
                             f"{out['peak_rss_mb']:,.0f}", f"{out['peak_rss_mb'] - out['rss_before_mb']:,.0f}"])
                print(" | ".join(rows[-1]), flush=True)
    print()
    print(table(rows, ["index", "index MB", "limit", "searcher", "result", "peak RSS MB",
                       "peak RSS - start-up RSS MB"]))
    print(f"wrote {write_json('mmap_search.json', results)}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == WORKER:
        worker(sys.argv[2:])
    else:
        main()
