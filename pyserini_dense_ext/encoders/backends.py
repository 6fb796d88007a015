"""Backends that run an :class:`~.interface.Encoder`, and the one loader that picks among them.

A backend claims paths by looking at the files themselves: torch claims a directory (a Hugging
Face checkpoint), ONNX claims a file whose own metadata says it is an export of this package.
No suffix or path substring decides. Each backend registers itself on import with
:func:`register_backend`; :data:`BUILTIN` lists the modules imported on first use, so the
encoders package never imports a backend to learn whether a path belongs to it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..io.errors import InputError
from .interface import Encoder, Side

if TYPE_CHECKING:
    from .config import EncoderConfig

BUILTIN = ("pyserini_dense_ext.encoders.loading", "pyserini_dense_ext.onnx.backend")


@dataclass(frozen=True)
class Description:
    """What a path's own files say, read without loading weights."""

    config: EncoderConfig | None  # None: a plain HF dir, whose family the caller (or an index) must name
    sides: tuple[Side, ...]


@dataclass(frozen=True)
class Backend:
    """``load(path, family=, side=, device=, **options)`` builds an Encoder; ``options`` are config fields plus
    the backend's own ``extra_options``."""

    name: str
    claims: Callable[[Path], bool]
    describe: Callable[[Path], Description]
    load: Callable[..., Encoder]
    pyserini_key: str  # the key of Pyserini's encoder class maps that loads this backend's paths
    extra_options: frozenset[str] = frozenset()


_BACKENDS: dict[str, Backend] = {}
_imported = False


def register_backend(backend: Backend) -> None:
    _BACKENDS[backend.name] = backend


def backends() -> list[Backend]:
    global _imported
    if not _imported:
        _imported = True
        for module in BUILTIN:
            importlib.import_module(module)
    return list(_BACKENDS.values())


def get_backend(name: str) -> Backend:
    found = {b.name: b for b in backends()}
    if name not in found:
        raise ValueError(f"unknown encoder backend {name!r}; choose from {sorted(found)}")
    return found[name]


def find_backend(path: str | Path) -> Backend | None:
    """The backend that claims ``path``, or None."""
    return next((b for b in backends() if b.claims(Path(path))), None)


def backend_for(path: str | Path) -> Backend:
    """The backend that claims ``path``; a path nobody claims is a clear error."""
    path = Path(path)
    backend = find_backend(path)
    if backend is not None:
        return backend
    if not path.exists():
        raise InputError(path, "does not exist (an encoder is a local model dir or an ONNX export)")
    raise InputError(path, "is neither a model dir nor an ONNX export written by "
                           "'python -m pyserini_dense_ext.onnx.export' (it has no dense_ext metadata)")


def load_encoder(path: str | Path, *, family: str | None = None, side: Side | None = None, device: str = "cpu",
                 backend: str | None = None, **options: Any) -> Encoder:
    """The encoder at ``path`` on ``device``, run by the backend that claims it (or the one named).

    ``family`` and ``options`` (config fields such as ``pooling``) configure a plain HF dir or
    override its ``dense_ext.json``; ``side`` asks a one-sided export to be that side.
    """
    chosen = get_backend(backend) if backend is not None else backend_for(path)
    return chosen.load(Path(path), family=family, side=side, device=device, **options)


def describe(path: str | Path) -> Description:
    """What the files at ``path`` say about the encoder (config, sides), without loading it."""
    return backend_for(path).describe(Path(path))
