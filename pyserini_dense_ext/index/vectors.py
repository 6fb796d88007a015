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
``array[doc]`` of shape ``(m, d)``. Opened with a passage delimiter (an index of passages
``docid#k``, ``encode --passages``; MaxP), a document is every row whose id cuts to its docid at the
delimiter (:func:`~pyserini_dense_ext.search.maxp.document_ids`), however many: documents of
different lengths have different numbers of rows, kept CSR-style (``rows`` flat, ``offsets``).
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


def doc_rows(row_docids: list[str], source: Path, delimiter: str | None = None
             ) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Distinct documents (first-appearance order) and their rows: ``(docids, rows, offsets)``.

    When every document has the same number m of rows, ``rows`` is an int64 ``(num_docs, m)`` table and
    ``offsets`` None. With ``delimiter``, a row belongs to the document its id cuts to (``d#3`` -> ``d``) and
    documents may have different numbers of rows: then ``rows`` is int64 ``(num_rows,)``, document ``i``'s rows
    ``rows[offsets[i]:offsets[i + 1]]`` (``offsets``: ``(num_docs + 1,)``). Without it, uneven counts are an error.
    """
    if delimiter is not None:
        from ..search.maxp import document_ids  # Pyserini's rule for cutting a passage id to its document's

        keys = document_ids(row_docids, delimiter)
    else:
        keys = row_docids
    positions: dict[str, int] = {}
    row_doc = np.fromiter((positions.setdefault(d, len(positions)) for d in keys), dtype=np.int64,
                          count=len(keys))
    counts = np.bincount(row_doc, minlength=len(positions))
    order = np.argsort(row_doc, kind="stable")
    if not len(counts) or counts.min() == counts.max():
        m = int(counts[0]) if len(counts) else 1
        return list(positions), order.reshape(len(positions), m), None
    if delimiter is None:
        short = list(positions)[int(np.argmin(counts))]
        raise InputError(source, f"names document {short!r} {counts.min()} times but others {counts.max()} times: "
                                 "every document needs the same number of rows (ME-BERT's m)", field="docid")
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return list(positions), order, offsets


@dataclass
class DocVectors:
    """Memory-mapped document vectors: ``array`` is ``(num_rows, d)`` float32 or float16 (as the index stores them),
    ``rows[doc]`` the ``m`` rows of document ``doc``; ``docids[doc]`` its id.

    With ``offsets`` (opened with a passage delimiter, documents of different numbers of passages), ``rows``
    is flat and document ``doc``'s rows are ``rows[offsets[doc]:offsets[doc + 1]]``; ``row_docids`` are the rows'
    own ids (``docid#k``) and :meth:`passage_vectors` the same vectors with each passage a document.
    """

    array: np.ndarray
    rows: np.ndarray
    docids: list[str]
    source: Path
    fingerprint: str
    meta: IndexMeta  # the index's dense_ext_index.json, or one inferred for a Pyserini dir
    _index: dict[str, int] | None = field(default=None, repr=False)
    offsets: np.ndarray | None = field(default=None, repr=False)  # CSR: variable rows per document
    passage_delimiter: str | None = None  # set when documents are the rows' ids cut at it (MaxP)
    row_docids: list[str] | None = field(default=None, repr=False)  # each row's id, kept with a passage delimiter
    by_doc: np.ndarray | None = field(init=False, repr=False)  # (num_docs, m, d) view when rows are consecutive
    _passages: "DocVectors | None" = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        consecutive = np.array_equal(self.rows.reshape(-1), np.arange(self.rows.size))
        self._consecutive = consecutive
        self.by_doc = (self.array.reshape(self.num_docs, self.rows_per_doc, self.dim)
                       if consecutive and self.uniform else None)

    @property
    def num_docs(self) -> int:
        return len(self.docids)

    @property
    def uniform(self) -> bool:
        """Whether every document has the same number of rows (``rows_per_doc``; else see ``offsets``)."""
        return self.offsets is None

    @property
    def rows_per_doc(self) -> int:
        """m, the rows of every document; documents with different numbers of rows (passages) have none."""
        if not self.uniform:
            counts = np.diff(self.offsets)
            raise ValueError(f"the documents of {self.source} have {counts.min()} to {counts.max()} rows (passages), "
                             "not one number")
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

        One fancy-indexing read of the map: only the rows asked for are touched. Documents with different
        numbers of rows (passages) have no such shape: :meth:`gather_rows`."""
        if not self.uniform:
            raise ValueError("documents have different numbers of rows (passages): use gather_rows")
        ids = np.asarray(ids)
        safe = np.maximum(ids, 0)
        out = self.by_doc[safe] if self.by_doc is not None else self.array[self.rows[safe]]
        out = out.astype(np.float32, copy=False)
        padding = ids < 0
        if padding.any():
            out[padding] = 0
        return out

    def gather_rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows of documents ``ids`` (1-d, -1 padded), however many each has: float32 ``(R, d)`` vectors and
        int64 ``(R,)`` positions in ``ids`` (row ``j`` belongs to ``ids[segments[j]]``; padding has no rows)."""
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"gather_rows takes one list of document ids, got shape {ids.shape}")
        at = np.flatnonzero(ids >= 0)
        docs = ids[at]
        if self.uniform:
            counts = np.full(len(docs), self.rows_per_doc, dtype=np.int64)
            rows = self.rows[docs].reshape(-1)
        else:
            starts = self.offsets[docs]
            counts = self.offsets[docs + 1] - starts
            first = np.cumsum(counts) - counts  # where each document's rows begin in the output
            flat = np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(starts - first, counts)
            rows = flat if self._consecutive else self.rows[flat]
        return self.array[rows].astype(np.float32, copy=False), np.repeat(at, counts)

    def passage_vectors(self) -> "DocVectors":
        """The same vectors with each row id (a passage ``docid#k``) a document of its own, as opened without a
        passage delimiter (shares the map; built on first use)."""
        if self.row_docids is None:
            raise ValueError(f"{self.source} was opened without a passage delimiter: its documents are its rows' ids")
        if self._passages is None:
            docids, rows, _ = doc_rows(self.row_docids, self.source / DOCID_FILE)
            self._passages = DocVectors(self.array, rows, docids, self.source, self.fingerprint, self.meta)
        return self._passages


def open_doc_vectors(index_dir: str | Path, vectors: str | Path | None = None, cache_dir: str | Path | None = None,
                     progress: bool = True, passage_delimiter: str | None = None) -> DocVectors:
    """The document vectors of ``index_dir``: from ``vectors`` (a ``.npy``, rows in the index's row order),
    else from the cache in ``cache_dir`` (default: the index dir), building it from a flat or flat-fp16 index.

    With ``passage_delimiter`` (``'#'``: an index of passages ``docid#k``), a document is all the rows whose ids
    cut to its docid (``d#0``, ``d#1``, ... are document ``d``), for MaxP; ids without it stay whole."""
    index_dir = Path(index_dir)
    if passage_delimiter is not None and not passage_delimiter:
        raise ValueError("the max-passage delimiter must not be empty")
    for name in (INDEX_FILE, DOCID_FILE):
        if not (index_dir / name).is_file():
            raise InputError(index_dir / name, "is missing: not a FAISS index dir (expected 'index' and 'docid')")
    row_docids = read_docids(index_dir / DOCID_FILE)
    docids, rows, offsets = doc_rows(row_docids, index_dir / DOCID_FILE, passage_delimiter)
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
    meta = IndexMeta.load(index_dir)
    if meta is None:  # a Pyserini dir: described in its own terms, each distinct row id a document
        row_level = (docids, rows) if passage_delimiter is None else doc_rows(row_docids, index_dir / DOCID_FILE)[:2]
        meta = IndexMeta(dim=array.shape[1], num_rows=len(array), num_docs=len(row_level[0]),
                         rows_per_doc=row_level[1].shape[1])
    return DocVectors(array, rows, docids, index_dir, fingerprint, meta, offsets=offsets,
                      passage_delimiter=passage_delimiter, row_docids=row_docids if passage_delimiter else None)


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
