"""``python -m pyserini_dense_ext.fusion``: fuse existing run files into one run.

Like ``python -m pyserini.fusion`` (same module name) but with every method of ``pyserini_dense_ext.fusion``
(min-fill linear, interleave, weighted sum, RRF, CombSUM, CombMNZ), strict run reading (a bad
line names its file and line) and ties broken by docid.
"""
from __future__ import annotations

import argparse
import sys

import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from ..cli import add_fusion_options, fusion_from_args, run_cli
from ..io.runs import FORMATS
from . import METHODS

EXAMPLE = """examples:
  python -m pyserini_dense_ext.fusion --runs runs/bm25.trec runs/dense.trec --method rrf --output runs/rrf.trec
  python -m pyserini_dense_ext.fusion --runs runs/bm25.trec runs/dense.trec --method linear \\
    --alpha 0.1 --normalization centred --output runs/hybrid.trec

methods:
""" + "".join(f"  {name:<11}{m.summary}\n" for name, m in METHODS.items())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.fusion", epilog=EXAMPLE,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Fuse two or more TREC (or MS MARCO) run files query by query and "
                                            "write the fused run.")
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN",
                   help="run files, in order (linear: sparse first, then dense; interleave: first run leads)")
    add_fusion_options(p)
    p.add_argument("--depth", type=int, default=None, help="use only each run's top DEPTH hits (default: all)")
    p.add_argument("--k", "--hits", dest="k", type=int, default=1000, help="hits per query to write (default 1000)")
    p.add_argument("--output", required=True, help="fused run file to write (atomically)")
    p.add_argument("--output-format", choices=FORMATS, default="trec", help="run format (default trec)")
    p.add_argument("--run-tag", default=None, help="last column of TREC lines (default: the method name)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..io.runs import read_run, write_run
    from . import fuse, missing_queries

    fusion = fusion_from_args(args)
    if len(args.runs) < 2:
        raise ValueError("--runs needs at least two run files")
    runs = [read_run(path) for path in args.runs]
    for i, qids in missing_queries(runs):
        print(f"warning: {args.runs[i]} has no hits for {len(qids)} queries the other runs have, e.g. {qids[:3]}; "
              f"those are fused from the other runs", file=sys.stderr)
    fused = fuse(runs, fusion, k=args.k, depth=args.depth)
    write_run(args.output, fused, tag=args.run_tag or args.method, fmt=args.output_format)
    print(f"wrote {args.output}: {len(fused)} queries fused with {args.method}")
    return 0


if __name__ == "__main__":
    run_cli(main)
