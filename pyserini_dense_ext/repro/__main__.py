"""``python -m pyserini_dense_ext.repro``: list, run and check the reproduction matrix (``repro/*.yaml``).

Each row re-runs the commands behind one published number in a scratch dir (shared indexes and
models built once and reused), scores the run with our eval module and prints expected vs
measured; ``--check`` exits 1 when a row drifts beyond its tolerance, fails, or (``same_as``)
ranks differently from the row it must equal.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from ..cli import run_cli
from .matrix import MATRIX_DIR, ROOT

EXAMPLE = """examples:
  python -m pyserini_dense_ext.repro --list
  python -m pyserini_dense_ext.repro --run cranfield-bm25 cranfield-dense
  python -m pyserini_dense_ext.repro --run all --check --fast          # what CI runs (.ci/run)
  python -m pyserini_dense_ext.repro --run all --check                 # SciFact rows too (hours on 2 cores)
  python -m pyserini_dense_ext.repro --run scifact-minilm --reuse scifact-minilm=indexes/scifact-minilm
  python -m pyserini_dense_ext.repro --bench hybrid-search             # a speed row: ours vs Pyserini, same run
  python -m pyserini_dense_ext.repro --bench --no-run                  # the speed table from earlier results
  python -m pyserini_dense_ext.repro --write-docs                      # docs/reproductions.md + README tables
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.repro", description=__doc__.split("\n\n")[1],
                                epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="list the rows (fast ones marked) and benchmarks")
    what.add_argument("--run", nargs="+", metavar="NAME", help="rows to run, or 'all'")
    what.add_argument("--bench", nargs="*", metavar="NAME", help="speed rows to run (none named: all)")
    what.add_argument("--write-docs", action="store_true",
                      help="write docs/reproductions.md and the marked tables of README.md and docs/*.md")
    p.add_argument("--check", action="store_true", help="exit 1 when a row drifts beyond its tolerance or fails")
    p.add_argument("--fast", action="store_true", help="only rows marked fast (minutes on 2 cores)")
    p.add_argument("--matrix", type=Path, default=MATRIX_DIR, help="dir of matrix YAML files (default: repro/)")
    p.add_argument("--scratch", type=Path, default=ROOT / "repro" / "output",
                   help="where steps and runs are built and reused (default: repro/output, gitignored)")
    p.add_argument("--rebuild", action="store_true", help="rebuild shared steps even when their command is unchanged")
    p.add_argument("--reuse", nargs="+", default=[], metavar="STEP=DIR",
                   help="use DIR as the output of shared step STEP instead of building it (an index built before)")
    p.add_argument("--no-run", action="store_true", help="--bench: read the scripts' last JSON results, run nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import matrix as matrix_module
    from .bench import ratio, run_bench
    from .report import bench_table, result_table, write_docs
    from .runner import Runner

    matrix = matrix_module.load(args.matrix)
    if args.list:
        for row in matrix.rows.values():
            metrics = ", ".join(f"{m} {v:.4f}" for m, v in row.expected.items())
            same = f" = {row.same_as}" if row.same_as else ""
            print(f"{row.name:<34}{'fast' if row.fast else 'slow':<6}{row.label}  [{metrics}{same}]")
        for b in matrix.bench.values():
            print(f"{b.name:<34}{'bench':<6}{b.what}")
        return 0
    if args.write_docs:
        changed = write_docs(matrix)
        print("wrote " + (", ".join(str(p.relative_to(ROOT)) for p in changed) if changed else "nothing (up to date)"))
        return 0
    if args.bench is not None:
        unknown = [n for n in args.bench if n not in matrix.bench]
        if unknown:
            raise ValueError(f"unknown benchmark(s) {unknown}; --list shows them")
        chosen = [matrix.bench[n] for n in args.bench or matrix.bench]
        ran: set[tuple[str, str]] = set()
        for b in chosen:  # a script that reports several ratios runs once
            if not args.no_run and (b.script, b.args) not in ran:
                run_bench(b)
                ran.add((b.script, b.args))
        measured = {b.name: ratio(b) for b in chosen}
        print(bench_table(chosen, measured, every=matrix.bench))
        return 0
    rows = matrix.select(args.run, fast=args.fast)
    if not rows:
        raise ValueError("no rows selected" + (" (--fast keeps only rows marked fast)" if args.fast else ""))
    print(f"{len(rows)} row(s), scratch {args.scratch}", flush=True)
    if any("=" not in r for r in args.reuse):
        raise ValueError("--reuse takes STEP=DIR")
    reuse = dict(r.split("=", 1) for r in args.reuse)
    results = Runner(matrix, args.scratch, rebuild=args.rebuild, reuse={k: Path(v) for k, v in reuse.items()},
                     log=lambda line: print(line, file=sys.stderr, flush=True)).run(rows)
    print(result_table(results))
    bad = [r.row.name for r in results if not r.ok]
    if bad:
        print(f"\n{len(bad)} row(s) not reproduced: {', '.join(bad)}")
    return 1 if (bad and args.check) or any(r.error for r in results) else 0


if __name__ == "__main__":
    run_cli(main)
