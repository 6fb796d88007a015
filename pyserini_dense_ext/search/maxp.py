"""Documents ranked by their best passage (MaxP), with Pyserini's ``--max-passage`` semantics.

Pyserini applies MaxP while writing a run (``pyserini/output_writer.py``, ``hits_iterator``): it
walks one query's ranked passage hits, cuts each docid at the first ``--max-passage-delimiter``
(``'#'``), keeps a document at its first (so best-scoring) passage with that passage's score,
skips its later passages, and stops after ``--max-passage-hits`` documents (default 100). The
passages searched are ``--hits`` (default 1000), so a query may end with fewer documents than
``--max-passage-hits`` when a few documents hold many of the top passages. :func:`max_passage`
does the same on arrays; ``search --max-passage`` gives the run Pyserini's ``FaissSearcher`` and
its writer give on the same index (tested).
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from ..fusion.base import Hits
from ..io.runs import Run

DELIMITER = "#"
MAX_PASSAGE_HITS = 100  # Pyserini's --max-passage-hits default


def document_ids(docids: Sequence[str], delimiter: str = DELIMITER) -> list[str]:
    """Each passage id cut at the first ``delimiter``: ``d#3`` -> ``d`` (an id without it is kept whole)."""
    return [d.split(delimiter, 1)[0] for d in docids]


def max_passage(docids: Sequence[str], scores: Sequence[float], hits: int | None = MAX_PASSAGE_HITS,
                delimiter: str = DELIMITER) -> Hits:
    """One query's ranked passages as ranked documents: (docids, float64 scores), at most ``hits`` (None: all)."""
    if hits is not None and hits < 1:
        raise ValueError(f"--max-passage-hits must be positive, got {hits}")
    seen: dict[str, None] = {}
    keep: list[int] = []
    for i, doc in enumerate(document_ids(list(docids), delimiter)):
        if doc in seen:
            continue
        seen[doc] = None
        keep.append(i)
        if hits is not None and len(keep) == hits:
            break
    return (np.array(list(seen), dtype=str), np.asarray(scores, dtype=np.float64)[keep])


def max_passage_run(run: Run, hits: int | None = MAX_PASSAGE_HITS, delimiter: str = DELIMITER) -> Run:
    """:func:`max_passage` on every query of a run of passages."""
    out: Run = {}
    for qid, ranking in run.items():
        docids, scores = max_passage([d for d, _ in ranking], [s for _, s in ranking], hits, delimiter)
        out[qid] = list(zip(docids.tolist(), scores.tolist()))
    return out


def warn_unless_max_passage(enabled: bool, searcher: Any, where: object) -> None:
    """A search of an index of passages without ``--max-passage`` ranks passages, not documents: say so."""
    if not enabled and getattr(searcher, "passages", None):
        logging.getLogger(__name__).warning(f"{where} holds passages (docid{DELIMITER}k) and --max-passage is not "
                                            "set: the run ranks passages, not documents")
