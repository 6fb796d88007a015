"""Resumable corpus jobs: results kept in durable chunk files until the final output is written.

A corpus job (encoding vectors, generating docT5query predictions) works through the documents
of a :class:`~pyserini_dense_ext.io.corpus.DocSource` in chunks of ``chunk_size``, reading them
one chunk at a time (:func:`pending_chunks`); each finished chunk is written to a hidden
``.<name>.partial`` dir beside the output, durably and by rename. A killed run, re-run with the
same arguments, skips finished chunks; a partial dir made by other arguments or another corpus
is refused. The chunk contents are the job's business (``.npy`` vectors here, JSONL predictions
in :mod:`pyserini_dense_ext.expand`); :func:`process_chunks` runs a job in this process and
:mod:`.distributed` on Ray workers (:func:`~.distributed.run_chunks` picks), both through the
same files. The output is then written from the chunk files one at a time (:func:`iter_chunks`),
so no step holds all results.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..io.atomic import fsync_dir
from ..io.corpus import Doc, DocSource
from ..progress import progress_bar

STATE_FILE = "state.json"
DOCIDS = "docids.txt"  # the processed documents' docids, one a line, written as the chunks are read


def partial_dir(out_dir: Path) -> Path:
    return out_dir.with_name(f".{out_dir.name}.partial")


def start_job(out: Path, docs: DocSource, overwrite: bool, what: str) -> Path:
    """The partial dir of a job writing ``out``: refused if ``out`` exists (without ``overwrite``) or nothing to do."""
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    if not len(docs):
        raise ValueError(f"no documents to {what} into {out}")
    return partial_dir(out)


def _fingerprint(docs: DocSource, job_id: dict[str, Any], chunk_size: int) -> str:
    """This job's identity: what it computes (``job_id``), the chunking, the docids in order (which chunk
    holds which documents) and the documents' texts."""
    key = {"encoder": job_id, "chunk_size": chunk_size, "docids": docs.fingerprint(),
           "corpus": docs.corpus_fingerprint()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def write_durable(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the whole new one: ``*.tmp``, fsync,
    rename, fsync of the dir."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)  # the rename itself survives a power cut


def chunk_paths(docs: DocSource, work: Path, job_id: dict[str, Any], chunk_size: int,
                suffix: str = ".npy") -> list[Path]:
    """Open (or create) the partial dir for this exact job and name its chunk files, finished or not.

    ``job_id`` says what the job computes (the encoder, the sampling settings); with the docids and
    ``chunk_size`` it makes the fingerprint a resumed run must match. The state file is written by
    rename, so a kill at any instant leaves either no state (an empty dir, started afresh) or a
    whole one; a leftover ``*.tmp`` chunk is ignored and later overwritten.
    """
    if chunk_size < 1:
        raise ValueError(f"--chunk-size must be positive, got {chunk_size}")
    fingerprint = _fingerprint(docs, job_id, chunk_size)
    state_path = work / STATE_FILE
    work.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {}
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            state = {"fingerprint": "unreadable"}
    elif not any(work.glob("chunk-*")):
        write_durable(state_path, json.dumps({"fingerprint": fingerprint, "encoder": job_id}).encode())
        state = {"fingerprint": fingerprint}
    if state.get("fingerprint") != fingerprint:
        raise ValueError(f"{work} holds a partial run made with other arguments or another corpus; "
                         "re-run with the same arguments to resume, or delete it to start over")
    n_chunks = -(-len(docs) // chunk_size)
    return [work / f"chunk-{c:06d}{suffix}" for c in range(n_chunks)]


def pending_chunks(docs: DocSource, names: Sequence[Path], chunk_size: int,
                   work: Path | None = None) -> Iterator[tuple[int, list[Doc]]]:
    """``(chunk number, documents)`` of each chunk not yet on disk, in order, one chunk in memory at a time.

    Every document is read, finished chunks included: their docids are written to
    ``work/docids.txt`` (``work``: the chunk files' dir by default) as they pass, completed by
    rename once the last chunk has been read, so the output can be written with its docids
    without holding them.
    """
    work = names[0].parent if work is None else work
    partial = work / (DOCIDS + ".tmp")
    with open(partial, "w", encoding="utf-8", errors="surrogatepass") as ids:
        chunk, batch = 0, []
        for doc in docs.docs():
            ids.write(doc.docid + "\n")
            batch.append(doc)
            if len(batch) == chunk_size:
                if not names[chunk].is_file():
                    yield chunk, batch
                chunk, batch = chunk + 1, []
        if batch and not names[chunk].is_file():
            yield chunk, batch
    os.replace(partial, work / DOCIDS)


def read_docids(work: Path) -> Iterator[str]:
    """The docids :func:`pending_chunks` wrote to ``work``, in order."""
    with open(work / DOCIDS, encoding="utf-8", errors="surrogatepass") as f:
        for line in f:
            yield line.rstrip("\n")


def process_chunks(docs: DocSource, names: Sequence[Path], chunk_size: int,
                   process: Callable[[list[Doc]], Any], save: Callable[[Path, Any], None], desc: str,
                   progress: bool = True) -> None:
    """Run ``process`` on every unfinished chunk in this process and ``save`` each result to its file."""
    done = sum(1 for p in names if p.is_file())
    with progress_bar(len(docs), desc, "doc", progress, initial=min(done * chunk_size, len(docs))) as bar:
        for c, chunk in pending_chunks(docs, names, chunk_size):
            save(names[c], process(chunk))
            bar.update(len(chunk))


def save_chunk(path: Path, vectors: np.ndarray) -> None:
    """Make one finished chunk of vectors durable (float32 ``.npy``, no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    write_durable(path, buffer.getvalue())


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
    """The vector chunks in order, one in memory at a time, each checked by :func:`load_chunk`."""
    for c, path in enumerate(paths):
        yield load_chunk(path, min(chunk_size, n_docs - c * chunk_size))
