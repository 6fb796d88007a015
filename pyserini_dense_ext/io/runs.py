"""TREC and MS MARCO run files: validated reading, atomic writing.

A run is ``{qid: [(docid, score), ...]}`` ranked best first. Writers go through a temporary
file renamed into place, so an interrupted search never leaves a truncated run behind.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Container, Iterable, Iterator, Sequence

from .atomic import atomic_write
from .errors import InputError
from .lines import iter_lines

Ranking = list[tuple[str, float]]
Run = dict[str, Ranking]
FORMATS = ("trec", "msmarco")


def iter_run(path: str | Path) -> Iterator[tuple[int, str, str, float]]:
    """Yield ``(line number, qid, docid, score)`` per hit of a TREC or MS MARCO run (scored 1/rank), validated."""
    for lineno, line in iter_lines(path, "run file"):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 6:
            qid, _, docid, _, score_s, _ = parts
            field, value = "score", score_s
        elif len(parts) == 3:
            qid, docid, rank_s = parts
            field, value = "rank", rank_s
        else:
            raise InputError(path, f"expected 6 (TREC) or 3 (MS MARCO) columns, got {len(parts)}", lineno)
        try:
            number = float(value)
        except ValueError:
            raise InputError(path, f"{value!r} is not a number", lineno, field) from None
        if not math.isfinite(number) or (field == "rank" and number <= 0):
            raise InputError(path, f"{value!r} is not a valid {field}", lineno, field)
        yield lineno, qid, docid, number if field == "score" else 1.0 / number


def read_run(path: str | Path, docids: Container[str] | None = None, docid_source: str = "the corpus",
             hint: Callable[[str], str] | None = None) -> Run:
    """Read a TREC run (6 columns) or MS MARCO run (``qid docid rank``, scored 1/rank).

    Hits are re-ranked by score (ties by docid, as fusion does), so a file's own rank column
    cannot disagree with its scores. Duplicate (qid, docid) pairs are an error, and so, when
    ``docids`` is given, is a hit outside it (a run made over another collection); ``hint(docid)``
    adds to that error what the docid suggests.
    """
    run: dict[str, dict[str, float]] = {}
    for lineno, qid, docid, score in iter_run(path):
        if docids is not None and docid not in docids:
            raise InputError(path, f"names document {docid!r}, which {docid_source} does not hold"
                             + (hint(docid) if hint else ""), lineno, "docid")
        hits = run.setdefault(qid, {})
        if docid in hits:
            raise InputError(path, f"duplicate docid {docid!r} for query {qid!r}", lineno, "docid")
        hits[docid] = score
    if not run:
        raise InputError(path, "run holds no hits")
    return {q: sorted(h.items(), key=lambda x: (-x[1], x[0])) for q, h in run.items()}


def format_lines(qid: str, hits: Iterable[tuple[str, float]], tag: str, fmt: str = "trec") -> Iterator[str]:
    """Lines of one query in TREC (``qid Q0 docid rank score tag``) or MS MARCO form.

    Scores are written in the shortest form that reads back as the same double (``repr``), not
    Pyserini's ``%.6f``: six decimals turn near-ties of cosine or RRF scores into ties, so a run
    read back would rank (and fuse, and evaluate) differently from the one in memory.
    """
    for rank, (docid, score) in enumerate(hits, start=1):
        yield (f"{qid} Q0 {docid} {rank} {float(score)!r} {tag}\n" if fmt == "trec" else f"{qid}\t{docid}\t{rank}\n")


def write_run(path: str | Path, run: Run | Sequence[tuple[str, Ranking]], tag: str = "dense_ext",
              fmt: str = "trec") -> None:
    """Write a whole run atomically, queries in the given order."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown run format {fmt!r}; choose from {FORMATS}")
    items = run.items() if isinstance(run, dict) else run
    with atomic_write(path) as f:
        for qid, hits in items:
            f.writelines(format_lines(qid, hits, tag, fmt))
