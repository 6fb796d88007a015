"""The export cache: where ``onnx.export`` puts a model's exports when no ``--output`` is given, and
where the search commands look for one to use instead of torch.

An export is filed under a key made of the model dir's content (every file's SHA-256, so the same
weights reached by any path give the same key, and retrained weights a new one), the encoder
config baked into the graph (family, pooling, L2 norm, segment ids, ME-BERT options; not the max
lengths, which only change tokenisation) and the side. A search command given a model dir on the
CPU (``--backend auto``, the default) loads ``<cache>/<key>/query-fp32.onnx`` when it exists, and
the torch model otherwise; int8 is used only when asked (``--precision int8``), since its vectors
differ from torch's (cosine >= 0.99, docs/onnx.md). The cache is ``$DENSE_EXT_ONNX_CACHE``, else
``~/.cache/pyserini-dense-ext/onnx``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from ..encoders.config import EncoderConfig
from ..encoders.loading import resolve_config
from ..io.errors import InputError
from ..io.fingerprint import model_fingerprint
from .encoder import TOKENIZER_OPTIONS

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "onnx")
QUERY_PRECISIONS = ("fp32", "int8")


def cache_root() -> Path:
    if os.environ.get("DENSE_EXT_ONNX_CACHE"):
        return Path(os.environ["DENSE_EXT_ONNX_CACHE"])
    return Path.home() / ".cache" / "pyserini-dense-ext" / "onnx"


def export_path(model_dir: str | Path, config: EncoderConfig, side: str, precision: str) -> Path:
    """Where the cache keeps the ``side`` export of ``model_dir`` under ``config`` at ``precision``."""
    baked = {k: v for k, v in config.to_dict().items() if k not in TOKENIZER_OPTIONS}
    key = hashlib.sha256(json.dumps({"model": model_fingerprint(model_dir), "config": baked, "side": side},
                                    sort_keys=True).encode()).hexdigest()[:24]
    return cache_root() / key / f"{side}-{precision}.onnx"


def query_encoder_source(path: str | Path, family: str | None, settings: Mapping[str, Any], device: str = "cpu",
                         backend: str = "auto", precision: str = "fp32") -> tuple[Path, str | None, dict[str, Any]]:
    """What to load for the query encoder ``path`` configured by ``family`` and ``settings``: ``(path, family,
    settings)`` as given (torch, or an export named directly), or a cached export with its load-time settings.

    ``backend``: ``auto`` takes a cached export of the model when one exists (CPU only), ``onnx``
    requires one, ``torch`` never looks. ``precision`` ``int8`` requires a cached int8 export.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if precision not in QUERY_PRECISIONS:
        raise ValueError(f"precision must be one of {QUERY_PRECISIONS}, got {precision!r}")
    path = Path(path)
    if backend == "torch" or not path.is_dir():
        if precision != "fp32" and backend == "torch":
            raise ValueError("--precision int8 runs an ONNX export; it cannot be combined with --backend torch")
        return path, family, dict(settings)
    wanted = precision != "fp32" or backend == "onnx"
    if device != "cpu" and not wanted:
        return path, family, dict(settings)  # on a GPU, torch unless an export is asked for
    try:
        config = resolve_config(path, family, **settings)
    except InputError:
        if wanted:
            raise
        return path, family, dict(settings)  # no config to key an export on: the torch loader says what is wrong
    export = export_path(path, config, "query", precision)
    if export.is_file():
        log.info("query encoder: the %s ONNX export of %s (%s)", precision, path, export)
        return export, config.family, {k: getattr(config, k) for k in TOKENIZER_OPTIONS}
    if wanted:
        raise InputError(path, f"has no {precision} ONNX query export for this config in {cache_root()}: make it "
                               f"with python -m pyserini_dense_ext.onnx.export --model {path} --side query "
                               f"--precision {precision} (plus the same encoder flags)", field="backend")
    log.info("query encoder: torch (no ONNX export of %s in %s; python -m pyserini_dense_ext.onnx.export --model %s "
             "--side query makes one, and later searches use it)", path, cache_root(), path)
    return path, family, dict(settings)
