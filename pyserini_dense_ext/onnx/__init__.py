"""ONNX query and document encoders: export (``python -m pyserini_dense_ext.onnx.export``) and onnxruntime.

``load_onnx(path)`` gives an :class:`OnnxModel`, an :class:`~pyserini_dense_ext.encoders.Encoder` like
the torch model; :mod:`.backend` registers it, so ``load_encoder(path)`` and every command take
an export wherever they take a model dir. ``OnnxQueryEncoder`` / ``OnnxDocumentEncoder`` plug it
into Pyserini, and ``register()`` makes them selectable as ``--encoder-class dense_ext.onnx`` in
Pyserini's own commands.
"""
from __future__ import annotations

from typing import Any

from .backend import is_onnx
from .encoder import OnnxDocumentEncoder, OnnxModel, OnnxQueryEncoder, load_onnx

__all__ = ["OnnxDocumentEncoder", "OnnxModel", "OnnxQueryEncoder", "export_onnx", "is_onnx", "load_onnx", "register"]

REGISTRY_NAME = "dense_ext.onnx"


def register() -> list[str]:
    """Add our torch classes and the ONNX ones (key ``dense_ext.onnx``) to Pyserini's encoder class maps."""
    from ..encoders import register as register_encoders

    return register_encoders(extra={REGISTRY_NAME: (OnnxQueryEncoder, OnnxDocumentEncoder)})


def __getattr__(name: str) -> Any:
    # Imported lazily: running ``python -m pyserini_dense_ext.onnx.export`` must not find it imported already.
    if name == "export_onnx":
        from .export import export_onnx

        return export_onnx
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
