"""Batches of (query, judged-relevant document) pairs with in-batch and sampled negatives: what the RepBERT,
ME-BERT, ColBERT and TCT-ColBERT recipes share.

A batch is B pairs plus, per pair, ``hard_negatives`` documents sampled from the query's top
``--negative-depth`` hits of ``--negatives`` (judged positives removed; topped up with random
documents where a query has too few) and ``random_negatives`` random documents. Its columns are
the batch's distinct documents; each query is scored against all of them, so the other pairs'
documents are its in-batch negatives, except those judged relevant to it, which are targets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .args import arg
from .recipe import BiEncoderRecipe, epoch_rng


@dataclass
class PairArgs:
    """negatives and scores of a pair-batch recipe"""

    hard_negatives: int | None = arg(None, "hard negatives per training pair, drawn from the top --negative-depth "
                                           "hits of --negatives without the query's judged positives (topped up "
                                           "with random documents where a query has too few); default: the "
                                           "recipe's (see its description) with --negatives, 0 (in-batch only) "
                                           "without", metavar="N")
    random_negatives: int = arg(0, "random corpus documents per training pair, beyond the in-batch ones",
                                metavar="N")
    score_scale: float = arg(1.0, "multiply scores before the loss (an inverse temperature). Fine at 1 for the "
                                  "papers' unnormalised vectors; an --l2-norm model's cosine scores need about 20")

    def validate(self) -> None:
        for name in ("hard_negatives", "random_negatives"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
        if not self.score_scale > 0:
            raise ValueError(f"--score-scale must be positive, got {self.score_scale}")


@dataclass(frozen=True)
class PairBatch:
    qids: list[str]  # one row per pair (a query with two positives appears twice)
    doc_rows: list[int]  # the batch's distinct documents (corpus rows): its columns
    targets: np.ndarray  # int64 (B, C): each row's relevant columns first, then -1 (MultiLabelMarginLoss's format)
    positives: np.ndarray  # int64 (B,): the column of each row's own pair document


class PairRecipe(BiEncoderRecipe):
    """A family model trained on pair batches; subclasses supply ``loss`` (and ``default_hard_negatives``)."""

    Args = PairArgs
    default_hard_negatives = 1  # per pair, when --negatives is given and --hard-negatives is not

    def prepare(self) -> None:
        if self.options.hard_negatives and not self.args.negatives:
            raise ValueError(f"--hard-negatives {self.options.hard_negatives} needs --negatives RUN")
        super().prepare()
        self.n_negatives = self.options.hard_negatives if self.options.hard_negatives is not None else \
            self.default_hard_negatives if self.args.negatives else 0
        self.pairs = self.data.pairs()
        self.positives = {q: self.data.positive_rows(q) for q in self.data.train_qrels}

    def random_rows(self, n: int, taken: set[int], rng: np.random.Generator) -> list[int]:
        """Up to ``n`` random corpus rows not in ``taken`` (which grows by them)."""
        picked: list[int] = []
        while len(picked) < n and len(taken) < len(self.data.corpus):
            row = int(rng.integers(len(self.data.corpus)))
            if row not in taken:
                picked.append(row)
                taken.add(row)
        return picked

    def sample_negatives(self, qid: str, rng: np.random.Generator) -> list[int]:
        """``n_negatives`` rows from the query's run hits (topped up at random), then ``random_negatives`` rows."""
        pool = self.data.negatives.get(qid, [])
        taken = self.positives[qid] | set(pool)
        if len(pool) >= self.n_negatives:
            picked = rng.choice(pool, self.n_negatives, replace=False).tolist() if self.n_negatives else []
        else:
            picked = list(pool) + self.random_rows(self.n_negatives - len(pool), taken, rng)
        return picked + self.random_rows(self.options.random_negatives, taken, rng)

    def batches(self, epoch: int) -> list[PairBatch]:
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
            own = np.array([columns.index(row) for _, row in chunk], dtype=np.int64)
            out.append(PairBatch([q for q, _ in chunk], columns, targets, own))
        return out

    def query_texts(self, batch: PairBatch) -> list[str]:
        return [self.data.queries[q] for q in batch.qids]

    def doc_texts(self, batch: PairBatch) -> list[str]:
        return [self.data.corpus.texts[r] for r in batch.doc_rows]

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "hard_negatives_per_pair": self.n_negatives,
                "random_negatives_per_pair": self.options.random_negatives}


def other_positives_mask(batch: PairBatch, device: torch.device) -> torch.Tensor:
    """bool (B, C): columns judged relevant to a row other than its own pair's document. They are neither
    its target nor its negatives in a softmax over the batch (DPR-style in-batch cross-entropy)."""
    mask = np.zeros(batch.targets.shape, dtype=bool)
    for r, cols in enumerate(batch.targets):
        mask[r, cols[cols >= 0]] = True
        mask[r, batch.positives[r]] = False
    return torch.from_numpy(mask).to(device)


def in_batch_cross_entropy(scores: torch.Tensor, batch: PairBatch) -> torch.Tensor:
    """Cross-entropy of each row's own positive against every other column but its other positives."""
    scores = scores.float().masked_fill(other_positives_mask(batch, scores.device), float("-inf"))
    return F.cross_entropy(scores, torch.from_numpy(batch.positives).to(scores.device))
