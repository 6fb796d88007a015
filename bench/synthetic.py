"""Inputs the scale benchmarks make for themselves: a synthetic corpus, queries, a tiny model, random vectors.

Everything is deterministic (seeded) and written once under ``bench/output/synthetic/``; a later
run with the same parameters reuses it.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

from common import OUTPUT, ROOT

SYNTHETIC = OUTPUT / "synthetic"
# The vocabulary of the synthetic texts: common English and the words of the two test collections' topics.
WORDS = ("the of and in to a is for on with by as at from that this are was were be been has have not or which "
         "protein cell cells gene genes cancer risk patients study effect effects increased reduced human mice "
         "expression disease treatment clinical trial blood brain heart virus infection immune response drug dose "
         "wing flow heat pressure boundary layer mach number shock aircraft velocity surface temperature plate "
         "turbulent laminar supersonic hypersonic jet nozzle body drag lift stress buckling shell cylinder").split()


def synthetic_corpus(n_docs: int, words_per_doc: int = 60, seed: int = 0) -> Path:
    """``n_docs`` BEIR-style documents of ``words_per_doc`` random words (title: 4 words), as ``corpus.jsonl``."""
    import numpy as np

    path = SYNTHETIC / f"corpus-{n_docs}x{words_per_doc}-s{seed}.jsonl"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"writing {path}", flush=True)
    vocab = np.array(WORDS)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for start in range(0, n_docs, 10_000):
            rng = np.random.default_rng([seed, start])
            picks = vocab[rng.integers(0, len(vocab), (min(10_000, n_docs - start), words_per_doc + 4))]
            f.writelines(json.dumps({"_id": f"doc{start + i}", "title": " ".join(row[:4]), "text": " ".join(row[4:])})
                         + "\n" for i, row in enumerate(picks))
    os.replace(tmp, path)
    return path


def synthetic_topics(n_queries: int, words: int = 6, seed: int = 1) -> Path:
    """``n_queries`` queries of ``words`` random words as a Pyserini topics TSV (``qid<TAB>text``)."""
    import numpy as np

    path = SYNTHETIC / f"topics-{n_queries}x{words}-s{seed}.tsv"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        picks = np.array(WORDS)[np.random.default_rng(seed).integers(0, len(WORDS), (n_queries, words))]
        path.write_text("".join(f"q{i}\t{' '.join(row)}\n" for i, row in enumerate(picks)), encoding="utf-8")
    return path


def tiny_model(hidden: int = 64, layers: int = 1) -> Path:
    """A random ``layers``-layer BERT of width ``hidden`` saved as a RepBERT-family model dir (mean pooling, unit
    vectors, 128 document tokens): encoding costs little, so the benchmarks measure everything around it."""
    from pyserini_dense_ext.encoders import load_model
    from pyserini_dense_ext.encoders.presets import random_bert

    path = SYNTHETIC / f"tiny-bert-h{hidden}-l{layers}"
    if not (path / "dense_ext.json").is_file():
        raw = random_bert(SYNTHETIC / f".raw-bert-h{hidden}-l{layers}", WORDS, hidden=hidden, layers=layers)
        load_model(raw, family="repbert", pooling="mean", l2_norm=True, doc_max_length=128,
                   query_max_length=32).save(path)
    return path


def synthetic_rows(n: int, d: int, seed: int = 0, chunk: int = 65536) -> Iterator:
    """``n`` random unit-length float32 rows of dimension ``d``, chunk by chunk (the same rows every time)."""
    import numpy as np

    for c, start in enumerate(range(0, n, chunk)):
        rows = np.random.default_rng([seed, c]).standard_normal((min(chunk, n - start), d), dtype=np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        yield rows


def synthetic_index(n_rows: int, d: int, index_type: str = "flat", rows_per_doc: int = 1, seed: int = 0) -> Path:
    """An index dir of ``n_rows`` random unit rows under ``bench/output/synthetic/``, built once (streamed to disk).

    With ``rows_per_doc`` m, each document owns m adjacent rows (an ME-BERT layout)."""
    from pyserini_dense_ext.index import IndexMeta
    from pyserini_dense_ext.index.faiss_dir import write_index_dir_from_chunks

    name = f"{index_type}-{n_rows}x{d}" + (f"-m{rows_per_doc}" if rows_per_doc > 1 else "") + f"-s{seed}"
    out = SYNTHETIC / name
    meta = IndexMeta(dim=d, num_rows=n_rows, num_docs=n_rows // rows_per_doc, rows_per_doc=rows_per_doc,
                     index_type=index_type, encoder={"synthetic": f"unit gaussian, seed {seed}"})
    if (out / "dense_ext_index.json").is_file() and IndexMeta.load(out) == meta:
        return out
    print(f"writing {out} ({n_rows} rows)", flush=True)
    docids = (f"doc{i // rows_per_doc}" for i in range(n_rows))
    write_index_dir_from_chunks(out, lambda: synthetic_rows(n_rows, d, seed), docids, meta, overwrite=True)
    return out


def measured(cmd: Sequence[str], env: dict[str, str] | None = None, limit_bytes: int | None = None) -> dict:
    """Run ``cmd`` (a fresh process, the repo importable) and return its wall seconds, peak RSS (MB, the kernel's
    ``ru_maxrss`` of that process alone, from ``wait4``), exit code and output.

    ``limit_bytes``: the process's address-space limit (``ulimit -v``), set before it starts.
    """
    import tempfile

    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=limit if limit_bytes else None)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read()
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "returncode": proc.returncode,
            "output": output}


PYTHON = sys.executable
