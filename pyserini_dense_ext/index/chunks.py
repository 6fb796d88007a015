"""Resumable corpus encoding: vectors kept in durable chunk files until the index dir is written.

Vectors are written chunk by chunk to a hidden ``.<name>.partial`` dir beside the output (each
chunk renamed into place when complete). A killed run, re-run with the same arguments, skips
finished chunks; a partial dir made by other arguments or another corpus is refused. The index
is then written from the chunk files one at a time (:func:`iter_chunks`), so no step holds all
vectors.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..io.atomic import fsync_dir
from ..io.corpus import DocSource

STATE_FILE = "state.json"
DOCIDS = "docids.txt"  # the encoded documents' docids, one a line, written as the chunks are read


def partial_dir(out_dir: Path) -> Path:
    return out_dir.with_name(f".{out_dir.name}.partial")


def _fingerprint(docs: DocSource, encoder_id: dict[str, Any], chunk_size: int) -> str:
    """This job's identity: the encoder, the chunking, the docids in order (which chunk holds which
    documents) and the documents' texts."""
    key = {"encoder": encoder_id, "chunk_size": chunk_size, "docids": docs.fingerprint(),
           "corpus": docs.corpus_fingerprint()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)  # the rename itself survives a power cut


def chunk_paths(docs: DocSource, work: Path, encoder_id: dict[str, Any], chunk_size: int) -> list[Path]:
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


def pending_chunks(docs: DocSource, names: Sequence[Path], chunk_size: int, work: Path) -> Iterator[tuple[int, list[str]]]:
    """``(chunk number, texts)`` of each chunk not yet on disk, in order.

    Every document is read, finished chunks included: their docids are written to
    ``work/docids.txt`` as they pass, completed by rename once the last chunk has been read.
    """
    partial = work / (DOCIDS + ".tmp")
    with open(partial, "w", encoding="utf-8") as ids:
        chunk, texts = 0, []
        for doc in docs.docs():
            ids.write(doc.docid + "\n")
            texts.append(doc.contents)
            if len(texts) == chunk_size:
                if not names[chunk].is_file():
                    yield chunk, texts
                chunk, texts = chunk + 1, []
        if texts and not names[chunk].is_file():
            yield chunk, texts
    os.replace(partial, work / DOCIDS)


def save_chunk(path: Path, vectors: np.ndarray) -> None:
    """Make one finished chunk durable: written to ``*.tmp``, fsynced, renamed."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    _write_atomic(path, buffer.getvalue())


def load_chunk(path: Path, expected: int) -> np.ndarray:
    """One chunk's vectors, ``(n, d)`` or ``(n, m, d)``; a chunk of the wrong length (not ours, or tampered
    with) is an error."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path} is not a plain float32 .npy chunk ({e}); delete the partial dir to start "
                         "over") from None
    if array.dtype != np.float32 or array.ndim not in (2, 3) or len(array) != expected:
        raise ValueError(f"{path} holds {array.dtype} {array.shape}, expected {expected} float32 rows; "
                         "delete the partial dir to start over")
    return array


def iter_chunks(paths: Sequence[Path], n_docs: int, chunk_size: int) -> Iterator[np.ndarray]:
    """The chunks in order, one in memory at a time, each checked by :func:`load_chunk`."""
    for c, path in enumerate(paths):
        yield load_chunk(path, min(chunk_size, n_docs - c * chunk_size))
