"""Corpus encoding into an index dir, resumable: progress is kept in durable chunks.

Vectors are written chunk by chunk to a hidden ``.<name>.partial`` dir beside the output (each
chunk renamed into place when complete). A killed run, re-run with the same arguments, skips
finished chunks, and the index dir itself appears only at the end, by rename.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..index import IndexMeta, build_faiss_index, write_index_dir
from ..io.corpus import Doc

STATE_FILE = "state.json"


def shard_slice(n: int, shard_id: int, shard_num: int) -> slice:
    """Contiguous shard ``shard_id`` of ``shard_num`` over n items (Pyserini's split: the last takes the rest)."""
    if shard_num < 1 or not 0 <= shard_id < shard_num:
        raise ValueError(f"need 0 <= shard-id < shard-num, got shard-id {shard_id}, shard-num {shard_num}")
    size = n // shard_num
    start = shard_id * size
    return slice(start, n if shard_id == shard_num - 1 else start + size)


def partial_dir(out_dir: Path) -> Path:
    return out_dir.with_name(f".{out_dir.name}.partial")


def _fingerprint(docids: Sequence[str], encoder_id: dict[str, Any], chunk_size: int) -> str:
    h = hashlib.sha256(json.dumps({"encoder": encoder_id, "chunk_size": chunk_size}, sort_keys=True).encode())
    for d in docids:
        h.update(d.encode() + b"\n")
    return h.hexdigest()


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def encode_chunks(docs: Sequence[Doc], model: Any, work: Path, encoder_id: dict[str, Any], chunk_size: int = 1024,
                  batch_size: int = 32, progress: bool = True) -> np.ndarray:
    """Encode ``docs`` into ``work/chunk-*.npy``, resuming finished chunks; return all vectors in order."""
    fingerprint = _fingerprint([d.docid for d in docs], encoder_id, chunk_size)
    state_path = work / STATE_FILE
    if work.exists():
        state = json.loads(state_path.read_text()) if state_path.is_file() else {}
        if state.get("fingerprint") != fingerprint:
            raise ValueError(f"{work} holds a partial encoding made with other arguments or another corpus; "
                             "re-run with the same arguments to resume, or delete it to start over")
    else:
        work.mkdir(parents=True)
        state_path.write_text(json.dumps({"fingerprint": fingerprint, "encoder": encoder_id}))
    n_chunks = -(-len(docs) // chunk_size)
    names = [work / f"chunk-{c:06d}.npy" for c in range(n_chunks)]
    done = sum(1 for p in names if p.is_file())
    with tqdm(total=len(docs), desc="encoding corpus", unit="doc", disable=not progress,
              initial=min(done * chunk_size, len(docs))) as bar:
        for c, path in enumerate(names):
            if path.is_file():
                continue
            texts = [d.contents for d in docs[c * chunk_size:(c + 1) * chunk_size]]
            _save_npy_atomic(path, model.encode(texts, "document", batch_size=batch_size, progress=progress))
            bar.update(len(texts))
    return np.concatenate([np.load(p, allow_pickle=False) for p in names])


def encode_corpus(docs: Sequence[Doc], model: Any, out_dir: str | Path, encoder_id: dict[str, Any],
                  index_type: str = "flat", chunk_size: int = 1024, batch_size: int = 32, overwrite: bool = False,
                  progress: bool = True, **index_options: Any) -> Path:
    """Encode documents and write a Pyserini-compatible index dir; returns its path."""
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    work = partial_dir(out)
    vectors = encode_chunks(docs, model, work, encoder_id, chunk_size, batch_size, progress)
    rows_per_doc = vectors.shape[1] if vectors.ndim == 3 else 1
    rows = vectors.reshape(-1, vectors.shape[-1])
    row_docids = [d.docid for d in docs for _ in range(rows_per_doc)]
    if progress:
        print(f"building {index_type} index over {len(rows)} rows ({rows_per_doc} per document)", flush=True)
    index = build_faiss_index(rows, index_type, **index_options)
    meta = IndexMeta(dim=rows.shape[1], num_rows=len(rows), num_docs=len(docs), rows_per_doc=rows_per_doc,
                     index_type=index_type, encoder=encoder_id)
    write_index_dir(out, index, row_docids, meta, overwrite=overwrite)
    shutil.rmtree(work, ignore_errors=True)
    return out
