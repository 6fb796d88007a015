"""An index dir's document vectors as one memory-mapped array, for re-scoring candidates (CODER).

CODER (Zerveas et al., 2022) keeps the document embeddings of the index fixed and scores each
query's candidates against them, so it needs each candidate's exact vector, not the top-k FAISS
returns. Flat (fp32) and flat-fp16 indexes hold the vectors exactly: they are reconstructed once,
in chunks, into a ``.npy`` beside the index (``doc_vectors.npy``, float32 or float16 as stored)
and memory-mapped from then on, so a training or reranking process never holds a second full copy;
it reads the rows a batch gathers. PQ and HNSW indexes are refused (PQ codes are approximate; the
issue asks for a vector file there) unless a ``.npy`` of the vectors is given.

Documents are in the order of their first row in the ``docid`` file, as in
:class:`~pyserini_dense_ext.search.DenseSearcher`; an ME-BERT document's m rows become
``array[doc]`` of shape ``(m, d)``.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from ..io.errors import InputError
from ..io.fingerprint import file_digest, key_path, read_key, write_key
from ..progress import progress_bar
from .faiss_dir import DOCID_FILE, INDEX_FILE, IndexMeta, index_type_of, read_docids

CACHE_FILE = "doc_vectors.npy"
EXACT_TYPES = ("flat", "flat-fp16")
CHUNK_ROWS = 65536


def index_fingerprint(index_dir: str | Path) -> str:
    """sha256 over the ``index`` and ``docid`` files: names the exact document vectors a model was trained on."""
    digest = hashlib.sha256()
    for name in (INDEX_FILE, DOCID_FILE):
        digest.update(bytes.fromhex(file_digest(Path(index_dir) / name)))
    return digest.hexdigest()


def doc_rows(row_docids: list[str], source: Path) -> tuple[list[str], np.ndarray]:
    """Distinct docids (first-appearance order) and their rows as an int64 ``(num_docs, m)`` table."""
    positions: dict[str, int] = {}
    row_doc = np.fromiter((positions.setdefault(d, len(positions)) for d in row_docids), dtype=np.int64,
                          count=len(row_docids))
    counts = np.bincount(row_doc, minlength=len(positions))
    if len(counts) and counts.min() != counts.max():
        short = list(positions)[int(np.argmin(counts))]
        raise InputError(source, f"names document {short!r} {counts.min()} times but others {counts.max()} times: "
                                 "every document needs the same number of rows (ME-BERT's m)", field="docid")
    m = int(counts[0]) if len(counts) else 1
    table = np.argsort(row_doc, kind="stable").reshape(len(positions), m)
    return list(positions), table


@dataclass
class DocVectors:
    """Memory-mapped document vectors: ``array`` is ``(num_rows, d)`` float32 or float16 (as the index stores them),
    ``rows[doc]`` the ``m`` rows of document ``doc``; ``docids[doc]`` its id."""

    array: np.ndarray
    rows: np.ndarray
    docids: list[str]
    source: Path
    fingerprint: str
    meta: IndexMeta  # the index's dense_ext_index.json, or one inferred for a Pyserini dir
    _index: dict[str, int] | None = field(default=None, repr=False)
    by_doc: np.ndarray | None = field(init=False, repr=False)  # (num_docs, m, d) view when rows are consecutive

    def __post_init__(self) -> None:
        consecutive = np.array_equal(self.rows.reshape(-1), np.arange(self.rows.size))
        self.by_doc = self.array.reshape(self.num_docs, self.rows_per_doc, self.dim) if consecutive else None

    @property
    def num_docs(self) -> int:
        return len(self.docids)

    @property
    def rows_per_doc(self) -> int:
        return int(self.rows.shape[1])

    @property
    def dim(self) -> int:
        return int(self.array.shape[1])

    @property
    def doc_index(self) -> dict[str, int]:
        """docid -> document number (int), built on first use."""
        if self._index is None:
            self._index = {d: i for i, d in enumerate(self.docids)}
        return self._index

    def gather(self, ids: np.ndarray) -> np.ndarray:
        """Float32 ``ids.shape + (m, d)`` vectors of documents ``ids`` (any int array; -1 gives zeros).

        One fancy-indexing read of the map: only the rows asked for are touched."""
        ids = np.asarray(ids)
        safe = np.maximum(ids, 0)
        out = self.by_doc[safe] if self.by_doc is not None else self.array[self.rows[safe]]
        out = out.astype(np.float32, copy=False)
        padding = ids < 0
        if padding.any():
            out[padding] = 0
        return out


def open_doc_vectors(index_dir: str | Path, vectors: str | Path | None = None, cache_dir: str | Path | None = None,
                     progress: bool = True) -> DocVectors:
    """The document vectors of ``index_dir``: from ``vectors`` (a ``.npy``, rows in the index's row order),
    else from the cache in ``cache_dir`` (default: the index dir), building it from a flat or flat-fp16 index."""
    index_dir = Path(index_dir)
    for name in (INDEX_FILE, DOCID_FILE):
        if not (index_dir / name).is_file():
            raise InputError(index_dir / name, "is missing: not a FAISS index dir (expected 'index' and 'docid')")
    row_docids = read_docids(index_dir / DOCID_FILE)
    docids, rows = doc_rows(row_docids, index_dir / DOCID_FILE)
    if vectors is not None:
        array = _load_npy(Path(vectors), len(row_docids))
        meta = IndexMeta.load(index_dir)
        dim = meta.dim if meta is not None else _read_index(index_dir, faiss.IO_FLAG_MMAP_IFC).d
        if array.shape[1] != dim:
            raise InputError(vectors, f"vectors have dimension {array.shape[1]} but the index has {dim}", field="dim")
        fingerprint = index_fingerprint(index_dir)
    else:
        cache = Path(cache_dir) if cache_dir is not None else index_dir
        array, fingerprint = _cached(index_dir, cache, len(row_docids), progress)
    meta = IndexMeta.load(index_dir) or IndexMeta(dim=array.shape[1], num_rows=len(array), num_docs=len(docids),
                                                  rows_per_doc=rows.shape[1])
    return DocVectors(array, rows, docids, index_dir, fingerprint, meta)


def _read_index(index_dir: Path, flags: int = 0) -> faiss.Index:
    try:
        return faiss.read_index(str(index_dir / INDEX_FILE), flags | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:
        try:  # MMAP_IFC (zero-copy flat codes) is refused by some index types: read normally
            return faiss.read_index(str(index_dir / INDEX_FILE))
        except RuntimeError as e:
            raise InputError(index_dir / INDEX_FILE, f"is not a readable FAISS index: {str(e).splitlines()[0]}") \
                from None


def _load_npy(path: Path, num_rows: int) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(path, f"is not a readable .npy array of document vectors: {e}") from None
    if array.dtype not in (np.float32, np.float16) or array.ndim not in (2, 3):
        raise InputError(path, f"holds {array.dtype} {array.shape}; expected float32/float16 (rows, d) or "
                               "(docs, m, d)", field="shape")
    array = array.reshape(-1, array.shape[-1])
    if len(array) != num_rows:
        raise InputError(path, f"has {len(array)} rows but the index's docid file has {num_rows}", field="shape")
    return array


def _cached(index_dir: Path, cache: Path, num_rows: int, progress: bool) -> tuple[np.ndarray, str]:
    """The cache's vectors when its key (``doc_vectors.npy.key.json``) names this index's content, else rebuilt:
    keyed on content, not on a path or a timestamp, so an index rewritten in place is never read stale."""
    npy_path, fingerprint = cache / CACHE_FILE, index_fingerprint(index_dir)
    key = read_key(npy_path)
    if key is not None and key.get("index_sha256") == fingerprint:
        return _load_npy(npy_path, num_rows), fingerprint
    index = _read_index(index_dir, faiss.IO_FLAG_MMAP_IFC)
    kind = index_type_of(index)
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise InputError(index_dir / INDEX_FILE, "is not an inner-product index (Pyserini and this package search "
                                                 "by inner product)", field="metric")
    if kind not in EXACT_TYPES:
        raise InputError(index_dir / INDEX_FILE, f"is a {kind} index: document vectors are read back only from "
                                                 f"{' and '.join(EXACT_TYPES)} indexes, whose stored rows are the "
                                                 "vectors as encoded; pass the vectors as a .npy file (--vectors)",
                         field="index_type")
    if index.ntotal != num_rows:
        raise InputError(index_dir / DOCID_FILE, f"has {num_rows} lines but the index has {index.ntotal} rows")
    dtype = np.float32 if kind == "flat" else np.float16
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{CACHE_FILE}.{os.getpid()}.tmp"
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(index.ntotal, index.d))
        with progress_bar(index.ntotal, "reading document vectors", "row", enabled=progress) as bar:
            for start in range(0, index.ntotal, CHUNK_ROWS):
                n = min(CHUNK_ROWS, index.ntotal - start)
                out[start:start + n] = index.reconstruct_n(start, n)  # fp16 values are exact in float16
                bar.update(n)
        out.flush()
        del out
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        key_path(npy_path).unlink(missing_ok=True)  # a key never outlives the vectors it names
        os.replace(tmp, npy_path)
    finally:
        tmp.unlink(missing_ok=True)
    write_key(npy_path, {"index_sha256": fingerprint, "index_type": kind})
    return _load_npy(npy_path, num_rows), fingerprint
