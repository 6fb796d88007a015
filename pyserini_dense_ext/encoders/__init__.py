"""Encoder families: one module each decides how its texts become vectors.

``FAMILIES`` (:mod:`.registry`) collects each family module's ``FAMILY`` record. Every backend
(torch :class:`DenseModel`, ONNX) implements the :class:`Encoder` protocol, and
``load_encoder(path)`` picks the backend from the files. ``load_query_encoder`` /
``load_document_encoder`` wrap an encoder in Pyserini's ``QueryEncoder`` / ``DocumentEncoder``
classes, and ``register()`` adds those to Pyserini's class maps.
"""
from .backends import Backend, Description, backend_for, describe, find_backend, load_encoder, register_backend
from .base import DenseModel, encode_texts
from .config import CONFIG_FIELDS, CONFIG_NAME, EncoderConfig
from .family import Family
from .interface import SIDES, Encoder, Side, check_side
from .loading import build_model, load_model, resolve_config, resolve_device
from .pyserini_api import (ENCODER_CLASSES, FAMILY_CLASSES, DenseDocumentEncoder, DenseQueryEncoder,
                           load_document_encoder, load_query_encoder, register)
from .registry import FAMILIES, get_family

# The generated per-family Pyserini classes (RepBertQueryEncoder, TctColBertDocumentEncoder, ...).
globals().update({cls.__name__: cls for pair in FAMILY_CLASSES.values() for cls in pair})

__all__ = ["CONFIG_FIELDS", "CONFIG_NAME", "ENCODER_CLASSES", "FAMILIES", "FAMILY_CLASSES", "SIDES", "Backend",
           "DenseDocumentEncoder", "DenseModel", "DenseQueryEncoder", "Description", "Encoder", "EncoderConfig",
           "Family", "Side", "backend_for", "build_model", "check_side", "describe", "encode_texts", "find_backend",
           "get_family", "load_document_encoder", "load_encoder", "load_model", "load_query_encoder", "register",
           "register_backend", "resolve_config", "resolve_device",
           *(cls.__name__ for pair in FAMILY_CLASSES.values() for cls in pair)]
