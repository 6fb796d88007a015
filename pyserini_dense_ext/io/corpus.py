"""Read documents from Pyserini JsonCollection files (``id``, ``contents``) or BEIR ``corpus.jsonl``.

Validation is strict and up front: a malformed line, a missing id or text, an empty text, a
duplicate docid or non-UTF-8 bytes raise :class:`InputError` naming the file, line and field,
before any vector is computed or any index file is written.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import InputError
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


def read_corpus(path: str | Path, empty: str = "error", separator: str | None = None) -> list[Doc]:
    """All documents of a corpus, validated; duplicate docids are an error (they would corrupt runs).

    ``empty`` says what an empty document is: an error (default), skipped, or kept (it still gets a
    vector and a BM25 entry; Cranfield has two such documents). ``separator``: a docid holding it is an
    error (documents about to be split into passages ``docid<separator>k``).
    """
    if empty not in EMPTY_POLICIES:
        raise ValueError(f"empty must be one of {EMPTY_POLICIES}, got {empty!r}")
    docs: list[Doc] = []
    seen: dict[str, tuple[Path, int]] = {}
    for file in corpus_files(path):
        for lineno, obj in read_jsonl(file):
            doc = parse_doc(obj, file, lineno, empty)
            if doc is None:
                continue
            if doc.docid in seen:
                first_file, first_line = seen[doc.docid]
                raise InputError(file, f"duplicate docid {doc.docid!r} (first seen in {first_file}, line {first_line})",
                                 lineno, "id")
            if separator and separator in doc.docid:
                raise InputError(file, f"docid {doc.docid!r} contains {separator!r}, which separates a docid from its "
                                       f"passage number (docid{separator}k) and where MaxP cuts: rename the "
                                       "document", lineno, next(f for f in ID_FIELDS if f in obj))
            seen[doc.docid] = (file, lineno)
            docs.append(doc)
    if not docs:
        raise InputError(path, "corpus holds no documents")
    return docs
