"""RepBERT (Zhan et al., 2020): one BERT for queries and documents, ``[CLS] text [SEP]``.

Queries use segment id 0 and documents segment id 1, so the shared encoder can tell the sides
apart; both are masked-mean pooled and scored by dot product. Checkpoints trained with one
segment (sentence-transformers' MiniLM, say) set ``doc_segment_id`` to 0. The base class's
tokenisation and pooling are exactly this recipe, so the family adds nothing to them.
"""
from __future__ import annotations

from .base import DenseModel
from .family import Family


class RepBertModel(DenseModel):
    family = "repbert"


# The paper truncates queries to 20 and passages to 256 tokens, segment 0 for queries and 1 for passages.
FAMILY = Family("repbert", RepBertModel, "RepBert", "RepBERT: [CLS] text [SEP], masked mean (or CLS), dot product",
                defaults=dict(pooling="mean", query_max_length=20, doc_max_length=256, query_segment_id=0,
                              doc_segment_id=1))
