"""Corpus to index dir, resumable: the code behind ``python -m pyserini_dense_ext.encode``.

Documents are encoded in durable chunks (:mod:`.chunks`), by this process or by Ray workers
(:mod:`.distributed`); the index dir is written at the end, by rename, so it appears complete or
not at all.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..encoders import Encoder
from ..io.corpus import Doc
from ..io.fingerprint import docs_fingerprint
from ..progress import progress_bar
from .chunks import chunk_paths, load_chunks, partial_dir, save_chunk
from .distributed import RayOptions, encode_chunks_ray
from .faiss_dir import IndexMeta, build_faiss_index, write_index_dir


def shard_slice(n: int, shard_id: int, shard_num: int) -> slice:
    """Contiguous shard ``shard_id`` of ``shard_num`` over n items (Pyserini's split: the last takes the rest)."""
    if shard_num < 1 or not 0 <= shard_id < shard_num:
        raise ValueError(f"need 0 <= shard-id < shard-num, got shard-id {shard_id}, shard-num {shard_num}")
    size = n // shard_num
    start = shard_id * size
    return slice(start, n if shard_id == shard_num - 1 else start + size)


def encode_chunks(docs: Sequence[Doc], model: Encoder, work: Path, encoder_id: dict[str, Any], chunk_size: int = 1024,
                  batch_size: int = 32, progress: bool = True) -> np.ndarray:
    """Encode ``docs`` into ``work/chunk-*.npy``, resuming finished chunks; return all vectors in order."""
    names = chunk_paths(docs, work, encoder_id, chunk_size)
    done = sum(1 for p in names if p.is_file())
    with progress_bar(len(docs), "encoding corpus", "doc", progress, initial=min(done * chunk_size, len(docs))) as bar:
        for c, path in enumerate(names):
            if path.is_file():
                continue
            texts = [d.contents for d in docs[c * chunk_size:(c + 1) * chunk_size]]
            save_chunk(path, model.encode(texts, "document", batch_size=batch_size, progress=progress))
            bar.update(len(texts))
    return load_chunks(names, len(docs), chunk_size)


def encode_corpus(docs: Sequence[Doc], model: Encoder | None, out_dir: str | Path, encoder_id: dict[str, Any],
                  index_type: str = "flat", chunk_size: int = 1024, batch_size: int = 32, overwrite: bool = False,
                  progress: bool = True, shard_id: int = 0, shard_num: int = 1, ray: RayOptions | None = None,
                  **index_options: Any) -> Path:
    """Encode documents and write a Pyserini-compatible index dir; returns its path.

    ``docs`` is shard ``shard_id`` of ``shard_num`` (recorded for ``index.merge``); ``ray`` (a
    :class:`~.distributed.RayOptions`) spreads chunks over Ray workers, which load their own model (then
    ``model`` is unused). ``encoder_id`` is recorded in the index's metadata.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    if not docs:
        raise ValueError(f"no documents to encode into {out}")
    work = partial_dir(out)
    if ray is not None:
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
                     index_type=index_type, encoder=encoder_id, shard_id=shard_id, shard_num=shard_num,
                     corpus=docs_fingerprint(docs))
    write_index_dir(out, index, row_docids, meta, overwrite=overwrite)
    shutil.rmtree(work, ignore_errors=True)
    return out
