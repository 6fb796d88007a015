"""Our models behind Pyserini's ``QueryEncoder`` / ``DocumentEncoder`` interfaces.

Anything with ``encode(texts, side, batch_size, ...)``, ``dim`` and ``config`` (a torch
:class:`DenseModel`, or the ONNX encoder) plugs in, so Pyserini's ``FaissSearcher`` and
``pyserini.encode`` run our families with real batching (``encode_batch``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pyserini.encode import DocumentEncoder, QueryEncoder

from .config import EncoderConfig
from .loading import load_model


def _config_options(options: dict[str, Any]) -> dict[str, Any]:
    """Keep the options that are ours to set; Pyserini's CLIs also pass prefix, fp16, pooling..., which
    the model dir's config owns."""
    fields = {f.name for f in dataclasses.fields(EncoderConfig)} - {"family"}
    return {k: v for k, v in options.items() if k in fields}


class _Loads:
    family: ClassVar[str | None] = None  # None: the family comes from the dir's dense_ext.json

    @classmethod
    def _load(cls, path: str, device: str, **options: Any):
        return load_model(path, family=cls.family, device=device, **options)


class DenseQueryEncoder(_Loads, QueryEncoder):
    """Pyserini query encoder; ``encode`` gives ``(d,)``, ``encode_batch`` gives ``(n, d)`` float32."""

    def __init__(self, encoder_dir: str | None = None, tokenizer_name: str | None = None,
                 encoded_query_dir: str | None = None, device: str = "cpu", model: Any = None,
                 batch_size: int = 64, **options: Any):
        super().__init__(encoded_query_dir)
        if model is None and encoder_dir:
            model = self._load(encoder_dir, device, **_config_options(options))
        self.model, self.batch_size = model, batch_size
        self.has_model = model is not None
        if not self.has_model and not self.has_encoded_query:
            raise ValueError("neither a query encoder model nor encoded queries were given")

    @property
    def dim(self) -> int:
        return self.model.dim

    @staticmethod
    def _load_embeddings(encoded_query_dir: str) -> dict[str, np.ndarray]:
        """Pyserini unpickles ``embedding.pkl`` here (which runs code); we read ``.npy`` + JSON instead."""
        from .encoded_queries import load_encoded_queries

        return load_encoded_queries(encoded_query_dir)

    def encode(self, query: str, **kwargs: Any) -> np.ndarray:
        if not self.has_model:
            if query not in self.embedding:
                raise ValueError(f"query {query[:80]!r} is not among the encoded queries, and there is no model "
                                 "to encode it")
            return self.embedding[query]
        return self.encode_batch([query])[0]

    def encode_batch(self, queries: list[str], progress: bool = False) -> np.ndarray:
        if not self.has_model:
            return np.stack([self.encode(q) for q in queries])
        return self.model.encode(list(queries), "query", batch_size=self.batch_size, progress=progress)


class DenseDocumentEncoder(_Loads, DocumentEncoder):
    """Pyserini document encoder; ``encode`` gives ``(n, d)``, or ``(n, m, d)`` for ME-BERT with m > 1."""

    def __init__(self, model_name: str | None = None, tokenizer_name: str | None = None, device: str = "cpu",
                 model: Any = None, batch_size: int = 32, **options: Any):
        self.model = model if model is not None else self._load(model_name, device, **_config_options(options))
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return self.model.dim

    def encode(self, texts: list[str], titles: list[str] | None = None, max_length: int | None = None,
               **kwargs: Any) -> np.ndarray:
        """Pyserini's signature: titles join the text as ``f'{title} {text}'``, as Pyserini's encoders do."""
        if titles is not None:
            texts = [f"{title} {text}" for title, text in zip(titles, texts)]
        vectors = self.model.encode(list(texts), "document", batch_size=self.batch_size, max_length=max_length)
        return vectors[:, 0] if vectors.ndim == 3 and vectors.shape[1] == 1 else vectors

    encode_batch = encode


class RepBertQueryEncoder(DenseQueryEncoder):
    family = "repbert"


class RepBertDocumentEncoder(DenseDocumentEncoder):
    family = "repbert"


class TctColBertQueryEncoder(DenseQueryEncoder):
    family = "tct_colbert"


class TctColBertDocumentEncoder(DenseDocumentEncoder):
    family = "tct_colbert"


class MeBertQueryEncoder(DenseQueryEncoder):
    family = "mebert"


class MeBertDocumentEncoder(DenseDocumentEncoder):
    family = "mebert"


# Keys in Pyserini's class maps. Prefixed, so Pyserini's substring guess never lands on ours by accident.
ENCODER_CLASSES: dict[str, tuple[type[DenseQueryEncoder], type[DenseDocumentEncoder]]] = {
    "dense_ext": (DenseQueryEncoder, DenseDocumentEncoder),
    "dense_ext.repbert": (RepBertQueryEncoder, RepBertDocumentEncoder),
    "dense_ext.tct_colbert": (TctColBertQueryEncoder, TctColBertDocumentEncoder),
    "dense_ext.mebert": (MeBertQueryEncoder, MeBertDocumentEncoder),
}


def register(extra: dict[str, tuple[type, type]] | None = None) -> list[str]:
    """Add our classes to Pyserini's ``query_encoder_class_map`` / ``document_encoder_class_map``."""
    from pyserini import encode as pyserini_encode

    classes = {**ENCODER_CLASSES, **(extra or {})}
    for name, (query_cls, doc_cls) in classes.items():
        pyserini_encode.query_encoder_class_map[name] = query_cls
        pyserini_encode.document_encoder_class_map[name] = doc_cls
    return list(classes)


def _onnx_module(path: str | Path):
    """The ONNX backend when ``path`` is an ONNX export, else None (imported lazily: it imports us)."""
    try:
        from .. import onnx as onnx_backend
    except ImportError:
        return None
    return onnx_backend if onnx_backend.is_onnx(path) else None


def load_query_encoder(path: str | Path, family: str | None = None, device: str = "cpu", batch_size: int = 64,
                       **overrides: Any) -> DenseQueryEncoder:
    """The query encoder for a model dir (torch) or an ONNX export, chosen from the files, never the name."""
    return _load_encoder("query", path, family, device, batch_size, overrides)


def load_document_encoder(path: str | Path, family: str | None = None, device: str = "cpu", batch_size: int = 32,
                          **overrides: Any) -> DenseDocumentEncoder:
    """The document encoder for a model dir (torch) or an ONNX export."""
    return _load_encoder("document", path, family, device, batch_size, overrides)


def _load_encoder(side: str, path: str | Path, family: str | None, device: str, batch_size: int,
                  overrides: dict[str, Any]):
    onnx_backend = _onnx_module(path)
    if onnx_backend is not None:
        cls = onnx_backend.OnnxQueryEncoder if side == "query" else onnx_backend.OnnxDocumentEncoder
        return cls(str(path), device=device, batch_size=batch_size, **overrides)
    classes = QUERY_CLASSES if side == "query" else DOCUMENT_CLASSES
    if family not in classes:
        raise ValueError(f"unknown encoder family {family!r}; choose from {sorted(c for c in classes if c)}")
    return classes[family](str(path), device=device, batch_size=batch_size, **overrides)


# family -> class; None (family from the dir's dense_ext.json) -> the generic class
QUERY_CLASSES = {cls.family: cls for cls in (DenseQueryEncoder, RepBertQueryEncoder, TctColBertQueryEncoder,
                                             MeBertQueryEncoder)}
DOCUMENT_CLASSES = {cls.family: cls for cls in (DenseDocumentEncoder, RepBertDocumentEncoder,
                                                TctColBertDocumentEncoder, MeBertDocumentEncoder)}
