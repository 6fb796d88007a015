"""Read relevance judgements: TREC (``qid 0 docid rel``) or BEIR TSV (``query-id corpus-id score`` + header)."""
from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .lines import iter_lines

Qrels = dict[str, dict[str, int]]


def read_qrels(path: str | Path) -> Qrels:
    """``{qid: {docid: grade}}``; the format is told apart by the column count of each line."""
    qrels: Qrels = {}
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
        qrels.setdefault(qid, {})[docid] = value
    if not qrels:
        raise InputError(path, "holds no judgements")
    return qrels
