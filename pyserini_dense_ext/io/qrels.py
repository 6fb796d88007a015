"""Read relevance judgements: TREC (``qid 0 docid rel``) or BEIR TSV (``query-id corpus-id score`` + header)."""
from __future__ import annotations

from pathlib import Path
from typing import Container, Iterator

from .errors import InputError
from .lines import iter_lines

Qrels = dict[str, dict[str, int]]


def iter_qrels(path: str | Path) -> Iterator[tuple[int, str, str, int]]:
    """Yield ``(line number, qid, docid, grade)`` per judgement, so callers can name the line of a bad one."""
    for lineno, line in iter_lines(path, "qrels file"):
        parts = line.split()
        if not parts:
            continue
        if lineno == 1 and parts[0] in ("query-id", "qid", "query_id"):
            continue  # BEIR header
        if len(parts) == 4:
            qid, _, docid, grade = parts
        elif len(parts) == 3:
            qid, docid, grade = parts
        else:
            raise InputError(path, f"expected 3 (BEIR) or 4 (TREC) columns, got {len(parts)}", lineno)
        try:
            value = int(float(grade))
        except (ValueError, OverflowError):  # "x", "nan", "inf"
            raise InputError(path, f"relevance grade {grade!r} is not a number", lineno, "score") from None
        yield lineno, qid, docid, value


def read_qrels(path: str | Path, docids: Container[str] | None = None, qids: Container[str] | None = None,
               docid_source: str = "the corpus", qid_source: str = "the queries") -> Qrels:
    """``{qid: {docid: grade}}``; the format is told apart by the column count of each line.

    With ``docids`` (``qids``), a judgement naming a document (query) outside them is an error at
    its line: training on it would silently drop the pair.
    """
    qrels: Qrels = {}
    for lineno, qid, docid, grade in iter_qrels(path):
        if docids is not None and docid not in docids:
            raise InputError(path, f"names document {docid!r}, which {docid_source} does not hold", lineno, "docid")
        if qids is not None and qid not in qids:
            raise InputError(path, f"names query {qid!r}, which has no text in {qid_source}", lineno, "qid")
        qrels.setdefault(qid, {})[docid] = grade
    if not qrels:
        raise InputError(path, "holds no judgements")
    return qrels
