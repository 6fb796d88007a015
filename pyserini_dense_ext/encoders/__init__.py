"""Encoder families: one module each decides how its texts become vectors.

``load_model(dir)`` reads the dir's ``dense_ext.json`` and returns the family's torch model;
``pyserini_api`` wraps any model as Pyserini ``QueryEncoder``/``DocumentEncoder`` classes, and
``register()`` adds those to Pyserini's class maps.
"""
from .base import SIDES, DenseModel, Side, encode_texts
from .config import CONFIG_NAME, EncoderConfig
from .loading import FAMILIES, build_model, load_model, resolve_config, resolve_device
from .pyserini_api import (ENCODER_CLASSES, DenseDocumentEncoder, DenseQueryEncoder, MeBertDocumentEncoder,
                           MeBertQueryEncoder, RepBertDocumentEncoder, RepBertQueryEncoder, TctColBertDocumentEncoder,
                           TctColBertQueryEncoder, load_document_encoder,
                           load_query_encoder, register)

__all__ = ["CONFIG_NAME", "ENCODER_CLASSES", "FAMILIES", "SIDES", "DenseDocumentEncoder", "DenseModel",
           "DenseQueryEncoder", "EncoderConfig", "MeBertDocumentEncoder", "MeBertQueryEncoder",
           "RepBertDocumentEncoder", "RepBertQueryEncoder", "Side", "TctColBertDocumentEncoder",
           "TctColBertQueryEncoder", "build_model", "encode_texts", "load_document_encoder", "load_model", "load_query_encoder", "register", "resolve_config",
           "resolve_device"]
