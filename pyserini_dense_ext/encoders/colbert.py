"""ColBERT (Khattab & Zaharia, 2020), as TCT-ColBERT's teacher (Lin et al., 2021): late interaction.

Texts are formatted exactly as TCT-ColBERT's (:class:`~.tct_colbert.TctColBertModel`, whose
``tokenize`` this family inherits): queries ``[CLS] [Q] q`` followed by ``[MASK]`` tokens up to
``query_max_length`` (36; ColBERT's query augmentation), documents ``[CLS] [D] text``. Every
output token is projected to ``projection_dim`` (128) dims by a linear map without bias and
L2-normalised; the score of a (query, document) pair is MaxSim: the sum over the query's tokens
(the ``[MASK]`` ones included) of the maximum inner product with the document's tokens.

It is not a bi-encoder: a text is a matrix of token vectors, not a vector, so it has no index, no
ONNX export and no Pyserini encoder class (``Family.late_interaction``); :meth:`ColBertModel.encode`
says so. It scores candidates instead: ``python -m pyserini_dense_ext.rerank --scorer colbert`` and
the ``tct_colbert`` training recipe, whose teacher it is.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..io.errors import InputError
from .base import Batch, collate
from .family import Family
from .interface import Side, check_side
from .tct_colbert import TctColBertModel, check_prefix

if TYPE_CHECKING:
    from .config import EncoderConfig

LINEAR_FILE = "colbert_linear.safetensors"


class ColBertModel(TctColBertModel):
    family = "colbert"

    def __init__(self, backbone: torch.nn.Module, tokenizer, config: EncoderConfig):
        super().__init__(backbone, tokenizer, config)
        self.linear = torch.nn.Linear(self.hidden_size, self.dim, bias=False)

    @property
    def dim(self) -> int:
        return self.config.projection_dim or self.hidden_size

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor, side: Side) -> torch.Tensor:
        """(n, L, h) -> (n, L, dim) unit token vectors, zero at padding."""
        vectors = F.normalize(self.linear(hidden), dim=-1)
        return vectors * attention_mask.unsqueeze(-1).to(vectors.dtype)

    def token_vectors(self, texts: list[str], side: Side) -> tuple[torch.Tensor, torch.Tensor]:
        """Token vectors (n, L, dim) and their mask (n, L) of one padded batch, keeping the graph: the
        training path (the same ``features``/``collate``/``forward`` as :meth:`encode_tokens`)."""
        features = self.features(texts, check_side(side))
        batch = collate(features, range(len(texts)), self.tokenizer.pad_token_id)
        tensors = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}
        return self(**tensors, side=side), tensors["attention_mask"]

    def encode_tokens(self, texts: Sequence[str], side: Side, batch_size: int = 32,
                      progress: bool = False) -> list[np.ndarray]:
        """Each text's token vectors, float16 ``(tokens, dim)`` without padding, in input order."""

        def unpadded(vectors: torch.Tensor, batch: Batch) -> np.ndarray:
            rows = np.empty(len(vectors), dtype=object)
            rows[:] = [v[:n] for v, n in zip(vectors.to(torch.float16).cpu().numpy(), batch["attention_mask"].sum(1))]
            return rows

        return list(self.run_batches(texts, side, unpadded, batch_size, progress, desc=f"encoding {side} tokens"))

    def encode(self, texts: Sequence[str], side: Side, batch_size: int = 32, progress: bool = False,
               max_length: int | None = None) -> np.ndarray:
        raise ValueError("a colbert model is late interaction (a matrix of token vectors per text), not a "
                         "bi-encoder: it has no single vector to index, search or export; rerank a run with it "
                         "(python -m pyserini_dense_ext.rerank --scorer colbert) or use it as the tct_colbert "
                         "recipe's --teacher")

    def save_extra(self, model_dir: Path) -> None:
        save_file({"weight": self.linear.weight.detach().cpu().contiguous()}, str(model_dir / LINEAR_FILE))

    def load_extra(self, model_dir: Path, strict: bool) -> None:
        path = model_dir / LINEAR_FILE
        if not path.is_file():
            if strict:
                raise InputError(path, "is missing: a colbert dir needs its trained token projection (train one "
                                       "with python -m pyserini_dense_ext.train colbert)", field="projection_dim")
            return  # a fresh model to be trained
        weight = load_file(str(path))["weight"]
        if weight.shape != self.linear.weight.shape:
            raise InputError(path, f"holds a {tuple(weight.shape)} projection, the config asks for "
                                   f"{tuple(self.linear.weight.shape)}", field="projection_dim")
        self.linear.weight.data.copy_(weight)


def maxsim(queries: torch.Tensor, docs: torch.Tensor, doc_mask: torch.Tensor) -> torch.Tensor:
    """ColBERT's score of every (query, document) pair: (B, Lq, k), (C, Ld, k), (C, Ld) -> (B, C).

    Sum over query tokens of the max over the document's unmasked tokens; padded query tokens are
    zero vectors and add 0."""
    sim = torch.einsum("bqk,cdk->bcqd", queries, docs)
    sim = sim.masked_fill(~doc_mask.bool()[None, :, None, :], float("-inf"))
    return sim.amax(dim=3).sum(dim=2)


def maxsim_arrays(query: np.ndarray, docs: Sequence[np.ndarray]) -> np.ndarray:
    """MaxSim of one query's token vectors against each document's (unpadded) token vectors, in float32."""
    q = query.astype(np.float32)
    return np.array([float((q @ d.astype(np.float32).T).max(axis=1).sum()) for d in docs], dtype=np.float32)


def rerank(model: ColBertModel, queries: Mapping[str, str], candidates: Mapping[str, Sequence[str]],
           texts: Mapping[str, str], batch_size: int = 32, progress: bool = False
           ) -> dict[str, list[tuple[str, float]]]:
    """Each query's candidate docids re-scored by MaxSim, best first (ties by docid); every distinct
    candidate document is encoded once. ``texts`` maps docids to document texts."""
    docids = sorted(set().union(*map(set, candidates.values()))) if candidates else []
    doc_tokens = dict(zip(docids, model.encode_tokens([texts[d] for d in docids], "document", batch_size, progress)))
    qids = [q for q in queries if candidates.get(q)]
    query_tokens = model.encode_tokens([queries[q] for q in qids], "query", batch_size) if qids else []
    run = {}
    for qid, tokens in zip(qids, query_tokens):
        scores = maxsim_arrays(tokens, [doc_tokens[d] for d in candidates[qid]])
        run[qid] = sorted(zip(candidates[qid], scores.tolist()), key=lambda hit: (-hit[1], hit[0]))
    return run


# ColBERT's 128-dim token vectors; queries as TCT-ColBERT formats them (36 tokens with [MASK] padding);
# documents up to 180 tokens, ColBERT's doc_maxlen for MS MARCO passages.
FAMILY = Family("colbert", ColBertModel, "ColBert",
                "ColBERT (late interaction, TCT-ColBERT's teacher): 128-dim token vectors, MaxSim",
                defaults=dict(pooling="mean", query_max_length=36, doc_max_length=180, projection_dim=128),
                checks=(check_prefix,), late_interaction=True)
