"""First-stage candidates as int32 document numbers of a dense index (CODER's M_C lists).

A run's docids become row numbers of :class:`~pyserini_dense_ext.index.vectors.DocVectors`
once, so reranking and training move int32 arrays (4 bytes a candidate), never strings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from ..io.errors import InputError
from ..io.runs import Run


@dataclass
class Candidates:
    """``ids[i]`` is query ``qids[i]``'s candidate documents in first-stage rank order, -1 padded (int32)."""

    qids: list[str]
    ids: np.ndarray

    @property
    def depth(self) -> int:
        return int(self.ids.shape[1])

    def row(self, qid: str) -> np.ndarray:
        return self.ids[self.qids.index(qid)]


class UnknownDocid(KeyError):
    """A candidate the index lacks: ``row`` is its list, ``docid`` its id."""

    def __init__(self, row: int, docid: str):
        super().__init__(docid)
        self.row, self.docid = row, docid


def docids_to_ids(docids: Sequence[Sequence[str]], doc_index: Mapping[str, int], width: int | None = None) -> np.ndarray:
    """Lists of docids to one int32 ``(n, width)`` array, -1 padded, each list cut at ``width`` (default: longest)."""
    if width is None:
        width = max((len(d) for d in docids), default=0)
    ids = np.full((len(docids), max(width, 1)), -1, dtype=np.int32)
    for i, row in enumerate(docids):
        row = row[:width]
        try:
            ids[i, :len(row)] = [doc_index[d] for d in row]
        except KeyError as e:
            raise UnknownDocid(i, e.args[0]) from None
    return ids


def candidates_from_run(run: Run, doc_index: Mapping[str, int], depth: int | None = None,
                        qids: Sequence[str] | None = None, source: str = "run",
                        hint: Callable[[str], str] | None = None) -> Candidates:
    """The top ``depth`` hits (all when None) of each query in ``qids`` (default: the run's) as int32 ids.

    A docid the index lacks is an :class:`InputError` naming the run and the field: reranking against
    vectors of another corpus would silently score nothing. (``read_run(path, docids=...)`` names the line.)
    ``hint`` adds to that error what the docid suggests (say, that the index holds its passages).
    """
    qids = list(run) if qids is None else list(qids)
    try:
        ids = docids_to_ids([[d for d, _ in run.get(q, ())] for q in qids], doc_index, depth)
    except UnknownDocid as e:
        raise InputError(source, f"docid {e.docid!r} (query {qids[e.row]!r}) is not in the dense index: the run and "
                                 "the index must come from the same corpus" + (hint(e.docid) if hint else ""),
                         field="docid") from None
    return Candidates(qids, ids)
