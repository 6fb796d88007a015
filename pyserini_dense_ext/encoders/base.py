"""The one place a text becomes a vector.

A family is a :class:`DenseModel` subclass that says two things: how texts become token ids
(:meth:`DenseModel.tokenize`, torch-free, so the ONNX encoder reuses it) and how the backbone's
output becomes vectors (:meth:`DenseModel.pool`). Batching by length, padding and the encode loop
(:func:`encode_texts`) are shared by torch, ONNX, training and every command. The family module
declares the rest (defaults, checks) in its ``FAMILY`` record (:mod:`.family`).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..progress import progress_bar
from .interface import SIDES, Side, check_side

if TYPE_CHECKING:
    from .config import EncoderConfig

__all__ = ["INPUT_NAMES", "SIDES", "Batch", "DenseModel", "Features", "Side", "check_side", "collate", "encode_texts",
           "masked_mean", "token_ids"]

Features = dict[str, list[list[int]]]
Batch = dict[str, np.ndarray]
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


# A fast tokenizer keeps its truncation setting as state on the shared Rust object, and each call
# whose max_length differs from it resets that state before encoding. Two threads tokenising with
# different lengths (one model's queries and documents) can each truncate by the other's length and
# get silently wrong vectors, so calls are serialised; they are short next to the forward pass.
_TOKENIZER_LOCK = threading.Lock()


def token_ids(tokenizer, texts: list[str], max_length: int, add_special_tokens: bool) -> list[list[int]]:
    """``tokenizer(texts, truncation=True)["input_ids"]``, safe to call from several threads at once."""
    with _TOKENIZER_LOCK:
        return tokenizer(texts, max_length=max_length, truncation=True, add_special_tokens=add_special_tokens,
                         return_attention_mask=False, return_token_type_ids=False)["input_ids"]


def collate(features: Features, rows: Sequence[int], pad_id: int) -> Batch:
    """Pad the chosen rows to their longest: int64 ``input_ids``, ``attention_mask``, ``token_type_ids``."""
    ids = [features["input_ids"][i] for i in rows]
    types = [features["token_type_ids"][i] for i in rows]
    width = max(len(x) for x in ids)
    batch = {name: np.zeros((len(ids), width), dtype=np.int64) for name in INPUT_NAMES}
    batch["input_ids"].fill(pad_id)
    for r, (row_ids, row_types) in enumerate(zip(ids, types)):
        n = len(row_ids)
        batch["input_ids"][r, :n] = row_ids
        batch["attention_mask"][r, :n] = 1
        batch["token_type_ids"][r, :n] = row_types
    return batch


def encode_texts(texts: Sequence[str], tokenize: Callable[[list[str]], Features], infer: Callable[[Batch], np.ndarray],
                 pad_id: int, batch_size: int = 32, progress: bool = False, desc: str = "encoding") -> np.ndarray:
    """Tokenise all, run length-sorted batches (less padding), return vectors in input order.

    Returns float32 ``(n, d)``, or ``(n, m, d)`` for multi-vector documents (ME-BERT), or an object
    array of per-text arrays when ``infer`` returns one (ColBERT's token matrices).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    texts = list(texts)
    if not texts:
        raise ValueError("nothing to encode: empty list of texts")
    features = tokenize(texts)
    order = np.argsort([-len(x) for x in features["input_ids"]], kind="stable")
    out: np.ndarray | None = None
    with progress_bar(len(texts), desc, "text", progress, leave=False) as bar:
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            vectors = infer(collate(features, rows, pad_id))
            if vectors.dtype != object:  # ragged outputs (ColBERT's token matrices) come as object arrays
                vectors = np.asarray(vectors, dtype=np.float32)
            if out is None:
                out = np.empty((len(texts),) + vectors.shape[1:], dtype=vectors.dtype)
            out[rows] = vectors
            bar.update(len(rows))
    assert out is not None
    return out


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors where ``mask`` is 1: (n, L, d), (n, L) -> (n, d)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class DenseModel(torch.nn.Module):
    """A BERT-family backbone plus one family's input format and pooling."""

    family: ClassVar[str]

    def __init__(self, backbone: torch.nn.Module, tokenizer, config: EncoderConfig):
        super().__init__()
        if config.family != self.family:
            raise ValueError(f"{type(self).__name__} needs family {self.family!r}, config says {config.family!r}")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.config = config

    # ----- family hooks -------------------------------------------------------------------
    @classmethod
    def tokenize(cls, tokenizer, config: EncoderConfig, texts: list[str], side: Side) -> Features:
        """``[CLS] text [SEP]`` truncated to the side's max length, one segment id for the side."""
        max_length = config.query_max_length if side == "query" else config.doc_max_length
        segment = config.query_segment_id if side == "query" else config.doc_segment_id
        ids = token_ids(tokenizer, texts, max_length, add_special_tokens=True)
        return {"input_ids": ids, "token_type_ids": [[segment] * len(x) for x in ids]}

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor, side: Side) -> torch.Tensor:
        """Backbone output (n, L, h) to vectors (n, d), or (n, m, d) for multi-vector documents."""
        if self.config.pooling == "cls":
            return hidden[:, 0]
        return masked_mean(hidden, attention_mask)

    # ----- shared -------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return int(self.backbone.config.hidden_size)

    @property
    def dim(self) -> int:
        """Dimension of the output vectors (the index's dimension)."""
        return self.hidden_size

    @property
    def sides(self) -> tuple[Side, ...]:
        """A torch model encodes both sides."""
        return SIDES

    @classmethod
    def rows_per_text(cls, config: EncoderConfig, side: Side) -> int:
        """Rows each text of ``side`` adds to an index under ``config`` (no weights needed)."""
        return 1

    def vectors_per_text(self, side: Side) -> int:
        """Rows each text adds to an index: m for ME-BERT documents, else 1."""
        return self.rows_per_text(self.config, check_side(side))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                side: Side = "query") -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
        vectors = self.pool(hidden, attention_mask, side)
        return F.normalize(vectors, dim=-1) if self.config.l2_norm else vectors

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def features(self, texts: list[str], side: Side, max_length: int | None = None) -> Features:
        """Token ids per the family; ``max_length`` overrides the config's for this side."""
        config = self.config
        if max_length is not None:
            config = config.with_overrides(**{f"{'query' if side == 'query' else 'doc'}_max_length": max_length})
        return self.tokenize(self.tokenizer, config, texts, check_side(side))

    def embed(self, texts: list[str], side: Side, max_length: int | None = None) -> torch.Tensor:
        """Vectors of one batch as a tensor that keeps its graph: the training path.

        The same :meth:`features`, :func:`collate` and :meth:`forward` as :meth:`encode`, so a model
        trains on exactly the vectors it will later encode; dropout follows ``self.training``.
        """
        features = self.features(texts, check_side(side), max_length)
        batch = collate(features, range(len(texts)), self.tokenizer.pad_token_id)
        return self(**{k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}, side=side)

    def encode(self, texts: Sequence[str], side: Side, batch_size: int = 32, progress: bool = False,
               max_length: int | None = None) -> np.ndarray:
        """Texts to float32 vectors in input order; ``(n, d)`` or ``(n, m, d)``."""
        return self.run_batches(texts, side, lambda out, batch: out.float().cpu().numpy(), batch_size, progress,
                                max_length, desc=f"encoding {side}s")

    def run_batches(self, texts: Sequence[str], side: Side, finish: Callable[[torch.Tensor, Batch], np.ndarray],
                    batch_size: int, progress: bool, max_length: int | None = None,
                    desc: str = "encoding") -> np.ndarray:
        """:func:`encode_texts` with this model in eval mode, no gradients; ``finish`` turns one batch's
        output (and its inputs) into arrays (float32 vectors, or ColBERT's per-text token matrices)."""
        side = check_side(side)
        was_training = self.training
        self.eval()

        @torch.inference_mode()
        def infer(batch: Batch) -> np.ndarray:
            tensors = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}
            return finish(self(**tensors, side=side), batch)

        try:
            return encode_texts(texts, lambda t: self.features(t, side, max_length), infer, self.tokenizer.pad_token_id,
                                batch_size, progress, desc=desc)
        finally:
            self.train(was_training)

    def save(self, model_dir: str | Path) -> None:
        """Write a dir that :func:`pyserini_dense_ext.encoders.load_model` rebuilds exactly."""
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(model_dir)
        self.tokenizer.save_pretrained(model_dir)
        self.config.save(model_dir)
        self.save_extra(model_dir)

    def save_extra(self, model_dir: Path) -> None:
        """Family weights beyond the backbone (ME-BERT's projection)."""

    def load_extra(self, model_dir: Path, strict: bool) -> None:
        """Counterpart of :meth:`save_extra`."""

