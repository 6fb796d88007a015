"""Read documents from Pyserini JsonCollection files (``id``, ``contents``) or BEIR ``corpus.jsonl``.

Validation is strict and up front: a malformed line, a missing id or text, an empty text, a
duplicate docid or non-UTF-8 bytes raise :class:`InputError` naming the file, line and field,
before any vector is computed or any index file is written.

:func:`read_corpus` returns every document in memory. :class:`CorpusStream` keeps that guarantee
in constant memory, for corpora of any size: a first pass validates every line and keeps only a
64-bit hash of each docid (8 bytes a document: 8 MB for a million), from which duplicate docids
are found (a hash match is confirmed on the docids themselves, by a second look at those lines
only); later passes read the documents again, chunk by chunk, checking each docid against its
hash, so a file changed between the passes is an error rather than a silent mix.
"""
from __future__ import annotations

import hashlib
import json
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np

from .errors import InputError
from .fingerprint import docs_fingerprint
from .lines import iter_lines

ID_FIELDS = ("id", "_id", "docid")


@dataclass(frozen=True)
class Doc:
    docid: str
    text: str
    title: str = ""

    @property
    def contents(self) -> str:
        """Title and text as one string: Pyserini's BEIR "flat" convention for BM25."""
        return f"{self.title} {self.text}" if self.title else self.text


def corpus_files(path: str | Path) -> list[Path]:
    """A file, or every ``*.jsonl``/``*.json`` file of a directory in name order (JsonCollection)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        beir = path / "corpus.jsonl"
        if beir.is_file():
            return [beir]
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".json") and p.is_file())
        if files:
            return files
        raise InputError(path, "directory holds no .jsonl or .json corpus file")
    raise InputError(path, "corpus file or directory does not exist")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line, failing clearly on bad bytes or JSON."""
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(path, f"is not valid JSON ({e.msg} at column {e.colno})", lineno) from None
        except RecursionError:
            raise InputError(path, "is JSON nested too deeply to read", lineno) from None
        if not isinstance(obj, dict):
            raise InputError(path, "is not a JSON object", lineno)
        yield lineno, obj


def _string_field(obj: dict, field: str, path: Path, lineno: int, required: bool) -> str:
    value = obj.get(field)
    if value is None:
        if required:
            raise InputError(path, "is missing", lineno, field)
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and field in ID_FIELDS:
        return str(value)
    if not isinstance(value, str):
        raise InputError(path, f"must be a string, got {type(value).__name__}", lineno, field)
    return check_unicode(value, path, lineno, field)


def check_unicode(value: str, path: Path, lineno: int, field: str) -> str:
    """JSON's ``\\ud800`` escapes decode to lone surrogates, which no UTF-8 file, tokenizer or hash accepts."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(path, f"holds a lone surrogate {value[e.start]!r} (a \\u escape that is not a character)",
                         lineno, field) from None
    return value


EMPTY_POLICIES = ("error", "skip", "keep")


def parse_doc(obj: dict, path: Path, lineno: int, empty: str = "error") -> Doc | None:
    """One JSON object to a :class:`Doc`; BEIR (title + text) and JsonCollection (contents) alike."""
    id_field = next((f for f in ID_FIELDS if f in obj), None)
    if id_field is None:
        raise InputError(path, "has no document id", lineno, "id")
    docid = _string_field(obj, id_field, path, lineno, required=True).strip()
    if not docid or any(c.isspace() for c in docid):
        raise InputError(path, f"must be non-empty with no whitespace, got {docid!r}", lineno, id_field)
    if "contents" in obj:
        text_field, title = "contents", ""
    elif "text" in obj:
        text_field, title = "text", _string_field(obj, "title", path, lineno, required=False).strip()
    else:
        raise InputError(path, "is missing (expected 'text' or 'contents')", lineno, "text")
    text = _string_field(obj, text_field, path, lineno, required=True).strip()
    if not text and not title:
        if empty == "error":
            raise InputError(path, f"is empty for document {docid!r} (pass --empty keep or skip to accept "
                                   "empty documents)", lineno, text_field)
        if empty == "skip":
            return None
    return Doc(docid, text, title)


def iter_docs(path: str | Path, empty: str = "error", separator: str | None = None) -> Iterator[tuple[Path, int, Doc]]:
    """(file, line, document) for every document, in corpus order, each validated as it is read.

    ``separator``: a docid holding it is an error (documents about to be split into passages
    ``docid<separator>k``).
    """
    if empty not in EMPTY_POLICIES:
        raise ValueError(f"empty must be one of {EMPTY_POLICIES}, got {empty!r}")
    for file in corpus_files(path):
        for lineno, obj in read_jsonl(file):
            doc = parse_doc(obj, file, lineno, empty)
            if doc is None:
                continue
            if separator and separator in doc.docid:
                raise InputError(file, f"docid {doc.docid!r} contains {separator!r}, which separates a docid from its "
                                       f"passage number (docid{separator}k) and where MaxP cuts: rename the "
                                       "document", lineno, next(f for f in ID_FIELDS if f in obj))
            yield file, lineno, doc


def _duplicate_error(first: tuple[Path, int], file: Path, lineno: int, docid: str) -> InputError:
    return InputError(file, f"duplicate docid {docid!r} (first seen in {first[0]}, line {first[1]})", lineno, "id")


def read_corpus(path: str | Path, empty: str = "error", separator: str | None = None) -> list[Doc]:
    """All documents of a corpus, validated; duplicate docids are an error (they would corrupt runs).

    ``empty`` says what an empty document is: an error (default), skipped, or kept (it still gets a
    vector and a BM25 entry; Cranfield has two such documents). ``separator``: a docid holding it is an
    error (documents about to be split into passages ``docid<separator>k``).
    """
    docs: list[Doc] = []
    seen: dict[str, tuple[Path, int]] = {}
    for file, lineno, doc in iter_docs(path, empty, separator):
        if doc.docid in seen:
            raise _duplicate_error(seen[doc.docid], file, lineno, doc.docid)
        seen[doc.docid] = (file, lineno)
        docs.append(doc)
    if not docs:
        raise InputError(path, "corpus holds no documents")
    return docs


def docid_hash(docid: str) -> int:
    """A docid's 64-bit BLAKE2b hash: what :class:`CorpusStream` keeps of each document."""
    return int.from_bytes(hashlib.blake2b(docid.encode("utf-8"), digest_size=8).digest(), "little")


def hashes_fingerprint(hashes: np.ndarray) -> str:
    """SHA-256 over a run of docid hashes: which documents, in which order (resume and shard identity)."""
    return hashlib.sha256(np.ascontiguousarray(hashes, dtype="<u8").tobytes()).hexdigest()


class DocSource(Protocol):
    """Documents an encode reads in order, possibly more than once: a list in memory or a :class:`CorpusStream`."""

    def __len__(self) -> int: ...

    def fingerprint(self) -> str:
        """:func:`hashes_fingerprint` of the documents' docids, in order."""

    def docs(self) -> Iterator[Doc]:
        """The documents, in order."""

    def corpus_fingerprint(self) -> str:
        """:func:`~pyserini_dense_ext.io.fingerprint.docs_fingerprint` of the documents (docid and contents)."""


class DocList:
    """A :class:`DocSource` over documents already in memory."""

    def __init__(self, docs: Sequence[Doc]):
        self.items = docs

    def __len__(self) -> int:
        return len(self.items)

    def fingerprint(self) -> str:
        return hashes_fingerprint(np.fromiter((docid_hash(d.docid) for d in self.items), dtype=np.uint64,
                                              count=len(self.items)))

    def docs(self) -> Iterator[Doc]:
        return iter(self.items)

    def corpus_fingerprint(self) -> str:
        return docs_fingerprint(self.items)


def as_source(docs: Sequence[Doc] | DocSource) -> DocSource:
    """``docs`` as a :class:`DocSource`: a list wrapped in a :class:`DocList`, a source as it is."""
    return docs if hasattr(docs, "fingerprint") else DocList(docs)  # type: ignore[return-value,arg-type]


class CorpusStream:
    """A corpus validated in full, then read chunk by chunk: constant memory (see the module docstring).

    ``shard`` (start, stop) restricts the documents read to a contiguous range of the corpus; the
    whole corpus is validated either way. ``separator``: a docid holding it is an error (as in
    :func:`read_corpus`).
    """

    def __init__(self, path: str | Path, empty: str = "error", progress: bool = False, separator: str | None = None):
        from ..progress import progress_bar

        self.path, self.empty = Path(path), empty
        hashes = array("Q")
        with progress_bar(None, "validating corpus", "doc", progress) as bar:
            for _, _, doc in iter_docs(path, empty, separator):
                hashes.append(docid_hash(doc.docid))
                bar.update()
        if not hashes:
            raise InputError(path, "corpus holds no documents")
        self.hashes = np.frombuffer(hashes, dtype=np.uint64)
        self.total = len(self.hashes)
        self.range = range(self.total)
        self._corpus_fingerprint: str | None = None
        self._check_duplicates()

    def _check_duplicates(self) -> None:
        ordered = np.sort(self.hashes)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if not len(repeated):
            return
        suspects = set(repeated.tolist())
        seen: dict[str, tuple[Path, int]] = {}
        for file, lineno, doc in iter_docs(self.path, self.empty):  # only hash matches are remembered
            if docid_hash(doc.docid) in suspects:
                if doc.docid in seen:
                    raise _duplicate_error(seen[doc.docid], file, lineno, doc.docid)
                seen[doc.docid] = (file, lineno)

    def shard(self, start: int, stop: int) -> "CorpusStream":
        """Read only documents ``start .. stop - 1`` from now on."""
        self.range = range(start, stop)
        self._corpus_fingerprint = None
        return self

    def __len__(self) -> int:
        return len(self.range)

    def fingerprint(self) -> str:
        return hashes_fingerprint(self.hashes[self.range.start:self.range.stop])

    def docs(self) -> Iterator[Doc]:
        for position, (file, lineno, doc) in enumerate(iter_docs(self.path, self.empty)):
            if position >= self.range.stop:
                return
            if docid_hash(doc.docid) != self.hashes[position]:
                raise InputError(file, f"changed while being encoded: document {position + 1} is now "
                                       f"{doc.docid!r}", lineno, "id")
            if position >= self.range.start:
                yield doc

    def corpus_fingerprint(self) -> str:
        """Computed once, by one more pass over the documents read (the texts are not kept)."""
        if self._corpus_fingerprint is None:
            self._corpus_fingerprint = docs_fingerprint(self.docs())
        return self._corpus_fingerprint
