"""TCT-ColBERT (Lin et al., 2021): a mean-pooled bi-encoder distilled from ColBERT.

Input formatting and pooling follow Pyserini's ``TctColBertQueryEncoder`` /
``TctColBertDocumentEncoder`` token for token: queries are ``[CLS] [Q] q`` followed by
``[MASK]`` tokens up to exactly 36 tokens (ColBERT's query augmentation), documents are
``[CLS] [D] text``, no ``[SEP]``, and both are averaged over positions 4 onwards, skipping the
prefix ``[CLS] [ Q ]`` / ``[CLS] [ D ]``. Unlike Pyserini, queries are encoded in batches.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch

from .base import DenseModel, Features, masked_mean, token_ids
from .family import Family
from .interface import Side

if TYPE_CHECKING:
    from .config import EncoderConfig

PREFIX_TOKENS = 4  # "[CLS]" "[" "q"/"d" "]" in BERT's vocabulary, as Pyserini slices them off


class TctColBertModel(DenseModel):
    family = "tct_colbert"

    @classmethod
    def tokenize(cls, tokenizer, config: EncoderConfig, texts: list[str], side: Side) -> Features:
        if side == "query":
            max_length = config.query_max_length
            strings = ["[CLS] [Q] " + t + "[MASK]" * max_length for t in texts]
        else:
            max_length = config.doc_max_length
            strings = ["[CLS] [D] " + t for t in texts]
        ids = token_ids(tokenizer, strings, max_length, add_special_tokens=False)
        return {"input_ids": ids, "token_type_ids": [[0] * len(x) for x in ids]}

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor, side: Side) -> torch.Tensor:
        return masked_mean(hidden[:, PREFIX_TOKENS:], attention_mask[:, PREFIX_TOKENS:])


def check_prefix(config: EncoderConfig) -> Iterator[tuple[str, str]]:
    """Pooling starts after the prefix, so a query needs room for at least one token beyond it."""
    if config.query_max_length <= PREFIX_TOKENS:
        yield "query_max_length", f"must exceed the {PREFIX_TOKENS} prefix tokens '[CLS] [ Q ]'"


# ColBERT's query length: queries are [MASK]-padded to exactly 36 tokens; Pyserini encodes documents up to 512.
FAMILY = Family("tct_colbert", TctColBertModel, "TctColBert",
                "TCT-ColBERT: [CLS] [Q] q + [MASK] padding, mean over positions 4..",
                defaults=dict(pooling="mean", query_max_length=36, doc_max_length=512), checks=(check_prefix,))
