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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..args import arg
from ..recipe import BiEncoderRecipe, epoch_rng


@dataclass
class RepBertArgs:
    """repbert: the RepBERT recipe's own options"""

    hard_negatives: int | None = arg(None, "hard negatives per training pair, drawn from the top --negative-depth "
                                           "hits of --negatives without the query's judged positives (topped up "
                                           "with random documents where a query has too few); default: 1 with "
                                           "--negatives (the paper's BM25 triples), 0 (in-batch only) without",
                                     metavar="N")
    score_scale: float = arg(1.0, "multiply scores before the loss. The margin is 1: fine for the paper's "
                                  "unnormalised vectors, but half the whole range of cosine scores for an "
                                  "--l2-norm model, where a scale near 20 makes it 0.05")

    def validate(self) -> None:
        if self.hard_negatives is not None and self.hard_negatives < 0:
            raise ValueError(f"--hard-negatives must be >= 0, got {self.hard_negatives}")
        if not self.score_scale > 0:
            raise ValueError(f"--score-scale must be positive, got {self.score_scale}")


@dataclass(frozen=True)
class RepBertBatch:
    qids: list[str]  # one row per pair (a query with two positives appears twice)
    doc_rows: list[int]  # the batch's distinct documents (corpus rows): its columns
    targets: np.ndarray  # int64 (B, C): each row's relevant columns first, then -1 (MultiLabelMarginLoss's format)


class RepBertRecipe(BiEncoderRecipe):
    name = "repbert"
    family = "repbert"
    summary = "RepBERT: mean-pooled bi-encoder, in-batch (+ hard) negatives, MultiLabelMarginLoss"
    example = ("python -m pyserini_dense_ext.train repbert --model MODEL_DIR --data data/scifact \\\n"
               "    --negatives runs/bm25.train.trec --output models/repbert-scifact")
    Args = RepBertArgs
    defaults = dict(learning_rate=3e-6, batch_size=13, gradient_accumulation=2, weight_decay=0.01,
                    adam_epsilon=1e-8, max_grad_norm=1.0, seed=42)

    def prepare(self) -> None:
        if self.options.hard_negatives and not self.args.negatives:
            raise ValueError(f"--hard-negatives {self.options.hard_negatives} needs --negatives RUN")
        super().prepare()
        self.n_negatives = self.options.hard_negatives if self.options.hard_negatives is not None else \
            int(bool(self.args.negatives))
        self.pairs = self.data.pairs()
        self.positives = {q: self.data.positive_rows(q) for q in self.data.train_qrels}

    def sample_negatives(self, qid: str, rng: np.random.Generator) -> list[int]:
        """``n_negatives`` rows from the query's run hits, topped up with random non-relevant documents."""
        pool = self.data.negatives.get(qid, [])
        if len(pool) >= self.n_negatives:
            return rng.choice(pool, self.n_negatives, replace=False).tolist()
        picked, taken = list(pool), self.positives[qid] | set(pool)
        while len(picked) < self.n_negatives and len(taken) < len(self.data.corpus):
            row = int(rng.integers(len(self.data.corpus)))
            if row not in taken:
                picked.append(row)
                taken.add(row)
        return picked

    def batches(self, epoch: int) -> list[RepBertBatch]:
        rng = epoch_rng(self.args.seed, epoch)
        order = rng.permutation(len(self.pairs))
        out = []
        for start in range(0, len(order), self.args.batch_size):
            chunk = [self.pairs[i] for i in order[start:start + self.args.batch_size]]
            columns = []
            for qid, row in chunk:
                columns += [row, *self.sample_negatives(qid, rng)]
            columns = list(dict.fromkeys(columns))
            targets = np.full((len(chunk), len(columns)), -1, dtype=np.int64)
            for r, (qid, _) in enumerate(chunk):
                relevant = [c for c, row in enumerate(columns) if row in self.positives[qid]]
                targets[r, :len(relevant)] = relevant
            out.append(RepBertBatch([q for q, _ in chunk], columns, targets))
        return out

    def loss(self, batch: RepBertBatch) -> torch.Tensor:
        queries = self.model.embed([self.data.queries[q] for q in batch.qids], "query")
        docs = self.model.embed([self.data.corpus.texts[r] for r in batch.doc_rows], "document")
        scores = self.options.score_scale * queries @ docs.T
        return F.multilabel_margin_loss(scores.float(), torch.from_numpy(batch.targets).to(scores.device))

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "hard_negatives_per_pair": self.n_negatives}


RECIPE = RepBertRecipe
