"""``python -m pyserini_dense_ext.fuse``: fuse existing run files into one run.

Like ``python -m pyserini.fusion`` but with every method of ``pyserini_dense_ext.fusion``
(min-fill linear, interleave, weighted sum, RRF, CombSUM, CombMNZ), strict run reading (a bad
line names its file and line) and ties broken by docid.
"""
from __future__ import annotations

import argparse
import sys

import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from .cli import run_cli
from .fusion import METHODS, NORMALIZATIONS
from .io.runs import FORMATS

EXAMPLE = """examples:
  python -m pyserini_dense_ext.fuse --runs runs/bm25.trec runs/dense.trec --method rrf --output runs/rrf.trec
  python -m pyserini_dense_ext.fuse --runs runs/bm25.trec runs/dense.trec --method linear \\
    --alpha 0.1 --normalization centred --output runs/hybrid.trec

methods:
""" + "".join(f"  {name:<11}{m.summary}\n" for name, m in METHODS.items())


def add_method_options(p: argparse.ArgumentParser, with_method: bool = True) -> None:
    """Method choice and its parameters; a parameter the chosen method does not take is an error."""
    if with_method:
        p.add_argument("--method", choices=sorted(METHODS), required=True, help="fusion method (see below)")
    p.add_argument("--alpha", type=float, default=None,
                   help="linear: weight of the sparse (first) list, or of the dense one with --weight-on-dense "
                        "(default 0.1); weighted: weight of the first list, others 1 (default 1.0)")
    p.add_argument("--weight-on-dense", action="store_true", default=None,
                   help="linear: score = sparse + alpha*dense instead of alpha*sparse + dense")
    p.add_argument("--weights", type=float, nargs="+", default=None, metavar="W",
                   help="weighted: one weight per run (instead of --alpha)")
    p.add_argument("--normalization", choices=NORMALIZATIONS, default=None,
                   help="per-list score normalisation before fusing (linear/weighted default none, "
                        "combsum/combmnz default min-max; centred = Pyserini's HybridSearcher)")
    p.add_argument("--rrf-k", type=float, default=None, help="rrf: the k in 1/(k + rank) (default 60)")


def method_params(args: argparse.Namespace) -> dict:
    """The parameters given on the command line, checked against what the method takes."""
    given = {"alpha": args.alpha, "weight_on_dense": args.weight_on_dense, "weights": args.weights,
             "normalization": args.normalization, "rrf_k": args.rrf_k}
    params = {k: v for k, v in given.items() if v is not None}
    takes = METHODS[args.method].defaults
    unknown = sorted(set(params) - set(takes))
    if unknown:
        flags = ", ".join("--" + u.replace("_", "-") for u in unknown)
        raise ValueError(f"method {args.method!r} does not take {flags}")
    return params


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.fuse", epilog=EXAMPLE,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Fuse two or more TREC (or MS MARCO) run files query by query and "
                                            "write the fused run.")
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN",
                   help="run files, in order (linear: sparse first, then dense; interleave: first run leads)")
    add_method_options(p)
    p.add_argument("--depth", type=int, default=None, help="use only each run's top DEPTH hits (default: all)")
    p.add_argument("--k", "--hits", dest="k", type=int, default=1000, help="hits per query to write (default 1000)")
    p.add_argument("--output", required=True, help="fused run file to write (atomically)")
    p.add_argument("--output-format", choices=FORMATS, default="trec", help="run format (default trec)")
    p.add_argument("--run-tag", default=None, help="last column of TREC lines (default: the method name)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .fusion import fuse, missing_queries
    from .io.runs import read_run, write_run

    params = method_params(args)
    if len(args.runs) < 2:
        raise ValueError("--runs needs at least two run files")
    runs = [read_run(path) for path in args.runs]
    for i, qids in missing_queries(runs):
        print(f"warning: {args.runs[i]} has no hits for {len(qids)} queries the other runs have, e.g. {qids[:3]}; "
              f"those are fused from the other runs", file=sys.stderr)
    fused = fuse(runs, args.method, k=args.k, depth=args.depth, **params)
    write_run(args.output, fused, tag=args.run_tag or args.method, fmt=args.output_format)
    print(f"wrote {args.output}: {len(fused)} queries fused with {args.method}")
    return 0


if __name__ == "__main__":
    run_cli(main)
