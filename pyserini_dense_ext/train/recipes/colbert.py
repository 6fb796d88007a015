"""ColBERT (Khattab & Zaharia, SIGIR 2020) as TCT-ColBERT's teacher: late interaction over 128-dim
token vectors, with TCT-ColBERT's input formatting (``[Q]``/``[D]`` markers, ``[MASK]`` query
augmentation; the ``colbert`` family, :mod:`pyserini_dense_ext.encoders.colbert`).

The score of a (query, document) pair is MaxSim: the sum over query tokens of the maximum inner
product with the document's tokens. Training is cross-entropy over the batch: each query's own
relevant document against the other pairs' documents (in-batch) and, per pair, ``--hard-negatives``
(default 1: the paper's (query, positive, BM25 negative) triples) sampled from the top
``--negative-depth`` hits of ``--negatives``. Defaults follow the paper: learning rate 3e-6, batch
32 triples. The dev split is ranked by re-scoring its candidates (``--eval-candidates``) with MaxSim,
as ``python -m pyserini_dense_ext.rerank --scorer colbert`` does with the saved dir.
"""
from __future__ import annotations

import torch

from ...encoders.colbert import maxsim, rerank
from ...io.runs import Run
from ..pairs import PairBatch, PairRecipe, in_batch_cross_entropy


class ColBertRecipe(PairRecipe):
    name = "colbert"
    family = "colbert"
    summary = "ColBERT teacher: 128-dim token vectors, MaxSim, cross-entropy over in-batch + hard negatives"
    example = ("python -m pyserini_dense_ext.train colbert --model MODEL_DIR --data data/scifact \\\n"
               "    --negatives runs/bm25.train.trec --output models/colbert-scifact")
    defaults = dict(learning_rate=3e-6, batch_size=32)
    default_hard_negatives = 1

    def loss(self, batch: PairBatch) -> torch.Tensor:
        queries, _ = self.model.token_vectors(self.query_texts(batch), "query")
        docs, mask = self.model.token_vectors(self.doc_texts(batch), "document")
        return in_batch_cross_entropy(self.options.score_scale * maxsim(queries, docs, mask), batch)

    def dev_run(self) -> Run:
        """MaxSim over each dev query's candidates (the whole corpus without --eval-candidates)."""
        corpus = self.data.corpus
        everything = corpus.docids
        candidates = {q: [corpus.docids[r] for r in self.data.candidates[q]] if self.data.candidates is not None
                      else everything for q in self.data.dev_qrels}
        queries = {q: self.data.queries[q] for q in self.data.dev_qrels}
        return rerank(self.model, queries, candidates, dict(zip(corpus.docids, corpus.texts)),
                      self.args.eval_batch_size)


RECIPE = ColBertRecipe
