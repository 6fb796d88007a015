"""Memory of CODER reranking and training at 5k and 500k synthetic documents: the corpus stays mapped, not copied.

Document vectors are read from a memory-mapped ``.npy`` (reconstructed once from the flat index),
gathered per batch; candidates are int32. So a process's anonymous memory (heap: model, batches,
candidate ids) should not grow with the corpus; only file-backed pages of the map that a batch
touched count towards its RSS, and the kernel can drop those at any time.

For each corpus size this builds a flat index of random unit vectors (d = 384, MiniLM's width),
256 queries with 1000 random candidates each and one judged positive, then runs each command in
a child process that samples its RSS (anonymous and file-backed, ``/proc/self/status``) every
20 ms and reports the peaks:

* ``rerank (cold)``: ``python -m pyserini_dense_ext.rerank`` when the vector cache is built first;
* ``rerank``: the same with the cache in place;
* ``train``: ``python -m pyserini_dense_ext.train coder`` for a few steps (MiniLM, batch 32).

    .venv/bin/python bench/coder_memory.py [--sizes 5000 500000] [--json bench/output/coder_memory.json]
"""
from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "output" / "coder_memory"
DIM, QUERIES, DEPTH = 384, 256, 1000
FIELDS = ("VmHWM", "RssAnon", "RssFile")


def status() -> dict[str, int]:
    """The RSS fields of /proc/self/status, in MiB."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in FIELDS:
                values[name] = int(rest.split()[0]) // 1024
    return values


def child(argv: list[str]) -> None:
    """Run ``python -m argv[0] argv[1:]`` here, sampling RSS; print the peaks as one JSON line at exit."""
    peaks = {"RssAnon": 0, "RssFile": 0}

    def sample() -> None:
        while True:
            now = status()
            for key in peaks:
                peaks[key] = max(peaks[key], now[key])
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    sys.argv = argv
    code = 0
    try:
        runpy.run_module(argv[0], run_name="__main__")
    except SystemExit as e:
        code = e.code or 0
    final = status()
    print("MEMORY " + json.dumps({"peak_rss_mib": final["VmHWM"], "peak_anon_mib": max(peaks["RssAnon"],
                                  final["RssAnon"]), "peak_file_mib": max(peaks["RssFile"], final["RssFile"]),
                                  "exit": code}), file=sys.stderr, flush=True)
    sys.exit(code)


def build_inputs(n: int, seed: int = 0) -> dict[str, Path]:
    """A flat index of n random unit vectors, topics, qrels and a 1000-candidate run; reused when present."""
    import faiss
    import numpy as np

    from pyserini_dense_ext.index import IndexMeta, write_index_dir
    from pyserini_dense_ext.io import write_run

    root = OUT / f"n{n}"
    paths = {"data": root, "index": root / "index", "topics": root / "queries.jsonl",
             "qrels": root / "qrels" / "train.tsv", "run": root / "run.trec"}
    if all(p.exists() for p in paths.values()):
        return paths
    rng = np.random.default_rng(seed)
    index = faiss.IndexFlatIP(DIM)
    for start in range(0, n, 50_000):
        block = rng.standard_normal((min(50_000, n - start), DIM), dtype=np.float32)
        index.add(block / np.linalg.norm(block, axis=1, keepdims=True))
    write_index_dir(paths["index"], index, [f"d{i}" for i in range(n)], IndexMeta(DIM, n, n), overwrite=True)
    del index
    words = "protein cell gene cancer risk patients study effect human mice expression disease treatment".split()
    paths["topics"].write_text("".join(json.dumps({"_id": f"q{i}", "text": " ".join(rng.choice(words, 6))}) + "\n"
                                       for i in range(QUERIES)))
    paths["qrels"].parent.mkdir(exist_ok=True)
    run, qrels = {}, []
    for i in range(QUERIES):
        docs = rng.choice(n, DEPTH, replace=False)
        run[f"q{i}"] = [(f"d{d}", float(DEPTH - r)) for r, d in enumerate(docs)]
        qrels.append(f"q{i} 0 d{docs[rng.integers(0, DEPTH)]} 1\n")
    paths["qrels"].write_text("".join(qrels))
    write_run(paths["run"], run)
    return paths


def measure(argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *argv], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [line for line in proc.stderr.splitlines() if line.startswith("MEMORY ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{' '.join(argv[:1])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("MEMORY "):])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    import pyserini_dense_ext  # noqa: F401
    from pyserini_dense_ext.encoders.presets import MINILM, minilm_dir
    from pyserini_dense_ext.index.vectors import CACHE_FILE
    from pyserini_dense_ext.io.fingerprint import key_path

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 500000], help="corpus sizes (documents)")
    p.add_argument("--model", default=str(minilm_dir() or ""), help="MiniLM dir (the demo extra by default)")
    p.add_argument("--train-steps", type=int, default=4, help="training steps measured (batch 32)")
    p.add_argument("--json", default=str(OUT.parent / "coder_memory.json"), help="where to write the rows")
    args = p.parse_args()
    if not Path(args.model, "config.json").is_file():
        p.error("--model: MiniLM not found (pip install '.[demo]')")
    flags = ["--family", "repbert", "--pooling", MINILM["pooling"], "--l2-norm", "--query-max-length",
             str(MINILM["query_max_length"]), "--doc-segment-id", "0"]
    rows = []
    for n in args.sizes:
        paths = build_inputs(n)
        for path in (paths["index"] / CACHE_FILE, key_path(paths["index"] / CACHE_FILE)):
            path.unlink(missing_ok=True)
        rerank = ["pyserini_dense_ext.rerank", "--run", str(paths["run"]), "--index", str(paths["index"]),
                  "--encoder", args.model, *flags, "--topics", str(paths["topics"]),
                  "--output", str(paths["run"].with_suffix(".reranked.trec")), "--quiet"]
        row = {"docs": n, "vectors_mib": n * DIM * 4 // 2**20,
               "rerank (cold)": measure(rerank), "rerank": measure(rerank)}
        train = ["pyserini_dense_ext.train", "coder", "--model", args.model, *flags, "--index",
                 str(paths["index"]), "--data", str(paths["data"]), "--negatives", str(paths["run"]),
                 "--output", str(OUT / f"n{n}" / "model"), "--overwrite", "--max-steps", str(args.train_steps),
                 "--batch-size", "32", "--dev-fraction", "0", "--quiet", "--no-plot"]
        row["train"] = measure(train)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'documents':>10} {'vectors MiB':>12} " + " ".join(f"{k:>30}" for k in ("rerank (cold)", "rerank",
                                                                                       "train")))
    print(f"{'':>23} " + " ".join(f"{'peak RSS / anon / file MiB':>30}" for _ in range(3)))
    for row in rows:
        cells = [f"{row[k]['peak_rss_mib']} / {row[k]['peak_anon_mib']} / {row[k]['peak_file_mib']}"
                 for k in ("rerank (cold)", "rerank", "train")]
        print(f"{row['docs']:>10} {row['vectors_mib']:>12} " + " ".join(f"{c:>30}" for c in cells))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
