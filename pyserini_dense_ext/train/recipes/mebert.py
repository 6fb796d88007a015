"""ME-BERT (Luan et al., 2021, "Sparse, Dense, and Attentional Representations for Text Retrieval", TACL):
a query is its ``[CLS]`` vector, a document its first m contextual vectors (``--num-vectors``, default
3), optionally projected to k dims + LayerNorm on both sides (``--projection-dim``); the score is the
maximum inner product over the m document vectors. ``--num-vectors 1`` is DE-BERT.

Training is cross-entropy over the batch: each query's own relevant document against the other
pairs' documents (in-batch, random negatives for it) and, per pair, ``--hard-negatives`` (default 7)
documents sampled from its top ``--negative-depth`` (100) hits of a precomputed run (the paper's BM25
top 100), with ``--random-negatives`` more random documents if asked for. Documents judged relevant
to a query other than its pair's are left out of its softmax. The model is the ``mebert`` family's,
so the saved dir (projection included, ``projection.safetensors``) indexes m rows per document.
"""
from __future__ import annotations

import torch

from ..pairs import PairBatch, PairRecipe, in_batch_cross_entropy


class MeBertRecipe(PairRecipe):
    name = "mebert"
    family = "mebert"
    summary = "ME-BERT: m document vectors (max over m; m=1 is DE-BERT), cross-entropy, in-batch + 7 BM25 negatives"
    example = ("python -m pyserini_dense_ext.train mebert --model MODEL_DIR --data data/scifact \\\n"
               "    --negatives runs/bm25.train.trec --num-vectors 3 --output models/mebert-scifact")
    default_hard_negatives = 7  # sampled from the BM25 top 100 (--negative-depth)

    def loss(self, batch: PairBatch) -> torch.Tensor:
        queries = self.model.embed(self.query_texts(batch), "query")  # (B, k)
        docs = self.model.embed(self.doc_texts(batch), "document")  # (C, m, k)
        scores = torch.einsum("bk,cmk->bcm", queries, docs).amax(dim=2)
        return in_batch_cross_entropy(self.options.score_scale * scores, batch)


RECIPE = MeBertRecipe
