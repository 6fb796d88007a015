"""ME-BERT (Luan et al., 2021): a document is its first m contextual token vectors.

A query is its ``[CLS]`` vector (its mean with ``pooling: mean``, for checkpoints trained so); a
document is the first m output vectors (``[CLS]`` included), optionally projected to k dims and
layer-normalised (the same projection on both sides, so the two live in one space). The score is the maximum inner product over the m document vectors,
which an ANN index answers by holding m rows per document (see ``index`` and ``search``).
m=1 is DE-BERT. Documents shorter than m tokens repeat their ``[CLS]`` vector in the unused
slots, which leaves the max unchanged.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from typing import TYPE_CHECKING

from ..io.errors import InputError
from .base import DenseModel, masked_mean
from .family import Family
from .interface import Side

if TYPE_CHECKING:
    from .config import EncoderConfig

PROJECTION_FILE = "projection.safetensors"


class MeBertModel(DenseModel):
    family = "mebert"

    def __init__(self, backbone: torch.nn.Module, tokenizer, config: EncoderConfig):
        super().__init__(backbone, tokenizer, config)
        k = config.projection_dim
        self.projection = (torch.nn.Sequential(torch.nn.Linear(self.hidden_size, k), torch.nn.LayerNorm(k))
                           if k else None)

    @property
    def dim(self) -> int:
        return self.config.projection_dim or self.hidden_size

    @classmethod
    def rows_per_text(cls, config: EncoderConfig, side: Side) -> int:
        return config.num_vectors if side == "document" else 1

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor, side: Side) -> torch.Tensor:
        if side == "query":  # the paper's [CLS]; --pooling mean for checkpoints trained that way (MiniLM)
            vectors = hidden[:, 0] if self.config.pooling == "cls" else masked_mean(hidden, attention_mask)
        else:
            m = self.config.num_vectors
            cls = hidden[:, :1]
            vectors, valid = hidden[:, :m], attention_mask[:, :m]
            if vectors.shape[1] < m:  # the whole batch is shorter than m tokens
                short = m - vectors.shape[1]
                vectors = torch.cat([vectors, cls.expand(-1, short, -1)], dim=1)
                valid = torch.cat([valid, valid.new_zeros(valid.shape[0], short)], dim=1)
            vectors = torch.where(valid.unsqueeze(-1).bool(), vectors, cls.expand_as(vectors))
        return self.projection(vectors) if self.projection is not None else vectors

    def save_extra(self, model_dir: Path) -> None:
        if self.projection is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.projection.state_dict().items()},
                      str(model_dir / PROJECTION_FILE))

    def load_extra(self, model_dir: Path, strict: bool) -> None:
        if self.projection is None:
            return
        path = model_dir / PROJECTION_FILE
        if not path.is_file():
            if strict:
                raise InputError(path, "is missing: the config asks for a projection_dim but the dir has no "
                                       "trained projection", field="projection_dim")
            return  # a fresh model to be trained
        state = load_file(str(path))
        try:
            self.projection.load_state_dict(state)
        except RuntimeError as e:
            raise InputError(path, f"does not match projection_dim={self.config.projection_dim}: {e}") from None


# The paper keeps the first m=3 vectors of passages (up to 256 tokens), scores queries by [CLS].
FAMILY = Family("mebert", MeBertModel, "MeBert", "ME-BERT: [CLS] query vector, first m document vectors, max over m",
                defaults=dict(pooling="cls", query_max_length=32, doc_max_length=256, num_vectors=3))
