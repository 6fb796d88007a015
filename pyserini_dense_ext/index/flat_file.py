"""Flat and flat-fp16 FAISS index files written and read a window at a time, never whole in memory.

Both files end with their rows: ``IndexFlatIP`` (fourcc ``IxFI``) is a header and then the float32
rows (``WRITEXBVECTOR(codes)``: a ``size_t`` count of floats, then the bytes), and
``IndexScalarQuantizer`` fp16 (``IxSQ``) is a header, the quantiser and then the fp16 codes
(``WRITEVECTOR(codes)``: a ``size_t`` count of bytes, then the bytes); see ``write_index`` in
faiss's ``faiss/impl/index_write.cpp``. So :func:`write_flat_file` writes what FAISS writes for
an empty index of the type, with the row count (``ntotal``, bytes 8-16) and the codes count (the
last 8 bytes) set, and then appends the rows chunk by chunk (fp16 codes made by FAISS's own
``sa_encode``): the file is byte-identical to ``faiss.write_index`` of the index built in memory
(tested), and Pyserini's ``FaissSearcher`` reads it as it is.

:class:`MappedFlat` searches such a file through a sliding read-only memory map: one window of
rows at a time is mapped, scanned by :mod:`pyserini_dense_ext.search.flat` and unmapped, so the
process's resident memory stays at one window, whatever the index size, and even the address
space (``ulimit -v``) need not hold the index. The page cache keeps the file between searches
when memory allows. FAISS's own ``read_index(path, faiss.IO_FLAG_MMAP_IFC)`` maps the whole file
instead: its resident size grows to the index as pages are touched.
"""
from __future__ import annotations

import mmap
from pathlib import Path
from typing import IO, Iterable, Iterator

import faiss
import numpy as np

FLAT_TYPES = ("flat", "flat-fp16")
_FOURCC = {b"IxFI": "flat", b"IxSQ": "flat-fp16"}
_NTOTAL = slice(8, 16)  # fourcc (4 bytes), d (int32), then ntotal (int64)


def empty_index(index_type: str, d: int) -> faiss.Index:
    """An empty inner-product index of a flat kind (``flat`` or ``flat-fp16``)."""
    if index_type == "flat":
        return faiss.IndexFlatIP(d)
    if index_type == "flat-fp16":
        return faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    raise ValueError(f"not a flat index type: {index_type!r}")


def _header(index: faiss.Index, n_rows: int) -> bytes:
    """FAISS's serialisation of an empty ``index``, patched to announce ``n_rows`` rows."""
    header = bytearray(faiss.serialize_index(index).tobytes())
    header[_NTOTAL] = np.int64(n_rows).tobytes()
    codes = n_rows * index.d if isinstance(index, faiss.IndexFlat) else n_rows * index.sa_code_size()
    header[-8:] = np.uint64(codes).tobytes()
    return bytes(header)


def write_flat_file(f: IO[bytes], index_type: str, d: int, n_rows: int, chunks: Iterable[np.ndarray]) -> None:
    """Write a ``flat``/``flat-fp16`` index file of ``n_rows`` float32 rows given as ``(n, d)`` chunks."""
    index = empty_index(index_type, d)
    f.write(_header(index, n_rows))
    written = 0
    for chunk in chunks:
        chunk = np.ascontiguousarray(chunk, dtype=np.float32).reshape(-1, d)
        f.write(chunk.tobytes() if index_type == "flat" else index.sa_encode(chunk).tobytes())
        written += len(chunk)
    if written != n_rows:
        raise ValueError(f"expected {n_rows} rows for the index file, got {written}")


def is_flat_file(path: str | Path) -> bool:
    """Whether ``path`` is an inner-product flat or flat-fp16 FAISS file :class:`MappedFlat` can map."""
    with open(path, "rb") as f:
        head = f.read(64)
    if head[:4] not in _FOURCC or len(head) < 45:
        return False
    metric = int(np.frombuffer(head, np.int32, 1, 33)[0])  # after fourcc, d, ntotal, 2 dummies, is_trained
    if metric != faiss.METRIC_INNER_PRODUCT:
        return False
    if head[:4] == b"IxSQ":
        qtype = int(np.frombuffer(head, np.int32, 1, 37)[0])
        return qtype == faiss.ScalarQuantizer.QT_fp16
    return True


class MappedFlat:
    """A flat or flat-fp16 index file searched through a sliding memory map (see the module docstring).

    Offers what index readers use of a FAISS index (``d``, ``ntotal``, ``metric_type``,
    ``reconstruct_n``); :mod:`pyserini_dense_ext.search.flat` searches it.
    """

    metric_type = faiss.METRIC_INNER_PRODUCT

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            fourcc = f.read(4)
            self.index_type = _FOURCC[fourcc]
            self.d = int(np.frombuffer(f.read(4), np.int32)[0])
            self.ntotal = int(np.frombuffer(f.read(8), np.int64)[0])
        self.dtype = np.dtype(np.float32 if self.index_type == "flat" else np.float16)
        self.row_bytes = self.d * self.dtype.itemsize
        size = self.path.stat().st_size
        self.offset = size - self.ntotal * self.row_bytes  # the rows end the file
        with open(self.path, "rb") as f:
            f.seek(self.offset - 8)
            count = int(np.frombuffer(f.read(8), np.uint64)[0])
        expected = self.ntotal * (self.d if self.index_type == "flat" else self.row_bytes)
        if self.offset < 45 or count != expected:
            raise ValueError(f"{self.path}: not a plain {self.index_type} index file (codes count {count}, "
                             f"expected {expected})")

    @property
    def nbytes(self) -> int:
        return self.ntotal * self.row_bytes

    def windows(self, start: int = 0, stop: int | None = None, rows: int = 1 << 16) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, (n, d) rows)`` for windows of ``rows`` rows from ``start`` to ``stop``, each mapped while
        the caller holds it.

        The arrays are views of the map in the stored dtype (float32 or float16), possibly
        unaligned; a window is unmapped as soon as its array is dropped, so a loop over windows
        holds at most two.
        """
        stop = self.ntotal if stop is None else stop
        with open(self.path, "rb") as f:
            fd = f.fileno()
            for first in range(start, stop, rows):
                n = min(rows, stop - first)
                begin = self.offset + first * self.row_bytes
                aligned = begin - begin % mmap.ALLOCATIONGRANULARITY
                length = begin - aligned + n * self.row_bytes
                flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # fault the window in at once
                window = mmap.mmap(fd, length, flags=flags, prot=mmap.PROT_READ, offset=aligned)
                view = np.frombuffer(window, dtype=self.dtype, count=n * self.d, offset=begin - aligned)
                del window  # the view alone keeps the map: it is unmapped when the caller lets go of the view
                yield first, view.reshape(n, self.d)
                del view

    def reconstruct_n(self, i0: int, n: int) -> np.ndarray:
        """Float32 rows ``i0 .. i0 + n`` (fp16 rows converted exactly)."""
        out = np.empty((n, self.d), dtype=np.float32)
        for first, rows in self.windows(i0, i0 + n):
            out[first - i0:first - i0 + len(rows)] = rows
        return out
