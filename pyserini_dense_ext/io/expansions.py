"""docTTTTTquery predictions: read them in the formats users have, and append them to documents.

Two formats (``FORMATS``):

- ``jsonl``: one line per document, ``{"id": ..., "predicted_queries": [...]}``, what
  ``python -m pyserini_dense_ext.expand`` writes and what castorini's released Hugging Face
  expansion sets (``castorini/msmarco_v1_passage_doc2query-t5_expansions``, ...) hold; documents
  are matched by id, so several files (shards) may be given in any order.
- ``lines``: docTTTTTquery's released text files: one line per document in collection order,
  paired with the collection by position. Each file is one sample per document
  (``predicted_queries_topk_sample000.txt...``), so file i gives each document its i-th
  prediction; a file pasted together from several (``paste -d" "``, as the docTTTTTquery README
  does) is one prediction per document holding all of them.

A document's expanded text is its text, a newline, then its first N predictions joined by spaces:
docTTTTTquery's ``msmarco-v1/augment_corpus.py``, which builds the expanded corpora of Anserini's
doc2query-T5 regressions (``f"{contents}\\n{' '.join(predicted_queries[:n])}"``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .corpus import Doc, read_jsonl
from .errors import InputError
from .lines import iter_lines

FORMATS = ("jsonl", "lines")
Predictions = dict[str, list[str]]


def read_predictions_jsonl(paths: Sequence[str | Path]) -> tuple[Predictions, dict[str, tuple[Path, int]]]:
    """Predictions by docid from JSONL files, and where each docid was read (file, line) for later errors."""
    predictions: Predictions = {}
    where: dict[str, tuple[Path, int]] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise InputError(path, "predictions file does not exist")
        for lineno, obj in read_jsonl(path):
            docid = obj.get("id")
            if isinstance(docid, int) and not isinstance(docid, bool):
                docid = str(docid)
            if not isinstance(docid, str) or not docid.strip():
                raise InputError(path, f"must be a non-empty string, got {docid!r}", lineno, "id")
            queries = obj.get("predicted_queries")
            if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
                raise InputError(path, "must be a list of strings", lineno, "predicted_queries")
            if docid in where:
                first, line = where[docid]
                raise InputError(path, f"duplicate id {docid!r} (first in {first}, line {line})", lineno, "id")
            predictions[docid], where[docid] = [q.strip() for q in queries], (path, lineno)
    return predictions, where


def read_predictions_lines(paths: Sequence[str | Path], docs: Sequence[Doc], collection: str | Path) -> Predictions:
    """Predictions by docid from docTTTTTquery's text files: line i of each file belongs to ``docs[i]``."""
    columns = []
    for path in map(Path, paths):
        lines = [line.strip() for _, line in iter_lines(path, "predictions file")]
        if len(lines) != len(docs):
            raise InputError(path, f"has {len(lines)} lines but the collection {collection} has {len(docs)} "
                                   "documents: the released format holds one line per document, in collection order")
        columns.append(lines)
    return {d.docid: [c[i] for c in columns if c[i]] for i, d in enumerate(docs)}


def expanded_text(doc: Doc, queries: Sequence[str], copies: int | None = None) -> str:
    """The document's contents, a newline, its first ``copies`` predictions (all: None) joined by spaces."""
    chosen = list(queries if copies is None else queries[:copies])
    return f"{doc.contents}\n{' '.join(chosen)}" if chosen else doc.contents


def expand_docs(docs: Sequence[Doc], predictions: Predictions, copies: int | None, source: str | Path,
                collection: str | Path, where: dict[str, tuple[Path, int]] | None = None,
                key_of: dict[str, str] | None = None) -> list[Doc]:
    """``docs`` with their predictions appended (:func:`expanded_text`).

    Every document needs predictions and every prediction a document: a mismatch is an error
    naming both files. ``key_of`` maps a doc's id to the id its predictions are filed under (a
    passage ``d#k`` to its document ``d``, so every passage gets the document's predictions).
    """
    if copies is not None and copies < 1:
        raise ValueError(f"--copies must be positive, got {copies}")
    key_of = key_of or {}
    keys = [key_of.get(d.docid, d.docid) for d in docs]
    missing = [k for k in dict.fromkeys(keys) if k not in predictions]
    if missing:
        raise InputError(source, f"has no predictions for {len(missing)} of the documents of {collection} (first: "
                                 f"{missing[0]!r}); every document needs a line (shards: give every shard's file)")
    unknown = set(predictions) - set(keys)
    if unknown:
        first = min(unknown, key=lambda d: (where or {}).get(d, (Path(), 0))[1])
        path, line = (where or {}).get(first, (Path(source), None))
        raise InputError(path, f"id {first!r} is not a document of {collection} ({len(unknown)} such ids)", line, "id")
    return [Doc(d.docid, expanded_text(d, predictions[k], copies)) for d, k in zip(docs, keys)]
