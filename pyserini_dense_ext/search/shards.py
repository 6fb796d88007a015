"""Search several shard index dirs as one, without merging them.

Each shard answers its own top-k (a :class:`DenseSearcher`, so ME-BERT shards keep their exact
max-over-m), and the union is cut to the global top-k by score, ties broken by docid. Shards hold
disjoint documents, so a document's best score lives in exactly one shard and the global top-k is
always inside the union of the shards' top-k: the result equals searching the merged index. The
shards are checked to belong together exactly as ``index.merge`` checks them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..index.faiss_dir import META_FILE
from ..index.merge import check_compatible, order_shards
from ..io.fingerprint import combine_fingerprints
from ..pyserini_compat import QueryEncoder
from .dense import DenseSearcher


class ShardedSearcher:
    """``DenseSearcher``'s interface (``search``, ``batch_search``, ``search_vectors``, ``search_run``) over shards."""

    def __init__(self, shard_dirs: Sequence[str | Path], query_encoder: QueryEncoder | str | Path | None = None,
                 family: str | None = None, device: str = "cpu", ef_search: int | None = None,
                 batch_size: int = 64, mmap: bool = False, backend: str = "auto", precision: str = "fp32",
                 **encoder_overrides: Any):
        if not shard_dirs:
            raise ValueError("no shard dirs given")
        searchers = [DenseSearcher(d, ef_search=ef_search, mmap=mmap) for d in shard_dirs]
        order = order_shards([(s.index_dir, s.meta, (s.index_dir / META_FILE).is_file()) for s in searchers])
        self.shards = [searchers[i] for i in order]
        check_compatible([(s.index_dir, s.meta, s.index.metric_type) for s in self.shards],
                         [s.docids for s in self.shards])
        if isinstance(query_encoder, (str, Path)):  # one encoder for all shards, which share one recorded config
            query_encoder = self.shards[0].load_query_encoder(query_encoder, family, device, batch_size,
                                                              encoder_overrides, backend, precision)
        for shard in self.shards:
            shard.set_query_encoder(query_encoder)
        self.query_encoder = query_encoder
        self.offsets = np.cumsum([0] + [s.num_docs for s in self.shards])  # shard i's documents start here
        self.docids: list[str] = [d for s in self.shards for d in s.docids]
        self._docid_rank = np.empty(len(self.docids), dtype=np.int64)  # position in docid order, for ties
        self._docid_rank[np.argsort(np.array(self.docids, dtype=object), kind="stable")] = np.arange(len(self.docids))

    @property
    def dimension(self) -> int:
        return self.shards[0].dimension

    @property
    def num_docs(self) -> int:
        return len(self.docids)

    @property
    def corpus(self) -> str | None:
        """Fingerprint of all shards' documents (as a merged index records it), when every shard records its own."""
        corpora = [s.corpus for s in self.shards]
        return None if None in corpora else combine_fingerprints(corpora)

    @property
    def passages(self) -> dict[str, Any] | None:
        return self.shards[0].passages  # shards share one split (checked)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.shards[0].encode_queries(queries)

    def search_vectors(self, vectors: np.ndarray, k: int, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k over all shards: float32 scores and int64 indices into ``self.docids`` ``(n, k)``, -1 padded."""
        scores, docs = [], []
        for shard, offset in zip(self.shards, self.offsets):
            s, d = shard.search_vectors(vectors, k, threads)
            scores.append(s)
            docs.append(np.where(d >= 0, d + offset, -1))
        all_scores, all_docs = np.concatenate(scores, axis=1), np.concatenate(docs, axis=1)
        tie = np.where(all_docs >= 0, self._docid_rank[np.maximum(all_docs, 0)], len(self.docids))
        order = np.lexsort((tie, -all_scores.astype(np.float64)), axis=-1)[:, :k]
        return np.take_along_axis(all_scores, order, 1), np.take_along_axis(all_docs, order, 1)

    # The front end is DenseSearcher's own: it only calls encode_queries, search_vectors and docids.
    to_ranking = DenseSearcher.to_ranking
    _docids_scores = DenseSearcher._docids_scores
    to_results = DenseSearcher.to_results
    search = DenseSearcher.search
    batch_search = DenseSearcher.batch_search
    search_run = DenseSearcher.search_run
