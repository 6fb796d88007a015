"""RepBERT (Zhan et al., 2020, arXiv:2006.15498): one BERT for queries and documents, ``[CLS] text [SEP]``,
mean pooled, scored by inner product, trained with in-batch negatives and ``MultiLabelMarginLoss``.

A batch is B (query, judged-relevant document) pairs plus ``--hard-negatives`` documents per pair
from a run file. Each query is scored against every document of the batch (B x C inner products);
its targets are every column whose document is judged relevant to it, so another pair's positive
that is also relevant to this query (a shared or duplicate positive) is never pushed down. The loss
is ``MultiLabelMarginLoss``: for each query, the sum over (target j, non-target i) of
max(0, 1 - (s_j - s_i)), divided by C, averaged over the queries.

Defaults follow the authors' code (jingtaozhan/RepBERT-Index, ``train.py``): learning rate 3e-6,
AdamW epsilon 1e-8, weight decay 0.01 (not on biases and LayerNorm), clipping at 1.0, gradient
accumulation 2, seed 42; queries 20 and documents 256 tokens with segment ids 0 and 1 (the family's
defaults). Its batches are 26 (query, document) rows, a positive and a BM25 negative per query,
which is 13 pairs with one hard negative each here. It warms up for 10,000 steps of a one-epoch
MS MARCO run; warm-up here is a share of the steps (10%), as 10,000 steps outlast small data sets.
Batches are :mod:`..pairs`'s, shared with the other pair-batch recipes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..pairs import PairBatch, PairRecipe


class RepBertRecipe(PairRecipe):
    name = "repbert"
    family = "repbert"
    summary = "RepBERT: mean-pooled bi-encoder, in-batch (+ hard) negatives, MultiLabelMarginLoss"
    example = ("python -m pyserini_dense_ext.train repbert --model MODEL_DIR --data data/scifact \\\n"
               "    --negatives runs/bm25.train.trec --output models/repbert-scifact")
    defaults = dict(learning_rate=3e-6, batch_size=13, gradient_accumulation=2, weight_decay=0.01,
                    adam_epsilon=1e-8, max_grad_norm=1.0, seed=42)
    default_hard_negatives = 1  # the paper's (query, positive, BM25 negative) triples

    def loss(self, batch: PairBatch) -> torch.Tensor:
        queries = self.model.embed(self.query_texts(batch), "query")
        docs = self.model.embed(self.doc_texts(batch), "document")
        scores = self.options.score_scale * queries @ docs.T
        return F.multilabel_margin_loss(scores.float(), torch.from_numpy(batch.targets).to(scores.device))


RECIPE = RepBertRecipe
