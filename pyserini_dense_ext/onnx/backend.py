"""The ONNX backend: claims a file whose own metadata says it is an export of this package."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..encoders.backends import Backend, Description, register_backend
from ..encoders.interface import Side
from ..io.errors import InputError
from .encoder import META_KEY, ExportMeta, OnnxModel, load_onnx
from .metadata import read_metadata_props


def is_onnx(path: str | Path) -> bool:
    """Whether ``path`` is an ONNX export written by ``python -m pyserini_dense_ext.onnx.export`` (its metadata
    says so; the file name does not matter)."""
    return META_KEY in (read_metadata_props(path) or {})


def _describe(path: Path) -> Description:
    props = read_metadata_props(path) or {}
    meta = ExportMeta.from_json(path, props[META_KEY])
    return Description(meta.config, (meta.side,))


def _load(path: Path, family: str | None = None, side: Side | None = None, device: str = "cpu",
          **options: Any) -> OnnxModel:
    model = load_onnx(path, side=side, device=device, **options)
    if family is not None and family != model.family:
        raise InputError(path, f"is a {model.family} export, not {family}", field="family")
    return model


register_backend(Backend("onnx", claims=is_onnx, describe=_describe, load=_load, pyserini_key="dense_ext.onnx",
                         extra_options=frozenset({"threads", "io_binding"})))
