"""Resumable corpus encoding: vectors kept in durable chunk files until the index dir is written.

Vectors are written chunk by chunk to a hidden ``.<name>.partial`` dir beside the output (each
chunk renamed into place when complete). A killed run, re-run with the same arguments, skips
finished chunks; a partial dir made by other arguments or another corpus is refused.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io.atomic import fsync_dir
from ..io.corpus import Doc
from ..io.fingerprint import docs_fingerprint

STATE_FILE = "state.json"


def partial_dir(out_dir: Path) -> Path:
    return out_dir.with_name(f".{out_dir.name}.partial")


def _fingerprint(docs: Sequence[Doc], encoder_id: dict[str, Any], chunk_size: int) -> str:
    """This job's identity: the encoder, the chunking, the docids in order (which chunk holds which
    documents) and the documents' texts."""
    h = hashlib.sha256(json.dumps({"encoder": encoder_id, "chunk_size": chunk_size, "corpus": docs_fingerprint(docs)},
                                  sort_keys=True).encode())
    for d in docs:
        h.update(d.docid.encode("utf-8", "surrogatepass") + b"\n")
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
    fingerprint = _fingerprint(docs, encoder_id, chunk_size)
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
