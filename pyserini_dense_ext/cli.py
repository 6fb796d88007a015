"""Shared command-line pieces: encoder options, Pyserini-style sub-command groups, clean errors."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from .io.errors import InputError


def add_encoder_options(parser: argparse.ArgumentParser, encoder_default: str | None = None) -> None:
    """Options that override a model dir's ``dense_ext.json`` (or say how to use a plain HF dir).

    With ``encoder_default`` (a description), ``--encoder`` is optional and None stands for it.
    """
    from .encoders.config import FAMILY_DEFAULTS, POOLINGS

    parser.add_argument("--encoder", required=encoder_default is None, default=None, metavar="PATH",
                        help="local model dir (HF checkpoint, with or without dense_ext.json) or ONNX export"
                             + (f" (default: {encoder_default})" if encoder_default else ""))
    parser.add_argument("--family", choices=sorted(FAMILY_DEFAULTS), default=None,
                        help="encoder family; overrides the dir's dense_ext.json (required for plain HF dirs)")
    parser.add_argument("--pooling", choices=POOLINGS, default=None, help="pooling (RepBERT: mean or cls)")
    parser.add_argument("--l2-norm", action=argparse.BooleanOptionalAction, default=None,
                        help="L2-normalise vectors (cosine similarity)")
    parser.add_argument("--query-max-length", type=int, default=None, metavar="N", help="query token limit")
    parser.add_argument("--doc-max-length", "--max-length", type=int, default=None, metavar="N",
                        help="document token limit")
    parser.add_argument("--query-segment-id", type=int, choices=(0, 1), default=None,
                        help="RepBERT query segment id (paper: 0)")
    parser.add_argument("--doc-segment-id", type=int, choices=(0, 1), default=None,
                        help="RepBERT document segment id (paper: 1; 0 for checkpoints trained with one segment)")
    parser.add_argument("--num-vectors", type=int, default=None, metavar="M", help="ME-BERT vectors per document")
    parser.add_argument("--projection-dim", type=int, default=None, metavar="K",
                        help="ME-BERT projection size (needs trained projection weights in the dir)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="texts per forward pass")


OVERRIDE_FIELDS = ("pooling", "l2_norm", "query_max_length", "doc_max_length", "query_segment_id",
                   "doc_segment_id", "num_vectors", "projection_dim")


def encoder_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in OVERRIDE_FIELDS if getattr(args, name, None) is not None}


def split_groups(argv: Sequence[str], groups: Sequence[str]) -> dict[str, list[str]]:
    """Pyserini's ``input ... encoder ... output ...`` style: cut argv at each group name."""
    parts: dict[str, list[str]] = {"": []}
    current = ""
    for token in argv:
        if token in groups:
            current = token
            parts.setdefault(current, [])
        else:
            parts[current].append(token)
    return parts


def parse_groups(parsers: dict[str, argparse.ArgumentParser], argv: Sequence[str], groups: Sequence[str],
                 optional: Sequence[str] = (), help_if_empty: bool = False) -> dict[str, argparse.Namespace]:
    """Parse ``group --opts group --opts ...``: each group's own ``--help`` works alone; the others are required.

    ``parsers[""]`` is the top-level parser (its ``--help`` lists the groups; stray arguments are its error).
    """
    parts = split_groups(argv, groups)
    if parts[""] or (help_if_empty and not argv):
        parsers[""].parse_args(parts[""] or ["--help"])  # --help, or an error naming the stray arguments
    for group in groups:
        if {"-h", "--help"} & set(parts.get(group, ())):
            parsers[group].parse_args(parts[group])  # the group's help, even before the other groups are given
    for group in optional:
        parts.setdefault(group, [])
    missing = [g for g in groups if g not in parts]
    if missing:
        parsers[""].error(f"missing argument group(s): {', '.join(missing)}")
    return {g: parsers[g].parse_args(parts[g]) for g in groups}


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Exit with ``main``'s code; bad input prints one clear line (file, line, field) and exits 2."""
    try:
        code = main(argv)
    except (InputError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted: no partial output was left in place", file=sys.stderr)
        code = 130
    sys.exit(code)


def _entry(module: str) -> Callable[[], None]:
    """A console-script entry point running ``module.main`` with :func:`run_cli`'s error handling."""

    def entry() -> None:
        import importlib

        run_cli(importlib.import_module(module).main)

    return entry


# The console scripts in setup.cfg; each mirrors a ``python -m`` command.
encode = _entry("pyserini_dense_ext.encode.__main__")
search = _entry("pyserini_dense_ext.search.__main__")
hybrid = _entry("pyserini_dense_ext.search.hybrid.__main__")
fuse = _entry("pyserini_dense_ext.fuse")
tune = _entry("pyserini_dense_ext.tune")
evaluate = _entry("pyserini_dense_ext.eval.__main__")
merge = _entry("pyserini_dense_ext.index.merge")
onnx_export = _entry("pyserini_dense_ext.onnx.export")
launch = _entry("pyserini_dense_ext.launch")
quickstart = _entry("pyserini_dense_ext.quickstart")
