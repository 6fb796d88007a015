"""Corpus to index dir, resumable and in constant memory: the code behind ``python -m pyserini_dense_ext.encode``.

Documents are read chunk by chunk from a :class:`~pyserini_dense_ext.io.corpus.DocSource` (a
validated :class:`~pyserini_dense_ext.io.corpus.CorpusStream`, or documents in memory) and
encoded into durable chunk files (:mod:`.chunks`), by this process or by Ray workers
(:mod:`.distributed`); the docids go to a file in the same partial dir. The index dir is then
written from the chunk files one at a time (flat and flat-fp16 streamed to disk) and appears by
rename, complete or not at all. Nothing holds the corpus's texts or all its vectors, so memory
does not grow with the corpus (``bench/encode_memory.py``).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..encoders import Encoder
from ..io.corpus import Doc, DocList, DocSource
from ..io.lock import output_lock
from ..progress import progress_bar
from .chunks import DOCIDS, chunk_paths, iter_chunks, load_chunk, partial_dir, pending_chunks, save_chunk
from .distributed import RayOptions, encode_chunks_ray
from .faiss_dir import IndexMeta, write_index_dir_from_chunks


def shard_slice(n: int, shard_id: int, shard_num: int) -> slice:
    """Contiguous shard ``shard_id`` of ``shard_num`` over n items (Pyserini's split: the last takes the rest)."""
    if shard_num < 1 or not 0 <= shard_id < shard_num:
        raise ValueError(f"need 0 <= shard-id < shard-num, got shard-id {shard_id}, shard-num {shard_num}")
    size = n // shard_num
    start = shard_id * size
    return slice(start, n if shard_id == shard_num - 1 else start + size)


def encode_chunks(docs: DocSource, model: Encoder, work: Path, encoder_id: dict[str, Any], chunk_size: int = 1024,
                  batch_size: int = 32, progress: bool = True) -> list[Path]:
    """Encode ``docs`` into ``work/chunk-*.npy``, resuming finished chunks; return the chunk files in order."""
    names = chunk_paths(docs, work, encoder_id, chunk_size)
    done = sum(1 for p in names if p.is_file())
    with progress_bar(len(docs), "encoding corpus", "doc", progress, initial=min(done * chunk_size, len(docs))) as bar:
        for c, texts in pending_chunks(docs, names, chunk_size, work):
            save_chunk(names[c], model.encode(texts, "document", batch_size=batch_size, progress=progress))
            bar.update(len(texts))
    return names


def as_source(docs: Sequence[Doc] | DocSource) -> DocSource:
    return docs if hasattr(docs, "fingerprint") else DocList(docs)  # type: ignore[return-value]


def encode_corpus(docs: Sequence[Doc] | DocSource, model: Encoder | None, out_dir: str | Path,
                  encoder_id: dict[str, Any], index_type: str = "flat", chunk_size: int = 1024, batch_size: int = 32,
                  overwrite: bool = False, progress: bool = True, shard_id: int = 0, shard_num: int = 1,
                  ray: RayOptions | None = None, **index_options: Any) -> Path:
    """Encode documents and write a Pyserini-compatible index dir; returns its path.

    ``docs`` is shard ``shard_id`` of ``shard_num`` (recorded for ``index.merge``), a list or a
    :class:`~pyserini_dense_ext.io.corpus.CorpusStream`; ``ray`` (a
    :class:`~.distributed.RayOptions`) spreads chunks over Ray workers, which load their own model
    (then ``model`` is unused). ``encoder_id`` is recorded in the index's metadata. The output is
    locked for the run (:func:`~pyserini_dense_ext.io.lock.output_lock`).
    """
    source = as_source(docs)
    out = Path(out_dir)
    with output_lock(out):
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
        if not len(source):
            raise ValueError(f"no documents to encode into {out}")
        work = partial_dir(out)
        if ray is not None:
            names = encode_chunks_ray(source, ray, work, encoder_id, chunk_size, batch_size, progress)
        else:
            names = encode_chunks(source, model, work, encoder_id, chunk_size, batch_size, progress)
        first = load_chunk(names[0], min(chunk_size, len(source)))
        rows_per_doc, dim = (first.shape[1] if first.ndim == 3 else 1), first.shape[-1]
        del first
        meta = IndexMeta(dim=dim, num_rows=len(source) * rows_per_doc, num_docs=len(source),
                         rows_per_doc=rows_per_doc, index_type=index_type, encoder=encoder_id, shard_id=shard_id,
                         shard_num=shard_num, corpus=source.corpus_fingerprint())
        if progress:
            print(f"writing {index_type} index over {meta.num_rows} rows ({rows_per_doc} per document)", flush=True)
        write_index_dir_from_chunks(
            out, lambda: (c.reshape(-1, dim) for c in iter_chunks(names, len(source), chunk_size)),
            _row_docids(work / DOCIDS, rows_per_doc), meta, overwrite=overwrite, **index_options)
        shutil.rmtree(work, ignore_errors=True)
    return out


def _row_docids(path: Path, rows_per_doc: int) -> Iterator[str]:
    """Each docid of the partial dir's docid file once per row of its document."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            docid = line.rstrip("\n")
            for _ in range(rows_per_doc):
                yield docid
