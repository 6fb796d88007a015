"""Pyserini-compatible FAISS index dirs: ``index`` (FAISS) + ``docid`` (row i's docid on line i).

Pyserini's ``FaissSearcher`` opens these dirs as they are. ME-BERT dirs hold m rows per
document, so their ``docid`` file names each document m times (the row-to-docid map); our
``dense_ext_index.json`` records that, the encoder that made the vectors, a fingerprint of the
documents (:mod:`~pyserini_dense_ext.io.fingerprint`), the options the index was built with and,
for an index of passages (``docid#k``, :mod:`.passages`), how the documents were split, so a dir
is reused only for the corpus, model and options it was made from. Dirs are written
to a temporary sibling and renamed into place, so a reader never sees a half-written index.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import faiss
import numpy as np

from ..io.atomic import atomic_dir
from ..io.errors import InputError
from ..io.fingerprint import differences
from .flat_file import FLAT_TYPES, MappedFlat, empty_index, is_flat_file, write_flat_file

INDEX_FILE, DOCID_FILE, META_FILE = "index", "docid", "dense_ext_index.json"
INDEX_TYPES = ("flat", "flat-fp16", "hnsw", "pq")
# HNSW beam width at search time; the searcher uses max(this, rows asked for). FAISS's default, 16, kept 0.71 of
# the flat top 100 and 0.26 of the top 1000 on SciFact/MiniLM; max(256, k) keeps 0.999 of both
# (bench/index_memory.py, docs/reliability.md).
DEFAULT_EF_SEARCH = 256
PQ_MIN_POINTS_PER_CENTROID = 39  # FAISS's k-means asks for this many training vectors per centroid


@dataclass
class IndexMeta:
    """What a searcher must know beyond FAISS's own header."""

    dim: int
    num_rows: int
    num_docs: int
    rows_per_doc: int = 1
    index_type: str = "flat"
    encoder: dict[str, Any] = field(default_factory=dict)  # the EncoderConfig that made the vectors
    shard_id: int = 0  # which contiguous slice of the corpus (``--shard-id/--shard-num``), so merges keep its order
    shard_num: int = 1
    corpus: str | None = None  # docs_fingerprint of the documents (before any passage split; None: not recorded)
    index_options: dict[str, Any] = field(default_factory=dict)  # how the FAISS index was built (index_options())
    passages: dict[str, Any] | None = None  # rows are passages docid#k: how documents were split (PassageSpec)

    def save(self, directory: Path) -> None:
        (directory / META_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "IndexMeta | None":
        path = directory / META_FILE
        if not path.is_file():
            return None  # a dir built by Pyserini itself
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            meta = cls(**data)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, RecursionError) as e:
            raise InputError(path, f"is not a valid index metadata file: {e}") from None
        for name, lowest in (("dim", 1), ("num_rows", 0), ("num_docs", 0), ("rows_per_doc", 1), ("shard_id", 0),
                             ("shard_num", 1)):
            value = getattr(meta, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise InputError(path, f"must be an integer >= {lowest}, got {value!r}", field=name)
        if not isinstance(meta.encoder, dict) or not isinstance(meta.index_type, str):
            raise InputError(path, "needs a string index_type and an encoder object", field="encoder")
        if not (meta.corpus is None or isinstance(meta.corpus, str)) or not isinstance(meta.index_options, dict):
            raise InputError(path, "needs a string (or null) corpus and an index_options object", field="corpus")
        if meta.passages is not None and not isinstance(meta.passages, dict):
            raise InputError(path, "must be an object (how documents were split) or null", field="passages")
        return meta


Chunks = Callable[[], Iterable[np.ndarray]]  # gives a fresh pass over float32 (n, d) row chunks each call
HNSW_ADD_ROWS = 1 << 16  # HNSW rows added per call, whatever the chunks: the graph depends on the batches
PQ_TRAIN_PER_CENTROID = 256  # FAISS's k-means samples at most 256 points per centroid itself


def build_faiss_index(vectors: np.ndarray, index_type: str = "flat", hnsw_m: int = 32, ef_construction: int = 200,
                      pq_m: int | None = None, pq_nbits: int = 8, ef_search: int = DEFAULT_EF_SEARCH) -> faiss.Index:
    """An inner-product index over float32 ``(n, d)`` rows: exact flat, flat over fp16-stored rows (half the
    memory, exhaustive scan), HNSW graph or product-quantised (see :func:`build_from_chunks`).

    HNSW's ``ef_search`` is stored in the index file, so Pyserini's ``FaissSearcher`` searches with it too.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return build_from_chunks(lambda: [vectors], len(vectors), vectors.shape[1], index_type, hnsw_m=hnsw_m,
                             ef_construction=ef_construction, pq_m=pq_m, pq_nbits=pq_nbits, ef_search=ef_search)


def rebatch(chunks: Iterable[np.ndarray], rows: int) -> Iterator[np.ndarray]:
    """The rows of ``chunks`` again, in float32 batches of exactly ``rows`` (the last one shorter)."""
    pending: list[np.ndarray] = []
    held = 0
    for chunk in chunks:
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        while len(chunk):
            take = chunk[:rows - held]
            pending.append(take)
            held += len(take)
            chunk = chunk[len(take):]
            if held == rows:
                yield np.concatenate(pending)
                pending, held = [], 0
    if held:
        yield np.concatenate(pending)


def pq_training_rows(n: int, pq_nbits: int) -> np.ndarray:
    """The rows PQ codebooks are trained on: all, or evenly spaced ones where FAISS would subsample anyway."""
    cap = PQ_TRAIN_PER_CENTROID * 2 ** pq_nbits
    return np.arange(n) if n <= cap else (np.arange(cap, dtype=np.int64) * n) // cap


def build_from_chunks(chunks: Chunks, n: int, d: int, index_type: str = "flat", hnsw_m: int = 32,
                      ef_construction: int = 200, pq_m: int | None = None, pq_nbits: int = 8,
                      ef_search: int = DEFAULT_EF_SEARCH) -> faiss.Index:
    """An inner-product index over ``n`` rows read chunk by chunk; holds the index, never a copy of the rows.

    HNSW rows are added in batches of :data:`HNSW_ADD_ROWS` whatever the chunking, so shards merged
    and a single encode build the same graph. PQ codebooks are trained on :func:`pq_training_rows`.
    """
    if index_type in FLAT_TYPES:
        index = empty_index(index_type, d)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    elif index_type == "pq":
        pq_m = pq_m or _default_pq_m(d)
        if d % pq_m:
            raise ValueError(f"--pq-m {pq_m} must divide the dimension {d}")
        if n < 2 ** pq_nbits:
            raise ValueError(f"PQ with {pq_nbits} bits needs at least {2 ** pq_nbits} training vectors, got {n}")
        index = faiss.IndexPQ(d, pq_m, pq_nbits, faiss.METRIC_INNER_PRODUCT)
        wanted = PQ_MIN_POINTS_PER_CENTROID * 2 ** pq_nbits
        if n < wanted:  # said once here, instead of FAISS's warning once per sub-quantiser
            print(f"warning: PQ codebooks trained on {n} vectors, fewer than the {wanted} FAISS's k-means asks for "
                  f"({PQ_MIN_POINTS_PER_CENTROID} per centroid): recall may suffer; flat or hnsw suits a corpus "
                  "this small", file=sys.stderr)
            index.pq.cp.min_points_per_centroid = 1
        index.train(_gather_rows(chunks(), pq_training_rows(n, pq_nbits), d))
    else:
        raise ValueError(f"unknown index type {index_type!r}; choose from {INDEX_TYPES}")
    for batch in rebatch(chunks(), HNSW_ADD_ROWS):
        index.add(batch)
    if index.ntotal != n:
        raise ValueError(f"expected {n} rows, the chunks held {index.ntotal}")
    return index


def index_options(index: faiss.Index) -> dict[str, Any]:
    """The build options a FAISS index carries (HNSW degree and beam widths, PQ code layout), read from it."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexHNSW):
        return {"hnsw_m": int(index.hnsw.nb_neighbors(1)), "ef_construction": int(index.hnsw.efConstruction),
                "ef_search": int(index.hnsw.efSearch)}
    if isinstance(index, faiss.IndexPQ):
        return {"pq_m": int(index.pq.M), "pq_nbits": int(index.pq.nbits)}
    return {}


def _gather_rows(chunks: Iterable[np.ndarray], wanted: np.ndarray, d: int) -> np.ndarray:
    """Rows at the sorted positions ``wanted`` from a pass over the chunks."""
    out = np.empty((len(wanted), d), dtype=np.float32)
    start = filled = 0
    for chunk in chunks:
        chunk = chunk.reshape(-1, d)
        stop = start + len(chunk)
        take = wanted[filled:np.searchsorted(wanted, stop)]
        out[filled:filled + len(take)] = chunk[take - start]
        filled += len(take)
        start = stop
    return out


def index_type_of(index: faiss.Index) -> str:
    """The :data:`INDEX_TYPES` name of an index :func:`build_faiss_index` could have made (so ``flat``,
    ``flat-fp16`` and ``hnsw`` keep their vectors, exactly or to fp16), else its FAISS class name."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexFlat):
        return "flat"
    if isinstance(index, faiss.IndexScalarQuantizer) and index.sq.qtype == faiss.ScalarQuantizer.QT_fp16:
        return "flat-fp16"
    if isinstance(index, faiss.IndexHNSW) and isinstance(faiss.downcast_index(index.storage), faiss.IndexFlat):
        return "hnsw"
    if isinstance(index, faiss.IndexPQ):
        return "pq"
    return type(index).__name__


def _default_pq_m(d: int) -> int:
    """Largest divisor of d not above d/4 (4 dims per 8-bit code: 16x smaller than fp32)."""
    return next(m for m in range(max(1, d // 4), 0, -1) if d % m == 0)


def write_index_dir(out_dir: str | Path, index: faiss.Index, row_docids: Sequence[str], meta: IndexMeta,
                    overwrite: bool = False) -> Path:
    """Write ``index``, ``docid`` and metadata into a temp dir, then rename it to ``out_dir``."""
    if index.ntotal != len(row_docids):
        raise ValueError(f"index has {index.ntotal} rows but {len(row_docids)} docids were given")
    def write(path: Path) -> dict[str, Any]:
        faiss.write_index(index, str(path))
        return index_options(index)

    return _write_dir(out_dir, write, row_docids, index.ntotal, meta, overwrite)


def write_index_dir_from_chunks(out_dir: str | Path, chunks: Chunks, row_docids: Iterable[str], meta: IndexMeta,
                                overwrite: bool = False, **options: Any) -> Path:
    """:func:`write_index_dir` for rows given chunk by chunk (``chunks()`` a fresh pass each call).

    Flat and flat-fp16 files are streamed to disk (:func:`~.flat_file.write_flat_file`), so memory
    stays at one chunk; HNSW and PQ hold the index they build (:func:`build_from_chunks`).
    """
    def write(path: Path) -> dict[str, Any]:
        if meta.index_type in FLAT_TYPES:
            with open(path, "wb") as f:
                write_flat_file(f, meta.index_type, meta.dim, meta.num_rows, chunks())
            return {}  # what index_options() reads from a flat index
        index = build_from_chunks(chunks, meta.num_rows, meta.dim, meta.index_type, **options)
        faiss.write_index(index, str(path))
        return index_options(index)

    return _write_dir(out_dir, write, row_docids, meta.num_rows, meta, overwrite)


def _write_dir(out_dir: str | Path, write_index: Callable[[Path], dict[str, Any]], row_docids: Iterable[str],
               n_rows: int, meta: IndexMeta, overwrite: bool) -> Path:
    """``write_index`` writes the index file and returns its build options (:func:`index_options`)."""
    out = Path(out_dir)
    with atomic_dir(out, overwrite) as tmp:
        meta = dataclasses.replace(meta, index_options=write_index(tmp / INDEX_FILE))
        written = 0
        with open(tmp / DOCID_FILE, "w", encoding="utf-8") as f:
            for docid in row_docids:
                f.write(docid + "\n")
                written += 1
        if written != n_rows:
            raise ValueError(f"index has {n_rows} rows but {written} docids were given")
        meta.save(tmp)
    return out


def reuse_problems(index_dir: str | Path, corpus: str, encoder: dict[str, Any], index_type: str = "flat",
                   passages: dict[str, Any] | None = None, **options: Any) -> list[str]:
    """Why the index dir at ``index_dir`` is not the one these arguments would build (empty: reuse it).

    ``corpus`` is the documents' fingerprint, ``encoder`` the encoder fingerprint
    (:func:`~pyserini_dense_ext.io.fingerprint.encoder_fingerprint`), ``passages`` how documents are split
    (``PassageSpec.to_dict()``, None: whole documents), ``options`` build options such as hnsw_m.
    """
    meta = IndexMeta.load(Path(index_dir))
    if meta is None:
        return [f"it has no {META_FILE}, so what it holds is unknown"]
    problems = []
    if meta.corpus != corpus:
        problems.append("it holds other documents" if meta.corpus else "it records no corpus fingerprint")
    changed = differences(meta.encoder, encoder) + sorted(set(meta.encoder) - set(encoder))
    if changed:
        problems.append(f"another encoder made it (differs in {', '.join(changed)})")
    if meta.index_type != index_type:
        problems.append(f"it is a {meta.index_type} index, not {index_type}")
    if meta.passages != passages:
        problems.append("it holds other passages" if passages else "it holds passages, not whole documents")
    changed = differences(meta.index_options, options)
    if changed:
        problems.append(f"it was built with other options ({', '.join(changed)})")
    return problems


def read_docids(path: Path) -> list[str]:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        docids = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise InputError(path, "is not valid UTF-8", line) from None
    if "" in docids:
        raise InputError(path, "is an empty docid (every row needs one)", docids.index("") + 1)
    return docids


def read_index_dir(index_dir: str | Path, mmap: bool = False) -> tuple[faiss.Index | MappedFlat, list[str], IndexMeta]:
    """Load and cross-check an index dir (ours or Pyserini's); metadata is inferred when absent.

    ``mmap``: a flat or flat-fp16 index is not read but mapped a window at a time when searched
    (:class:`~.flat_file.MappedFlat`); other types are memory-mapped by FAISS (``IO_FLAG_MMAP_IFC``).
    """
    directory = Path(index_dir)
    for name in (INDEX_FILE, DOCID_FILE):
        if not (directory / name).is_file():
            raise InputError(directory / name, "is missing: not a FAISS index dir (expected 'index' and 'docid')")
    path = directory / INDEX_FILE
    try:
        if mmap and is_flat_file(path):
            index = MappedFlat(path)
        else:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
    except MemoryError:  # FAISS's std::bad_alloc
        raise MemoryError(f"{path}: not enough memory to load this {path.stat().st_size / 2 ** 20:,.0f} MB index; "
                          "search it with --mmap (mmap=True), which maps it a window at a time") from None
    except (RuntimeError, ValueError) as e:
        raise InputError(directory / INDEX_FILE, f"is not a readable FAISS index: {str(e).splitlines()[0]}") from None
    row_docids = read_docids(directory / DOCID_FILE)
    if len(row_docids) != index.ntotal:
        raise InputError(directory / DOCID_FILE, f"has {len(row_docids)} lines but the index has {index.ntotal} rows "
                                                 "(row i's docid must be on line i)")
    meta = IndexMeta.load(directory)
    if meta is None:
        num_docs = len(set(row_docids))
        meta = IndexMeta(dim=index.d, num_rows=index.ntotal, num_docs=num_docs,
                         rows_per_doc=max(1, index.ntotal // max(num_docs, 1)))
    elif meta.dim != index.d or meta.num_rows != index.ntotal:
        raise InputError(directory / META_FILE, f"says dim={meta.dim}, rows={meta.num_rows} but the index has "
                                                f"dim={index.d}, rows={index.ntotal}")
    elif meta.num_docs != len(set(row_docids)):
        raise InputError(directory / DOCID_FILE, f"names {len(set(row_docids))} distinct documents but "
                                                 f"{META_FILE} says {meta.num_docs}")
    return index, row_docids, meta
