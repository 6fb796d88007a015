"""``python -m pyserini_dense_ext.tune``: sweep alpha (or RRF's k) on judged training queries.

The sweep itself is :mod:`pyserini_dense_ext.fusion.sweep`; this command gets the lists from
run files (``tune --runs SPARSE DENSE``) or from the indexes, given as in the hybrid command
(``dense ... sparse ... tune ...``), prints the best value per method and metric, writes the
sweep as CSV and a plot (metric vs alpha, one line per method; RRF against its k in a second
column), and with ``--eval-qrels`` scores every method at its tuned value on held-out queries.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from .cli import parse_groups, run_cli
from .fusion import METHODS, NORMALIZATIONS
from .fusion.sweep import Best, Lists, Row, Variant, best_values, evaluate_tuned, lists_of_runs, sweep

DEFAULT_ALPHAS = "0,0.01,0.02,0.03,0.05,0.075,0.1,0.15,0.2,0.3,0.4,0.5,0.6,0.8,1,1.25,1.5,2,3,5"
DEFAULT_RRF_KS = "0,0.5,1,2,5,10,20,30,40,60,80,100,150,200"
# linear:min-max ranks exactly as linear:centred (the two differ by a constant per list), so it is left out.
DEFAULT_VARIANTS = ("linear", "linear:centred", "linear:z-score", "weighted", "weighted:z-score", "rrf", "combsum",
                    "combmnz", "interleave")
GROUPS = ("dense", "sparse", "tune")
EXAMPLE = """examples:
  # from run files (BM25 and dense, top 1000, on the training queries)
  python -m pyserini_dense_ext.tune tune --runs runs/bm25.train.trec runs/dense.train.trec \\
    --qrels ../shared/data/scifact/qrels/train.tsv --csv runs/sweep.csv
  # from the indexes, then score the tuned values on the test queries
  python -m pyserini_dense_ext.tune \\
    dense  --index indexes/scifact-minilm --encoder MODEL_DIR --family repbert --pooling mean --l2-norm \\
           --query-max-length 256 --doc-segment-id 0 \\
    sparse --index indexes/scifact-bm25 --k1 0.9 --b 0.4 \\
    tune   --topics ../shared/data/scifact/queries.jsonl --qrels ../shared/data/scifact/qrels/train.tsv \\
           --eval-qrels ../shared/data/scifact/qrels/test.tsv --csv runs/sweep.csv --threads 2

method variants are METHOD[:NORMALIZATION], e.g. linear:centred; normalisations: """ + ", ".join(NORMALIZATIONS)


def parse_grid(text: str, name: str) -> list[float]:
    """``"0,0.1,0.5"`` or ``"START:STOP:STEP"`` (STOP included) as a sorted list of floats."""
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            values = np.round(np.arange(start, stop + step / 2, step), 10).tolist()
        else:
            values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{name} {text!r}: give comma-separated numbers or START:STOP:STEP") from None
    if not values or any(v < 0 for v in values):
        raise ValueError(f"{name} {text!r}: give at least one non-negative value")
    return sorted(set(values))


def build_parsers() -> dict[str, argparse.ArgumentParser]:
    from .search.hybrid.options import dense_group, sparse_group

    top = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.tune",
                                  description="Tune the fusion weight alpha (and RRF's k) on judged queries: print "
                                              "the best value per method and metric, write the sweep as CSV and a "
                                              "PNG plot. Lists come from run files (tune --runs) or from indexes "
                                              "(the dense and sparse groups of the hybrid CLI).",
                                  epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("groups", nargs="*", metavar="{dense,sparse,tune}", help="argument groups")
    tune = argparse.ArgumentParser(prog="... tune", description="What to sweep and where the results go.",
                                   epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    tune.add_argument("--runs", nargs=2, metavar=("SPARSE", "DENSE"), default=None,
                      help="sparse and dense run files on the tuning queries (instead of the dense/sparse groups)")
    tune.add_argument("--eval-runs", nargs=2, metavar=("SPARSE", "DENSE"), default=None,
                      help="with --runs and --eval-qrels: the two runs on the held-out queries")
    tune.add_argument("--topics", default=None, help="with indexes: queries (TSV or BEIR queries.jsonl)")
    tune.add_argument("--qrels", required=True, help="judgements of the tuning (train/dev) queries")
    tune.add_argument("--eval-qrels", default=None,
                      help="judgements of held-out queries: score each method at its tuned value there")
    tune.add_argument("--methods", nargs="+", default=list(DEFAULT_VARIANTS), metavar="METHOD[:NORM]",
                      help=f"method variants to sweep (default: {' '.join(DEFAULT_VARIANTS)})")
    tune.add_argument("--alphas", default=DEFAULT_ALPHAS, help="alpha grid: comma list or START:STOP:STEP")
    tune.add_argument("--rrf-ks", default=DEFAULT_RRF_KS, help="RRF k grid: comma list or START:STOP:STEP")
    tune.add_argument("--metrics", nargs="+", default=["ndcg@10", "recall@100"],
                      help="metrics (the first picks the tuned value for --eval-qrels; default ndcg@10 recall@100)")
    tune.add_argument("--hits", type=int, default=1000, help="k0: hits per list (default 1000)")
    tune.add_argument("--k", type=int, default=1000, help="fused hits evaluated per query (default 1000)")
    tune.add_argument("--threads", type=int, default=1, help="search threads with indexes (default 1)")
    tune.add_argument("--save-runs", metavar="DIR", default=None,
                      help="with indexes: also write the sparse and dense runs there (to reuse with --runs)")
    tune.add_argument("--csv", required=True, help="sweep table to write (one row per method and value)")
    tune.add_argument("--plot", default=None, help="PNG to draw (default: the CSV path with .png)")
    tune.add_argument("--no-plot", action="store_true", help="skip the plot (no matplotlib needed)")
    tune.add_argument("--quiet", action="store_true", help="no progress bars")
    return {"": top, "dense": dense_group(), "sparse": sparse_group(), "tune": tune}



def write_csv(path: str | Path, rows: Sequence[Row], metrics: Sequence[str]) -> None:
    from .io.atomic import atomic_write

    with atomic_write(path) as f:
        writer = csv.writer(f)
        writer.writerow(["method", "parameter", "value", *metrics])
        for row in rows:
            param = METHODS[row["method"].split(":")[0]].sweep if row["method"].split(":")[0] in METHODS else None
            writer.writerow([row["method"], param or "", "" if row["value"] is None else row["value"],
                             *(f"{row[m]:.6f}" for m in metrics)])


def plot(path: str | Path, rows: Sequence[Row], metrics: Sequence[str]) -> None:
    """Metric vs alpha, one line per method (left); RRF vs its k (right); unswept methods as flat lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io.atomic import atomic_write

    methods = list(dict.fromkeys(r["method"] for r in rows))
    sweeps = {m: METHODS[m.split(":")[0]].sweep if m.split(":")[0] in METHODS else None for m in methods}
    has_rrf = any(s == "rrf_k" for s in sweeps.values())
    fig, axes = plt.subplots(len(metrics), 2 if has_rrf else 1, figsize=(12 if has_rrf else 7, 4 * len(metrics)),
                             squeeze=False)
    colors = {m: plt.cm.tab20(i % 20) for i, m in enumerate(methods)}
    for i, metric in enumerate(metrics):
        for j, (param, xlabel) in enumerate((("alpha", "alpha"), ("rrf_k", "RRF k"))[:axes.shape[1]]):
            ax = axes[i, j]
            top = 0.0
            for m in methods:
                pts = [(r["value"], r[metric]) for r in rows if r["method"] == m]
                if sweeps[m] == param:
                    ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", markersize=3, label=m,
                            color=colors[m])
                    top = max(top, max(x for x, _ in pts))
                elif sweeps[m] is None:  # unswept methods and the two lists alone: flat reference lines
                    style = ":" if m in ("sparse", "dense") else "--"
                    ax.axhline(pts[0][1], linestyle=style, linewidth=1.2, label=m, color=colors[m])
            ax.set_xscale("symlog", linthresh=0.01 if param == "alpha" else 1)
            ax.set_xlim(0, top * 1.05 if top else 1)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(metric)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def print_best(best: Best, metrics: Sequence[str]) -> None:
    print(f"{'method':<18}" + "".join(f"{'best ' + m:>24}" for m in metrics))
    for method, per_metric in best.items():
        cells = []
        for m in metrics:
            value, score = per_metric[m]
            cells.append(f"{score:.4f}" + (f" @ {value:g}" if value is not None else ""))
        print(f"{method:<18}" + "".join(f"{c:>24}" for c in cells))


def main(argv: list[str] | None = None) -> int:
    p = build_parsers()
    groups = parse_groups(p, sys.argv[1:] if argv is None else argv, GROUPS, omittable=("dense", "sparse"),
                          leading="tune", help_if_empty=True)
    args, dense_args, sparse_args = groups["tune"], groups["dense"], groups["sparse"]
    with_indexes = dense_args is not None or sparse_args is not None
    if with_indexes == (args.runs is not None):
        p[""].error("give either tune --runs SPARSE DENSE or both the dense and sparse groups")
    if with_indexes and (dense_args is None or sparse_args is None):
        p[""].error("with indexes, give both the dense and the sparse group")
    if with_indexes and not args.topics:
        p["tune"].error("with indexes, --topics is required")
    if args.eval_qrels and args.runs and not args.eval_runs:
        p["tune"].error("with --runs, --eval-qrels needs --eval-runs SPARSE DENSE")
    variants = [Variant.parse(v) for v in dict.fromkeys(args.methods)]
    alphas, rrf_ks = parse_grid(args.alphas, "--alphas"), parse_grid(args.rrf_ks, "--rrf-ks")
    from .eval.metrics import parse_metrics

    metrics = [m.name for m in parse_metrics(args.metrics)]
    if min(args.hits, args.k, args.threads) < 1:
        raise ValueError("--hits, --k and --threads must be positive")
    plot_path = None if args.no_plot else Path(args.plot or Path(args.csv).with_suffix(".png"))
    if plot_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("the plot needs matplotlib: pip install 'pyserini-dense-ext[plot]' "
                             "(or pass --no-plot)") from None

    from .io.qrels import read_qrels

    qrels = read_qrels(args.qrels)
    eval_qrels = read_qrels(args.eval_qrels) if args.eval_qrels else None
    progress = not args.quiet
    if with_indexes:
        from .io.topics import read_topics
        from .search.hybrid.options import hybrid_from_groups

        hybrid = hybrid_from_groups(dense_args, sparse_args)
        lists = hybrid.search_lists(read_topics(args.topics, set(qrels)), args.hits, args.threads, progress=progress)
        eval_lists = (hybrid.search_lists(read_topics(args.topics, set(eval_qrels)), args.hits, args.threads,
                                          progress=progress) if eval_qrels else None)
        if args.save_runs:
            _save_runs(Path(args.save_runs), {"tune": lists, "eval": eval_lists or {}})
    else:
        lists = _lists_from_runs(*args.runs, set(qrels), args.hits)
        eval_lists = _lists_from_runs(*args.eval_runs, set(eval_qrels), args.hits) if eval_qrels else None

    rows = sweep(lists, qrels, variants, alphas, rrf_ks, metrics, args.k, progress)
    write_csv(args.csv, rows, metrics)
    best = best_values(rows, metrics)
    print(f"tuned on {len(lists)} queries ({args.qrels}):")
    print_best(best, metrics)
    if plot_path is not None:
        plot(plot_path, rows, metrics)
    print(f"wrote {args.csv}" + (f" and {plot_path}" if plot_path else ""))
    if eval_lists is not None:
        held_out = evaluate_tuned(eval_lists, eval_qrels, best, variants, metrics, args.k)
        eval_csv = Path(args.csv).with_name(Path(args.csv).stem + ".eval.csv")
        write_csv(eval_csv, held_out, metrics)
        print(f"\nat the values tuned for {metrics[0]}, on {len(eval_lists)} held-out queries ({args.eval_qrels}):")
        print(f"{'method':<18}{'value':>10}" + "".join(f"{m:>14}" for m in metrics))
        for row in held_out:
            value = "" if row["value"] is None else f"{row['value']:g}"
            print(f"{row['method']:<18}{value:>10}" + "".join(f"{row[m]:>14.4f}" for m in metrics))
        print(f"wrote {eval_csv}")
    return 0


def _lists_from_runs(sparse_path: str, dense_path: str, qids: set[str], depth: int) -> Lists:
    from .io.runs import read_run

    sparse, dense = read_run(sparse_path), read_run(dense_path)
    if not (sparse.keys() | dense.keys()) & qids:
        raise ValueError(f"{sparse_path} and {dense_path} hold none of the {len(qids)} judged queries")
    return lists_of_runs(sparse, dense, qids, depth)


def _save_runs(out: Path, lists_by_split: dict[str, Lists]) -> None:
    from .fusion import to_ranking
    from .io.runs import write_run

    for split, lists in lists_by_split.items():
        for i, name in enumerate(("sparse", "dense")):
            if lists:
                write_run(out / f"{name}.{split}.trec", {q: to_ranking(h[i]) for q, h in lists.items()}, tag=name)


if __name__ == "__main__":
    run_cli(main)
