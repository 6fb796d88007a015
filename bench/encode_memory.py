"""Streaming encode: peak memory of ``python -m pyserini_dense_ext.encode`` against corpus size, next to Pyserini's.

Makes synthetic corpora (60-word documents, ``bench/synthetic.py``) and a tiny random model
(1 layer, width 64), then runs each encode as a fresh process and reads its peak resident memory
from the kernel (``wait4``'s ``ru_maxrss``). Our encode validates the whole corpus in a first
pass that keeps 8 bytes per document, then reads, encodes and writes it chunk by chunk, so its
peak should not grow with the corpus (target: within +-10% from 5,000 to 1,000,000 documents).
Pyserini's ``encode`` (run through our launcher, same model, flat FAISS output) is measured up to
``--pyserini-max`` documents.

    python bench/encode_memory.py                       # 5,000 and 1,000,000 documents
    python bench/encode_memory.py --sizes 5000 200000   # a shorter run
"""
from __future__ import annotations

import argparse
import json
import shutil

from common import OUTPUT, machine, table, write_json
from synthetic import PYTHON, measured, synthetic_corpus, tiny_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[5_000, 1_000_000], help="documents per corpus")
    p.add_argument("--pyserini-max", type=int, default=200_000, help="largest corpus Pyserini's encode is run on")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()

    model = tiny_model()
    dim = json.loads((model / "config.json").read_text())["hidden_size"]
    work = OUTPUT / "encode_memory"
    rows, results = [], {"machine": machine(), "model": str(model), "runs": []}
    for n in args.sizes:
        corpus = synthetic_corpus(n)
        out = work / f"ours-{n}"
        shutil.rmtree(out, ignore_errors=True)
        ours = measured([PYTHON, "-m", "pyserini_dense_ext.encode", "input", "--corpus", str(corpus), "encoder",
                         "--encoder", str(model), "--batch-size", str(args.batch_size), "output", "--index", str(out),
                         "--quiet"])
        if ours["returncode"] != 0:
            raise SystemExit(f"our encode failed:\n{ours['output']}")
        runs = [("ours", ours)]
        if n <= args.pyserini_max:
            theirs_out = work / f"pyserini-{n}"
            shutil.rmtree(theirs_out, ignore_errors=True)
            theirs = measured([PYTHON, "-m", "pyserini_dense_ext.launch", "encode", "input", "--corpus", str(corpus),
                               "--fields", "title", "text", "output", "--embeddings", str(theirs_out), "--to-faiss",
                               "encoder", "--encoder", str(model), "--fields", "title", "text", "--batch-size",
                               str(args.batch_size), "--dimension", str(dim), "--device", "cpu"])
            if theirs["returncode"] != 0:
                raise SystemExit(f"Pyserini's encode failed:\n{theirs['output'][-3000:]}")
            runs.append(("Pyserini encode", theirs))
        for name, run in runs:
            results["runs"].append({"documents": n, "path": name, "seconds": run["seconds"],
                                    "docs_per_second": n / run["seconds"], "peak_rss_mb": run["peak_rss_mb"]})
            rows.append([f"{n:,}", name, f"{run['seconds']:.1f}", f"{n / run['seconds']:.0f}",
                         f"{run['peak_rss_mb']:.0f}"])
            print(f"{n} documents, {name}: {run['seconds']:.1f} s, peak RSS {run['peak_rss_mb']:.0f} MB", flush=True)
    ours = [r for r in results["runs"] if r["path"] == "ours"]
    growth = ours[-1]["peak_rss_mb"] / ours[0]["peak_rss_mb"] - 1
    results["ours_peak_rss_growth"] = growth
    print()
    print(table(rows, ["documents", "encode", "seconds", "docs/s", "peak RSS MB"]))
    print(f"\nour peak RSS from {ours[0]['documents']:,} to {ours[-1]['documents']:,} documents: {growth:+.1%} "
          f"(target within +-10%)")
    print(f"wrote {write_json('encode_memory.json', results)}")


if __name__ == "__main__":
    main()
