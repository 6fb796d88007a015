"""Run Pyserini's own CLIs with our encoder classes available.

``python -m pyserini_dense_ext.launch search.faiss --index DIR --encoder OUR_MODEL ...`` prepares
Java (see ``_env``), registers our classes in Pyserini's class maps, widens the hand-typed
``--encoder-class`` choices of Pyserini's parsers to include them, and, when ``--encoder`` is one
of our model dirs or ONNX exports and no class was named, names ours, so Pyserini's substring
guess (a path containing 'ance' or 'dpr') can never pick the wrong class. For searches, an index
that recorded its encoder config (ours) configures our query encoder exactly as our own search
command does (a plain HF dir then needs no class or flag; a contradiction warns, another family is
an error). Then it runs ``pyserini.<module>`` as ``__main__`` with the remaining arguments.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Iterator

import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from . import pyserini_compat as compat
from .cli import run_cli, split_groups
from .encoders import FAMILIES, describe, find_backend, register
from .index.faiss_dir import IndexMeta

MODULES = ("search.faiss", "encode", "search.hybrid")
SEARCHES = ("search.faiss", "search.hybrid")
HYBRID_GROUPS = ("dense", "sparse", "fusion", "run")  # pyserini.search.hybrid's argument groups


def _value(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args[:-1] else None


def dense_index(module: str, args: list[str]) -> str | None:
    """The ``--index`` the query encoder searches: search.faiss's, or that of search.hybrid's dense group."""
    if module not in SEARCHES:
        return None
    group = split_groups(args, HYBRID_GROUPS).get("dense", []) if module == "search.hybrid" else args
    return _value(group, "--index")


def _recorded(index: str | None) -> IndexMeta | None:
    """The metadata of an index dir of ours that recorded its encoder config, else None."""
    from .search.index_config import index_config

    if index is None or not Path(index).is_dir():
        return None  # a Pyserini prebuilt index name, or nothing
    meta = IndexMeta.load(Path(index))
    return meta if meta is not None and index_config(meta, index) is not None else None


def our_class_for(encoder: str, index: str | None = None) -> str | None:
    """The class-map key for one of our model dirs or ONNX exports (the files say so), or for a plain HF dir
    searching an index that recorded our encoder config; else None (left to Pyserini)."""
    backend = find_backend(encoder)
    if backend is None or (describe(encoder).config is None and _recorded(index) is None):
        return None
    return backend.pyserini_key


def configured_classes(module: str, args: list[str]) -> dict[str, tuple[type, type]]:
    """Our class named by ``--encoder-class``, configured for this search by the index's recorded encoder config
    (:mod:`.search.index_config`), to register under the same key; empty when there is nothing to configure."""
    from .search.index_config import query_encoder_settings

    found = _encoder_position(args)
    encoder = found[1] if found else None
    key, index = _value(args, "--encoder-class"), dense_index(module, args)
    meta = _recorded(index)
    if meta is None or encoder is None or not (key or "").startswith("dense_ext"):
        return {}
    query_map, document_map = compat.class_maps()
    base = query_map[key]
    family, preset = query_encoder_settings(meta, index, encoder, base.family, {})
    configured = type(base.__name__, (base,), {"family": family, "preset": preset, "__module__": base.__module__})
    return {key: (configured, document_map[key])}


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


def _encoder_position(args: list[str]) -> tuple[int, str] | None:
    """(index of the last token of ``--encoder VALUE`` or ``--encoder=VALUE``, VALUE), or None."""
    for i, token in enumerate(args):
        if token == "--encoder" and i + 1 < len(args):
            return i + 1, args[i + 1]
        if token.startswith("--encoder="):
            return i, token.split("=", 1)[1]
    return None


def prepare_argv(module: str, args: list[str]) -> list[str]:
    """Name our class for our encoders; refuse what Pyserini's writer cannot store (m rows per doc).

    ``--encoder-class`` goes right after ``--encoder VALUE``: Pyserini's ``encode`` and ``search.hybrid``
    cut their arguments into groups (``input``/``encoder``/``output``, ``dense``/``sparse``/``fusion``/``run``),
    in any order, and only the group that holds ``--encoder`` accepts it.
    """
    args = list(args)
    found = _encoder_position(args)
    if found is None or any(a == "--encoder-class" or a.startswith("--encoder-class=") for a in args):
        return args
    position, encoder = found
    key = our_class_for(encoder, dense_index(module, args))
    if key is None:
        return args
    if module == "encode":
        rows = _rows_per_document(encoder)
        if rows > 1:
            raise ValueError(f"{encoder}: ME-BERT with {rows} vectors per document needs {rows} rows per document, "
                             "which pyserini.encode's writer cannot store; use python -m pyserini_dense_ext.encode")
    return args[:position + 1] + ["--encoder-class", key] + args[position + 1:]


def _rows_per_document(encoder: str) -> int:
    """Index rows per document the encoder writes (from its files alone; 1 for a query-only export)."""
    found = describe(encoder)
    if found.config is None or "document" not in found.sides:
        return 1
    return FAMILIES[found.config.family].model.rows_per_text(found.config, "document")


USAGE = f"usage: python -m pyserini_dense_ext.launch {{{','.join(MODULES)}}} [pyserini arguments...]"
EXAMPLES = """examples:
  python -m pyserini_dense_ext.launch search.faiss --index indexes/scifact-minilm --encoder exports/minilm-q.onnx \\
    --topics ../shared/data/scifact/queries.jsonl --output runs/scifact.faiss.trec --hits 1000
  python -m pyserini_dense_ext.launch encode input --corpus COLLECTION_DIR --fields text \\
    encoder --encoder MODEL_DIR --fields text --dimension 384 --device cpu output --embeddings indexes/x --to-faiss"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE + "\n\n" + __doc__.strip() + "\n\n" + EXAMPLES)
        return 0
    if not argv or argv[0] not in MODULES:
        what = (f"{argv[0]} is not supported: the launcher runs only {', '.join(MODULES)}, the Pyserini commands "
                "that take an encoder class" if argv else "name a Pyserini command")
        print(f"{USAGE}\nerror: {what}", file=sys.stderr)
        return 2
    module, rest = argv[0], argv[1:]
    names = register()
    try:
        from . import onnx as onnx_backend

        names += onnx_backend.register()
    except ImportError:
        pass
    argv = prepare_argv(module, rest)
    register(configured_classes(module, argv))
    with widened_encoder_class_choices(names):
        compat.run_main(module, argv)
    return 0


if __name__ == "__main__":
    run_cli(main)
