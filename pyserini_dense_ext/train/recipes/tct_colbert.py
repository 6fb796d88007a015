"""TCT-ColBERT (Lin, Yang and Lin, 2021, "In-Batch Negatives for Knowledge Distillation with Tightly-Coupled
Teachers for Dense Retrieval", RepL4NLP): a mean-pooled bi-encoder student (the ``tct_colbert`` family)
distilled from a frozen ColBERT teacher (``--teacher``, a ``colbert`` dir: ``train colbert``).

Tightly coupled: the teacher scores every (query, document) pair of the batch on the fly, the
in-batch ones included, so the student learns the teacher's distribution over all of them. For
query i with scores s (student, inner products) and t (teacher, MaxSim) over the batch's columns:

    loss = gamma * CE(s, own positive) + (1 - gamma) * KL(softmax(t / tau) || softmax(s / tau))

with tau = 0.25 and gamma = 0.1 (``--temperature``, ``--gamma``; the paper's eq. 6 and defaults as
the issue states them). Documents judged relevant to another query of the batch are left out of the
cross-entropy, not of the teacher's distribution.

HN+ (the paper's second stage) is a second run of this recipe whose ``--negatives`` are the student's
own top hits: encode the corpus with the stage-1 student, search the training queries, train again
from the student on that run (docs/training.md lists the commands).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ...encoders import load_model, resolve_config
from ...encoders.colbert import ColBertModel, maxsim
from ...encoders.loading import check_model_dir
from ...io.errors import InputError
from ..args import arg
from ..data import sha256_file
from ..pairs import PairArgs, PairBatch, PairRecipe, in_batch_cross_entropy


@dataclass
class TctArgs(PairArgs):
    """distillation: the teacher and the loss mix (plus the pair-batch options)"""

    teacher: str | None = arg(None, "the frozen ColBERT teacher: a colbert model dir (python -m "
                                    "pyserini_dense_ext.train colbert ...) (required)", metavar="DIR")
    temperature: float = arg(0.25, "tau: both score distributions are softmax(scores / tau) in the KL term")
    gamma: float = arg(0.1, "weight of the hard-label cross-entropy; the KL term gets 1 - gamma")

    def validate(self) -> None:
        super().validate()
        if self.teacher is None:
            raise ValueError("--teacher: is required (a colbert model dir)")
        if not self.temperature > 0:
            raise ValueError(f"--temperature must be positive, got {self.temperature}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"--gamma must be in [0, 1], got {self.gamma}")


class TctColBertRecipe(PairRecipe):
    name = "tct_colbert"
    family = "tct_colbert"
    summary = "TCT-ColBERT: bi-encoder student, in-batch KL distillation from a frozen ColBERT teacher + CE"
    example = ("python -m pyserini_dense_ext.train tct_colbert --model MODEL_DIR --teacher models/colbert-scifact \\\n"
               "    --data data/scifact --negatives runs/bm25.train.trec --output models/tct-scifact")
    Args = TctArgs
    default_hard_negatives = 1

    def prepare(self) -> None:
        teacher_dir = check_model_dir(self.options.teacher)
        family = resolve_config(teacher_dir).family  # checked before anything slow is loaded
        if family != ColBertModel.family:
            raise InputError(teacher_dir, f"is a {family} model; --teacher needs a colbert dir "
                                          "(python -m pyserini_dense_ext.train colbert ...)", field="family")
        super().prepare()
        teacher = load_model(teacher_dir, device=str(self.device))  # strict: its own config and weights
        self.teacher = teacher.eval().requires_grad_(False)

    def loss(self, batch: PairBatch) -> torch.Tensor:
        queries, docs = self.query_texts(batch), self.doc_texts(batch)
        student = self.options.score_scale * (self.model.embed(queries, "query") @ self.model.embed(docs, "document").T)
        with torch.no_grad():
            q_tokens, _ = self.teacher.token_vectors(queries, "query")
            d_tokens, d_mask = self.teacher.token_vectors(docs, "document")
            teacher = maxsim(q_tokens, d_tokens, d_mask).float()
        tau, gamma = self.options.temperature, self.options.gamma
        kl = F.kl_div(F.log_softmax(student.float() / tau, dim=1), F.log_softmax(teacher / tau, dim=1),
                      reduction="batchmean", log_target=True)
        return gamma * in_batch_cross_entropy(student, batch) + (1 - gamma) * kl

    def provenance(self) -> dict[str, Any]:
        teacher_dir = Path(self.options.teacher)
        weights = sorted(p for p in teacher_dir.iterdir() if p.suffix == ".safetensors")
        return {**super().provenance(), "teacher": {"path": str(teacher_dir),
                                                    "weights": {p.name: sha256_file(p) for p in weights}}}


RECIPE = TctColBertRecipe
