"""Corpus to index dir, resumable and in constant memory: the code behind ``python -m pyserini_dense_ext.encode``.

Documents are read chunk by chunk from a :class:`~pyserini_dense_ext.io.corpus.DocSource` (a
validated :class:`~pyserini_dense_ext.io.corpus.CorpusStream`, documents in memory, or the
passages of either, :class:`~.passages.PassageStream`) and encoded into durable chunk files
(:mod:`.chunks`), by this process or by Ray workers, through the one dispatcher
:func:`~.distributed.run_chunks`; the docids go to a file in the same partial dir. The index dir
is then written from the chunk files one at a time (flat and flat-fp16 streamed to disk) and
appears by rename, complete or not at all. Nothing holds the corpus's texts or all its vectors,
so memory does not grow with the corpus (``bench/encode_memory.py``), passages included.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..encoders import Encoder
from ..io.corpus import Doc, DocSource, as_source
from ..io.lock import output_lock
from .chunks import chunk_paths, iter_chunks, load_chunk, read_docids, save_chunk, start_job
from .distributed import RayOptions, run_chunks
from .faiss_dir import IndexMeta, write_index_dir_from_chunks
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


def encode_chunks(docs: DocSource, model: Encoder | None, work: Path, encoder_id: dict[str, Any],
                  chunk_size: int = 1024, batch_size: int = 32, progress: bool = True, ray: RayOptions | None = None,
                  ray_loader: DocumentEncoderLoader | None = None) -> list[Path]:
    """Encode ``docs`` into ``work/chunk-*.npy``, resuming finished chunks; return the chunk files in order."""
    names = chunk_paths(docs, work, encoder_id, chunk_size)
    process = None if model is None else document_encoding(model, batch_size, progress)
    run_chunks(docs, names, chunk_size, save_chunk, "encoding corpus", progress, process, ray, ray_loader)
    return names


def encode_corpus(docs: Sequence[Doc] | DocSource, model: Encoder | None, out_dir: str | Path,
                  encoder_id: dict[str, Any], index_type: str = "flat", chunk_size: int = 1024, batch_size: int = 32,
                  overwrite: bool = False, progress: bool = True, shard_id: int = 0, shard_num: int = 1,
                  ray: RayOptions | None = None, ray_loader: DocumentEncoderLoader | None = None,
                  passages: PassageSpec | None = None, corpus: str | None = None, **index_options: Any) -> Path:
    """Encode documents and write a Pyserini-compatible index dir; returns its path.

    ``docs`` is shard ``shard_id`` of ``shard_num`` (recorded for ``index.merge``), a list or a
    :class:`~pyserini_dense_ext.io.corpus.DocSource` (a
    :class:`~pyserini_dense_ext.io.corpus.CorpusStream`, read chunk by chunk); ``ray`` (a
    :class:`~.distributed.RayOptions`) spreads chunks over Ray workers, each loading its own model
    with ``ray_loader`` (then ``model`` is unused). ``encoder_id`` is recorded in the index's
    metadata; so is ``passages`` when ``docs`` are passages (``docid#k``) made by :mod:`.passages`,
    and ``corpus``, the fingerprint of the documents before that split (default: of ``docs``), which
    a hybrid compares with its Lucene index's. The output is locked for the run
    (:func:`~pyserini_dense_ext.io.lock.output_lock`).
    """
    source = as_source(docs)
    out = Path(out_dir)
    with output_lock(out):
        work = start_job(out, source, overwrite, "encode")
        job_id = encoder_id if passages is None else {**encoder_id, "passages": passages.to_dict()}
        names = encode_chunks(source, model, work, job_id, chunk_size, batch_size, progress, ray, ray_loader)
        first = load_chunk(names[0], min(chunk_size, len(source)))
        rows_per_doc, dim = (first.shape[1] if first.ndim == 3 else 1), first.shape[-1]
        del first
        meta = IndexMeta(dim=dim, num_rows=len(source) * rows_per_doc, num_docs=len(source),
                         rows_per_doc=rows_per_doc, index_type=index_type, encoder=encoder_id, shard_id=shard_id,
                         shard_num=shard_num, corpus=corpus or source.corpus_fingerprint(),
                         passages=None if passages is None else passages.to_dict())
        if progress:
            print(f"writing {index_type} index over {meta.num_rows} rows ({rows_per_doc} per document)", flush=True)
        write_index_dir_from_chunks(
            out, lambda: (c.reshape(-1, dim) for c in iter_chunks(names, len(source), chunk_size)),
            _row_docids(work, rows_per_doc), meta, overwrite=overwrite, **index_options)
        shutil.rmtree(work, ignore_errors=True)
    return out


def _row_docids(work: Path, rows_per_doc: int) -> Iterator[str]:
    """Each docid of the partial dir's docid file once per row of its document."""
    for docid in read_docids(work):
        for _ in range(rows_per_doc):
            yield docid
