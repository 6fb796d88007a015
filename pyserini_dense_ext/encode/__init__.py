"""Corpus encoding into an index dir, resumable: progress is kept in durable chunks.

Vectors are written chunk by chunk to a hidden ``.<name>.partial`` dir beside the output (each
chunk renamed into place when complete). A killed run, re-run with the same arguments, skips
finished chunks, and the index dir itself appears only at the end, by rename.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..index import IndexMeta, build_faiss_index, write_index_dir
from ..io.atomic import fsync_dir
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


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)  # the rename itself survives a power cut


def chunk_paths(docs: Sequence[Doc], work: Path, encoder_id: dict[str, Any], chunk_size: int) -> list[Path]:
    """Open (or create) the partial dir for this exact job and name its chunk files, finished or not.

    The state file is written by rename, so a kill at any instant leaves either no state (an empty
    dir, started afresh) or a whole one; a leftover ``*.tmp`` chunk is ignored and later overwritten.
    """
    if chunk_size < 1:
        raise ValueError(f"--chunk-size must be positive, got {chunk_size}")
    fingerprint = _fingerprint([d.docid for d in docs], encoder_id, chunk_size)
    state_path = work / STATE_FILE
    work.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {}
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            state = {"fingerprint": "unreadable"}
    elif not any(work.glob("chunk-*.npy")):
        _write_atomic(state_path, json.dumps({"fingerprint": fingerprint, "encoder": encoder_id}).encode())
        state = {"fingerprint": fingerprint}
    if state.get("fingerprint") != fingerprint:
        raise ValueError(f"{work} holds a partial encoding made with other arguments or another corpus; "
                         "re-run with the same arguments to resume, or delete it to start over")
    n_chunks = -(-len(docs) // chunk_size)
    return [work / f"chunk-{c:06d}.npy" for c in range(n_chunks)]


def save_chunk(path: Path, vectors: np.ndarray) -> None:
    """Make one finished chunk durable: written to ``*.tmp``, fsynced, renamed."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    _write_atomic(path, buffer.getvalue())


def load_chunks(paths: Sequence[Path], n_docs: int, chunk_size: int) -> np.ndarray:
    """All chunks in order; a chunk of the wrong length (not ours, or tampered with) is an error."""
    arrays = []
    for c, path in enumerate(paths):
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"{path} is not a plain float32 .npy chunk ({e}); delete the partial dir to start "
                             "over") from None
        expected = min(chunk_size, n_docs - c * chunk_size)
        if array.dtype != np.float32 or array.ndim not in (2, 3) or len(array) != expected:
            raise ValueError(f"{path} holds {array.dtype} {array.shape}, expected {expected} float32 rows; "
                             "delete the partial dir to start over")
        arrays.append(array)
    return np.concatenate(arrays)


def encode_chunks(docs: Sequence[Doc], model: Any, work: Path, encoder_id: dict[str, Any], chunk_size: int = 1024,
                  batch_size: int = 32, progress: bool = True) -> np.ndarray:
    """Encode ``docs`` into ``work/chunk-*.npy``, resuming finished chunks; return all vectors in order."""
    names = chunk_paths(docs, work, encoder_id, chunk_size)
    done = sum(1 for p in names if p.is_file())
    with tqdm(total=len(docs), desc="encoding corpus", unit="doc", disable=not progress,
              initial=min(done * chunk_size, len(docs))) as bar:
        for c, path in enumerate(names):
            if path.is_file():
                continue
            texts = [d.contents for d in docs[c * chunk_size:(c + 1) * chunk_size]]
            save_chunk(path, model.encode(texts, "document", batch_size=batch_size, progress=progress))
            bar.update(len(texts))
    return load_chunks(names, len(docs), chunk_size)


def encode_corpus(docs: Sequence[Doc], model: Any, out_dir: str | Path, encoder_id: dict[str, Any],
                  index_type: str = "flat", chunk_size: int = 1024, batch_size: int = 32, overwrite: bool = False,
                  progress: bool = True, shard_id: int = 0, shard_num: int = 1, ray: Any = None,
                  **index_options: Any) -> Path:
    """Encode documents and write a Pyserini-compatible index dir; returns its path.

    ``docs`` is shard ``shard_id`` of ``shard_num`` (recorded for ``index.merge``); ``ray`` (a
    :class:`~pyserini_dense_ext.encode.distributed.RayOptions`) spreads chunks over Ray workers.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    if not docs:
        raise ValueError(f"no documents to encode into {out}")
    work = partial_dir(out)
    if ray is not None:
        from .distributed import encode_chunks_ray
        vectors = encode_chunks_ray(docs, ray, work, encoder_id, chunk_size, batch_size, progress)
    else:
        vectors = encode_chunks(docs, model, work, encoder_id, chunk_size, batch_size, progress)
    rows_per_doc = vectors.shape[1] if vectors.ndim == 3 else 1
    rows = vectors.reshape(-1, vectors.shape[-1])
    row_docids = [d.docid for d in docs for _ in range(rows_per_doc)]
    if progress:
        print(f"building {index_type} index over {len(rows)} rows ({rows_per_doc} per document)", flush=True)
    index = build_faiss_index(rows, index_type, **index_options)
    meta = IndexMeta(dim=rows.shape[1], num_rows=len(rows), num_docs=len(docs), rows_per_doc=rows_per_doc,
                     index_type=index_type, encoder=encoder_id, shard_id=shard_id, shard_num=shard_num)
    write_index_dir(out, index, row_docids, meta, overwrite=overwrite)
    shutil.rmtree(work, ignore_errors=True)
    return out
