"""Run Pyserini's own CLIs with our encoder classes available.

``python -m pyserini_dense_ext.launch search.faiss --index DIR --encoder OUR_MODEL ...`` prepares
Java (see ``_env``), registers our classes in Pyserini's class maps, widens the hand-typed
``--encoder-class`` choices of Pyserini's parsers to include them, and, when ``--encoder`` is one
of our model dirs or ONNX exports and no class was named, names ours, so Pyserini's substring
guess (a path containing 'ance' or 'dpr') can never pick the wrong class. Then it runs
``pyserini.<module>`` as ``__main__`` with the remaining arguments.
"""
from __future__ import annotations

import argparse
import contextlib
import runpy
import sys
from typing import Iterator

import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from .cli import run_cli
from .encoders import FAMILIES, describe, find_backend, register

MODULES = ("search.faiss", "encode", "search.hybrid")


def our_class_for(encoder: str) -> str | None:
    """The class-map key for one of our model dirs or ONNX exports (the files say so), else None (a plain HF dir
    or anything else: left to Pyserini)."""
    backend = find_backend(encoder)
    if backend is None or describe(encoder).config is None:
        return None
    return backend.pyserini_key


@contextlib.contextmanager
def widened_encoder_class_choices(names: list[str]) -> Iterator[None]:
    """Pyserini's parsers list ``--encoder-class`` choices by hand: add ours while its CLI runs."""
    original = argparse._ActionsContainer.add_argument

    def add_argument(self, *flags, **kwargs):
        if "--encoder-class" in flags and kwargs.get("choices") is not None:
            kwargs["choices"] = list(kwargs["choices"]) + [n for n in names if n not in kwargs["choices"]]
        return original(self, *flags, **kwargs)

    argparse._ActionsContainer.add_argument = add_argument
    try:
        yield
    finally:
        argparse._ActionsContainer.add_argument = original


def prepare_argv(module: str, args: list[str]) -> list[str]:
    """Name our class for our encoders; refuse what Pyserini's writer cannot store (m rows per doc)."""
    args = list(args)
    if "--encoder" not in args or "--encoder-class" in args:
        return args
    encoder = args[args.index("--encoder") + 1]
    key = our_class_for(encoder)
    if key is None:
        return args
    if module == "encode":
        rows = _rows_per_document(encoder)
        if rows > 1:
            raise ValueError(f"{encoder}: ME-BERT with {rows} vectors per document needs {rows} rows per document, "
                             "which pyserini.encode's writer cannot store; use python -m pyserini_dense_ext.encode")
    return args + ["--encoder-class", key]


def _rows_per_document(encoder: str) -> int:
    """Index rows per document the encoder writes (from its files alone; 1 for a query-only export)."""
    found = describe(encoder)
    if found.config is None or "document" not in found.sides:
        return 1
    return FAMILIES[found.config.family].model.rows_per_text(found.config, "document")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in MODULES:
        print(__doc__.strip() + f"\n\nusage: python -m pyserini_dense_ext.launch {{{','.join(MODULES)}}} "
              "[pyserini arguments...]", file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module, rest = argv[0], argv[1:]
    names = register()
    try:
        from . import onnx as onnx_backend

        names += onnx_backend.register()
    except ImportError:
        pass
    sys.argv = [f"pyserini.{module}"] + prepare_argv(module, rest)
    with widened_encoder_class_choices(names):
        runpy.run_module(f"pyserini.{module}", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
