"""Any :class:`~.interface.Encoder` behind Pyserini's ``QueryEncoder`` / ``DocumentEncoder`` interfaces.

Pyserini's ``FaissSearcher`` and ``pyserini.encode`` then run our families with real batching
(``encode_batch``). The generic classes read the family from the files (a model dir's
``dense_ext.json`` or an ONNX export's metadata, whichever backend claims the path); one pair
per family (``RepBertQueryEncoder``, ...) is generated from ``FAMILIES`` and names the family
for a plain Hugging Face dir, as Pyserini's own ``TctColBertQueryEncoder`` does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import pyserini_compat as compat
from .backends import backend_for, get_backend, load_encoder
from .config import CONFIG_FIELDS, EncoderConfig
from .family import Family
from .interface import Encoder, Side
from .registry import FAMILIES


class _Wraps:
    """What both Pyserini wrappers share: how they load an :class:`Encoder` (``model``) and its dimension and config."""

    model: Encoder
    family: ClassVar[str | None] = None  # None: the family comes from the files
    backend: ClassVar[str | None] = None  # None: whichever backend claims the path
    # Config fields a launcher sets for one run (from the encoder config an index recorded, see launch).
    preset: ClassVar[dict[str, Any]] = {}

    @classmethod
    def _load(cls, path: str, side: Side, device: str, options: dict[str, Any]) -> Encoder:
        """Load with the options that are ours (config fields, the backend's own); Pyserini's CLIs also pass
        ``prefix``, ``fp16`` and the like, which are not."""
        backend = get_backend(cls.backend) if cls.backend else backend_for(path)
        kept = {k: v for k, v in options.items() if k in CONFIG_FIELDS and k != "family" or k in backend.extra_options}
        return load_encoder(path, family=cls.family, side=side, device=device, backend=backend.name,
                            **{**cls.preset, **kept})

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def config(self) -> EncoderConfig:
        return self.model.config


class DenseQueryEncoder(_Wraps, compat.QueryEncoder):
    """Pyserini query encoder; ``encode`` gives ``(d,)``, ``encode_batch`` gives ``(n, d)`` float32."""

    def __init__(self, encoder_dir: str | None = None, tokenizer_name: str | None = None,
                 encoded_query_dir: str | None = None, device: str = "cpu", model: Encoder | None = None,
                 batch_size: int = 64, *, encoded_queries_dir: str | None = None, **options: Any):
        # Pyserini's main branch names the dir encoded_queries_dir; both spellings work here.
        compat.QueryEncoder.__init__(self, encoded_query_dir or encoded_queries_dir)
        if model is None and encoder_dir:
            model = self._load(encoder_dir, "query", device, options)
        self.model, self.batch_size = model, batch_size
        self.has_model = model is not None
        self.table = compat.encoded_queries(self)
        if not self.has_model and self.table is None:
            raise ValueError("neither a query encoder model nor encoded queries were given")

    @staticmethod
    def _load_embeddings(encoded_query_dir: str) -> dict[str, np.ndarray]:
        """Pyserini unpickles ``embedding.pkl`` here (which runs code); we read ``.npy`` + JSON instead."""
        from .encoded_queries import load_encoded_queries

        return load_encoded_queries(encoded_query_dir)

    def encode(self, query: str, **kwargs: Any) -> np.ndarray:
        if not self.has_model:
            if query not in self.table:
                raise ValueError(f"query {query[:80]!r} is not among the encoded queries, and there is no model "
                                 "to encode it")
            return self.table[query]
        return self.encode_batch([query])[0]

    def encode_batch(self, queries: list[str], progress: bool = False) -> np.ndarray:
        if not self.has_model:
            return np.stack([self.encode(q) for q in queries])
        return self.model.encode(list(queries), "query", batch_size=self.batch_size, progress=progress)


class DenseDocumentEncoder(_Wraps, compat.DocumentEncoder):
    """Pyserini document encoder; ``encode`` gives ``(n, d)``, or ``(n, m, d)`` for ME-BERT with m > 1."""

    def __init__(self, model_name: str | None = None, tokenizer_name: str | None = None, device: str = "cpu",
                 model: Encoder | None = None, batch_size: int = 32, **options: Any):
        if model is None:
            if not model_name:
                raise ValueError(f"{type(self).__name__} needs a model dir or a document-side ONNX export")
            model = self._load(model_name, "document", device, options)
        self.model, self.batch_size = model, batch_size

    def encode(self, texts: list[str], titles: list[str] | None = None, max_length: int | None = None,
               **kwargs: Any) -> np.ndarray:
        """Pyserini's signature: titles join the text as ``f'{title} {text}'``, as Pyserini's encoders do."""
        if titles is not None:
            texts = [f"{title} {text}" for title, text in zip(titles, texts)]
        vectors = self.model.encode(list(texts), "document", batch_size=self.batch_size, max_length=max_length)
        return vectors[:, 0] if vectors.ndim == 3 and vectors.shape[1] == 1 else vectors

    encode_batch = encode


def _family_classes(family: Family) -> tuple[type[DenseQueryEncoder], type[DenseDocumentEncoder]]:
    def make(base: type, side: str) -> type:
        return type(f"{family.class_prefix}{side}Encoder", (base,), {
            "family": family.name, "__module__": __name__,
            "__doc__": f"Pyserini {side.lower()} encoder of the {family.name} family ({family.summary})."})

    return make(DenseQueryEncoder, "Query"), make(DenseDocumentEncoder, "Document")


# family -> (query class, document class), generated: RepBertQueryEncoder, TctColBertDocumentEncoder, ...
FAMILY_CLASSES = {name: _family_classes(family) for name, family in FAMILIES.items() if not family.late_interaction}
globals().update({cls.__name__: cls for pair in FAMILY_CLASSES.values() for cls in pair})

# Keys in Pyserini's class maps. Prefixed, so Pyserini's substring guess never lands on ours by accident.
ENCODER_CLASSES: dict[str, tuple[type[DenseQueryEncoder], type[DenseDocumentEncoder]]] = {
    "dense_ext": (DenseQueryEncoder, DenseDocumentEncoder),
    **{f"dense_ext.{name}": pair for name, pair in FAMILY_CLASSES.items()},
}


def register(extra: dict[str, tuple[type, type]] | None = None) -> list[str]:
    """Add our classes to Pyserini's ``query_encoder_class_map`` / ``document_encoder_class_map``."""
    query_map, document_map = compat.class_maps()
    classes = {**ENCODER_CLASSES, **(extra or {})}
    for name, (query_cls, doc_cls) in classes.items():
        query_map[name] = query_cls
        document_map[name] = doc_cls
    return list(classes)


def load_query_encoder(path: str | Path, family: str | None = None, device: str = "cpu", batch_size: int = 64,
                       **overrides: Any) -> DenseQueryEncoder:
    """The query encoder for a model dir (torch) or an ONNX export, chosen from the files, never the name."""
    model = load_encoder(path, family=family, side="query", device=device, **overrides)
    return DenseQueryEncoder(model=model, batch_size=batch_size)


def load_document_encoder(path: str | Path, family: str | None = None, device: str = "cpu", batch_size: int = 32,
                          **overrides: Any) -> DenseDocumentEncoder:
    """The document encoder for a model dir (torch) or an ONNX export."""
    model = load_encoder(path, family=family, side="document", device=device, **overrides)
    return DenseDocumentEncoder(model=model, batch_size=batch_size)
