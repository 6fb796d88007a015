"""An index knows how it was made: its recorded encoder config configures the query side by default.

``dense_ext_index.json`` records the encoder config that made the document vectors (family,
pooling, L2 norm, lengths, segment ids, ME-BERT options). When a query encoder is loaded for such
an index, the precedence is: command-line flags, then the encoder's own files (a model dir's
``dense_ext.json``, an ONNX export's metadata), then the index's record, then the family's paper
defaults. So a plain Hugging Face dir needs no flags at all, and ``--family repbert`` on an index
of MiniLM vectors keeps the index's 256 query tokens instead of RepBERT's 20. A setting that
contradicts the record is a warning naming both values; another family is an error (so is
another dimension, checked by the searcher).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from ..encoders import CONFIG_FIELDS, EncoderConfig, describe
from ..encoders.config import recorded_config
from ..index.faiss_dir import META_FILE, IndexMeta
from ..io.errors import InputError

log = logging.getLogger(__name__)
COMPARED = tuple(f for f in CONFIG_FIELDS if f not in ("family", "extra"))


def index_config(meta: IndexMeta, index_dir: str | Path) -> EncoderConfig | None:
    """The encoder config an index recorded, or None (a Pyserini dir, or a record without a family)."""
    return recorded_config(meta.encoder, str(Path(index_dir) / META_FILE))


def check_family(recorded: EncoderConfig, index_dir: str | Path, family: str, source: str) -> None:
    if family != recorded.family:
        raise InputError(Path(index_dir) / META_FILE, f"the index was encoded by a {recorded.family} encoder, but "
                                                      f"{source} is {family}: its queries cannot search it",
                         field="family")


def warn_differences(recorded: EncoderConfig, index_dir: str | Path, config: EncoderConfig,
                     sources: Mapping[str, str]) -> list[str]:
    """Warn, naming both values, about each setting where ``config`` departs from the index's record."""
    messages = []
    for name in COMPARED:
        ours, theirs = getattr(config, name), getattr(recorded, name)
        if ours != theirs:
            messages.append(f"{Path(index_dir) / META_FILE}: the index was encoded with {name}={theirs!r}, but the "
                            f"query encoder uses {name}={ours!r} ({sources.get(name, 'its own config')})")
    for message in messages:
        log.warning(message)
    return messages


def query_encoder_settings(meta: IndexMeta, index_dir: str | Path, encoder: str | Path, family: str | None,
                           overrides: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The ``family`` and config overrides to load ``encoder`` with as the query encoder of this index.

    ``family`` and ``overrides`` are what the user set (flags); unset ones come from the encoder's
    own files, then from the index's record.
    """
    recorded = index_config(meta, index_dir)
    if recorded is None:
        return family, dict(overrides)
    own = describe(encoder).config
    if family is not None:
        check_family(recorded, index_dir, family, "--family")
    elif own is not None:
        check_family(recorded, index_dir, own.family, f"{encoder}'s own config")
    configured = own is not None and own.family == recorded.family  # the encoder's files set the rest
    final = (own if configured else recorded).with_overrides(**overrides)
    sources = {name: f"--{name.replace('_', '-')}" for name in overrides}
    warn_differences(recorded, index_dir, final, {**{n: f"{encoder}'s own config" for n in COMPARED}, **sources})
    if configured:
        return family, dict(overrides)
    return recorded.family, {name: getattr(final, name) for name in COMPARED}
