"""Corpus to index dir, resumable: the code behind ``python -m pyserini_dense_ext.encode``.

Documents (or their passages, :mod:`.passages`) are encoded in durable chunks (:mod:`.chunks`),
by this process or by Ray workers (:mod:`.distributed`); the index dir is written at the end, by
rename, so it appears complete or not at all.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..encoders import Encoder
from ..io.corpus import Doc
from ..io.fingerprint import docs_fingerprint
from .chunks import chunk_paths, load_chunks, save_chunk, start_job
from .distributed import RayOptions, run_chunks
from .faiss_dir import IndexMeta, build_faiss_index, write_index_dir
from .passages import PassageSpec


def shard_slice(n: int, shard_id: int, shard_num: int) -> slice:
    """Contiguous shard ``shard_id`` of ``shard_num`` over n items (Pyserini's split: the last takes the rest)."""
    if shard_num < 1 or not 0 <= shard_id < shard_num:
        raise ValueError(f"need 0 <= shard-id < shard-num, got shard-id {shard_id}, shard-num {shard_num}")
    size = n // shard_num
    start = shard_id * size
    return slice(start, n if shard_id == shard_num - 1 else start + size)


def document_encoding(model: Encoder, batch_size: int, progress: bool = False) -> Callable[[list[Doc]], np.ndarray]:
    """What one chunk of documents becomes: the model's document vectors of their contents."""
    return lambda docs: model.encode([d.contents for d in docs], "document", batch_size=batch_size, progress=progress)


@dataclass(frozen=True)
class DocumentEncoderLoader:
    """What each Ray worker loads: the document encoder at ``model_dir`` with the driver's options (picklable)."""

    model_dir: str
    family: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # encoder options, as on the command line
    batch_size: int = 32

    def __call__(self, device: str) -> Callable[[list[Doc]], np.ndarray]:
        from ..encoders import load_document_encoder

        encoder = load_document_encoder(self.model_dir, family=self.family, device=device,
                                        batch_size=self.batch_size, **self.overrides)
        return document_encoding(encoder.model, self.batch_size)


def encode_chunks(docs: Sequence[Doc], model: Encoder | None, work: Path, encoder_id: dict[str, Any],
                  chunk_size: int = 1024, batch_size: int = 32, progress: bool = True, ray: RayOptions | None = None,
                  ray_loader: DocumentEncoderLoader | None = None) -> np.ndarray:
    """Encode ``docs`` into ``work/chunk-*.npy``, resuming finished chunks; return all vectors in order."""
    names = chunk_paths(docs, work, encoder_id, chunk_size)
    process = None if model is None else document_encoding(model, batch_size, progress)
    run_chunks(docs, names, chunk_size, save_chunk, "encoding corpus", progress, process, ray, ray_loader)
    return load_chunks(names, len(docs), chunk_size)


def encode_corpus(docs: Sequence[Doc], model: Encoder | None, out_dir: str | Path, encoder_id: dict[str, Any],
                  index_type: str = "flat", chunk_size: int = 1024, batch_size: int = 32, overwrite: bool = False,
                  progress: bool = True, shard_id: int = 0, shard_num: int = 1, ray: RayOptions | None = None,
                  ray_loader: DocumentEncoderLoader | None = None, passages: PassageSpec | None = None,
                  corpus: str | None = None, **index_options: Any) -> Path:
    """Encode documents and write a Pyserini-compatible index dir; returns its path.

    ``docs`` is shard ``shard_id`` of ``shard_num`` (recorded for ``index.merge``); ``ray`` (a
    :class:`~.distributed.RayOptions`) spreads chunks over Ray workers, each loading its own model
    with ``ray_loader`` (then ``model`` is unused). ``encoder_id`` is recorded in the index's
    metadata; so is ``passages`` when ``docs`` are passages (``docid#k``) made by :mod:`.passages`,
    and ``corpus``, the fingerprint of the documents before that split (default: of ``docs``), which
    a hybrid compares with its Lucene index's.
    """
    out = Path(out_dir)
    work = start_job(out, docs, overwrite, "encode")
    job_id = encoder_id if passages is None else {**encoder_id, "passages": passages.to_dict()}
    vectors = encode_chunks(docs, model, work, job_id, chunk_size, batch_size, progress, ray, ray_loader)
    rows_per_doc = vectors.shape[1] if vectors.ndim == 3 else 1
    rows = vectors.reshape(-1, vectors.shape[-1])
    row_docids = [d.docid for d in docs for _ in range(rows_per_doc)]
    if progress:
        print(f"building {index_type} index over {len(rows)} rows ({rows_per_doc} per document)", flush=True)
    index = build_faiss_index(rows, index_type, **index_options)
    meta = IndexMeta(dim=rows.shape[1], num_rows=len(rows), num_docs=len(docs), rows_per_doc=rows_per_doc,
                     index_type=index_type, encoder=encoder_id, shard_id=shard_id, shard_num=shard_num,
                     corpus=corpus or docs_fingerprint(docs), passages=None if passages is None else passages.to_dict())
    write_index_dir(out, index, row_docids, meta, overwrite=overwrite)
    shutil.rmtree(work, ignore_errors=True)
    return out
