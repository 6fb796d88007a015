"""Shared command-line pieces: encoder and fusion options, Pyserini-style argument groups, clean errors."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Sequence

from .io.errors import InputError


def add_config_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """One flag per :class:`EncoderConfig` field that carries ``option`` metadata (help, choices, metavar).

    Each flag defaults to None (unset), so a model dir's ``dense_ext.json`` or an index's recorded
    config decides unless the flag is given.
    """
    import dataclasses
    import typing

    from .encoders.config import EncoderConfig
    from .encoders.registry import FAMILIES

    hints = typing.get_type_hints(EncoderConfig)
    for f in dataclasses.fields(EncoderConfig):
        if "cli" not in f.metadata:
            continue
        spec = dict(f.metadata["cli"])
        flags = [f"--{f.name.replace('_', '-')}", *spec.pop("aliases", ())]
        kind = hints[f.name]
        if f.name == "family":
            spec["choices"] = sorted(FAMILIES)
        if kind is bool:
            spec["action"] = argparse.BooleanOptionalAction
        else:
            spec["type"] = next(t for t in typing.get_args(kind) or (kind,) if t is not type(None))
        parser.add_argument(*flags, dest=f.name, default=None, **spec)


def add_encoder_options(parser: argparse.ArgumentParser, encoder_default: str | None = None) -> None:
    """``--encoder``, the config flags (:func:`add_config_options`), ``--device`` and ``--batch-size``.

    With ``encoder_default`` (a description), ``--encoder`` is optional and None stands for it.
    """
    parser.add_argument("--encoder", required=encoder_default is None, default=None, metavar="PATH",
                        help="local model dir (HF checkpoint, with or without dense_ext.json) or ONNX export"
                             + (f" (default: {encoder_default})" if encoder_default else ""))
    add_config_options(parser)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="texts per forward pass")


def add_query_backend_options(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--precision``: which runtime encodes the queries of a search command."""
    parser.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                        help="query encoder runtime for a model dir: auto (default) runs its cached ONNX export on "
                             "the CPU when one exists (python -m pyserini_dense_ext.onnx.export --model DIR --side "
                             "query makes it), else torch; onnx requires the export; torch never looks")
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                        help="int8 runs the cached int8 export (faster, vectors within cosine 0.99 of torch's; "
                             "only when asked)")


def add_run_output_options(parser: argparse.ArgumentParser, tag: str) -> None:
    """Where a command writes its run: ``--output`` (atomically), format, TREC tag; and ``--quiet``."""
    from .io.runs import FORMATS

    parser.add_argument("--output", required=True, help="run file to write (atomically)")
    parser.add_argument("--output-format", choices=FORMATS, default="trec", help="run format (default trec)")
    parser.add_argument("--run-tag", default=tag, help=f"last column of TREC lines (default {tag})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def encoder_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config flags that were given (all but ``--family``), as ``EncoderConfig`` field overrides."""
    from .encoders.config import CONFIG_FIELDS

    return {name: getattr(args, name) for name in CONFIG_FIELDS
            if name != "family" and getattr(args, name, None) is not None}


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
                 optional: Sequence[str] = (), omittable: Sequence[str] = (), leading: str | None = None,
                 help_if_empty: bool = False) -> dict[str, argparse.Namespace | None]:
    """Parse ``group --opts group --opts ...``: each group's own ``--help`` works alone; the others are required.

    ``parsers[""]`` is the top-level parser (its ``--help`` lists the groups; stray arguments are its error,
    unless ``leading`` names the group they belong to). An ``optional`` group left out gets its defaults,
    an ``omittable`` one None.
    """
    parts = split_groups(argv, groups)
    stray = parts[""] if leading is None else [a for a in parts[""] if a in ("-h", "--help")]
    if stray or (help_if_empty and not argv):
        parsers[""].parse_args(stray or ["--help"])  # --help, or an error naming the stray arguments
    if parts[""] and leading is not None:
        parts[leading] = parts[""] + parts.get(leading, [])
    for group in groups:
        if {"-h", "--help"} & set(parts.get(group, ())):
            parsers[group].parse_args(parts[group])  # the group's help, even before the other groups are given
    for group in optional:
        parts.setdefault(group, [])
    missing = [g for g in groups if g not in parts and g not in omittable]
    if missing:
        parsers[""].error(f"missing argument group(s): {', '.join(missing)}")
    return {g: parsers[g].parse_args(parts[g]) if g in parts else None for g in groups}


def add_max_passage_options(parser: argparse.ArgumentParser) -> None:
    """Pyserini's MaxP flags (``pyserini.search.faiss``, ``.lucene``, ``.hybrid``), same names and defaults."""
    from .search.maxp import DELIMITER, MAX_PASSAGE_HITS

    parser.add_argument("--max-passage", action="store_true",
                        help="rank documents by their best passage: hits docid#k count once, as docid, at their "
                             "first (best) passage's score (an index built with --passages)")
    parser.add_argument("--max-passage-hits", type=int, default=MAX_PASSAGE_HITS, metavar="N",
                        help=f"documents per query with --max-passage (default {MAX_PASSAGE_HITS}, as Pyserini)")
    parser.add_argument("--max-passage-delimiter", default=DELIMITER, metavar="STR",
                        help=f"what separates a docid from its passage number (default {DELIMITER!r})")


def add_fusion_options(parser: argparse.ArgumentParser, with_method: bool = True) -> None:
    """Method choice and its parameters (see ``pyserini_dense_ext.fusion.METHODS``)."""
    from .fusion import METHODS, NORMALIZATIONS, PREDICTORS

    if with_method:
        parser.add_argument("--method", choices=sorted(METHODS), required=True, help="fusion method (see below)")
    parser.add_argument("--alpha", type=float, default=None,
                        help="linear: weight of the sparse (first) list, or of the dense one with --weight-on-dense "
                             "(default 0.1); weighted: weight of the first list, others 1 (default 1.0)")
    parser.add_argument("--weight-on-dense", action="store_true", default=None,
                        help="linear: score = sparse + alpha*dense instead of alpha*sparse + dense")
    parser.add_argument("--weights", type=float, nargs="+", default=None, metavar="W",
                        help="weighted: one weight per run (instead of --alpha)")
    parser.add_argument("--normalization", choices=NORMALIZATIONS, default=None,
                        help="per-list score normalisation before fusing (linear/weighted default none, "
                             "combsum/combmnz default min-max; centred = Pyserini's HybridSearcher)")
    parser.add_argument("--rrf-k", type=float, default=None, help="rrf: the k in 1/(k + rank) (default 60)")
    parser.add_argument("--dense-weight", type=float, default=None,
                        help="auto: use this dense weight in [0, 1] instead of estimating it from the runs")
    parser.add_argument("--predictor", choices=PREDICTORS, default=None,
                        help="dispersion: the score-dispersion predictor weighting each list (default zmax)")


def fusion_from_args(args: argparse.Namespace):
    """The :class:`~pyserini_dense_ext.fusion.Fusion` the flags describe, checked here, once; a flag the method
    does not take is an error naming the flag."""
    from .fusion import UnknownParameters, resolve

    given = {"alpha": args.alpha, "weight_on_dense": args.weight_on_dense, "weights": args.weights,
             "normalization": args.normalization, "rrf_k": args.rrf_k, "dense_weight": args.dense_weight,
             "predictor": args.predictor}
    try:
        return resolve(args.method, **{k: v for k, v in given.items() if v is not None})
    except UnknownParameters as e:
        flags = ", ".join("--" + u.replace("_", "-") for u in e.unknown)
        raise ValueError(f"method {args.method!r} does not take {flags}") from None


SIGPIPE_EXIT = 141  # 128 + SIGPIPE: what the shell reports for a command whose reader went away


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Exit with ``main``'s code; bad input prints one clear line (file, line, field) and exits 2.

    Warnings (an index's recorded config contradicted, say) print as ``WARNING: ...`` lines. When
    stdout's reader goes away (``... | head``), stop quietly with 141, as a command killed by SIGPIPE
    would, instead of a ``BrokenPipeError`` traceback.
    """
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        code = main(argv)
        sys.stdout.flush()  # buffered output meets a closed pipe here, not in the interpreter's exit
    except BrokenPipeError:
        # Python flushes stdout again at exit, which would fail and print: point it at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = SIGPIPE_EXIT
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

    entry.module = module  # type: ignore[attr-defined]  (which command this script runs)
    return entry


# The console scripts in setup.cfg; each mirrors a ``python -m`` command.
encode = _entry("pyserini_dense_ext.encode.__main__")
search = _entry("pyserini_dense_ext.search.__main__")
rerank = _entry("pyserini_dense_ext.rerank.__main__")
hybrid = _entry("pyserini_dense_ext.search.hybrid.__main__")
fuse = _entry("pyserini_dense_ext.fusion.__main__")
tune = _entry("pyserini_dense_ext.tune")
evaluate = _entry("pyserini_dense_ext.eval.__main__")
merge = _entry("pyserini_dense_ext.index.merge")
index_lucene = _entry("pyserini_dense_ext.index.lucene")
expand = _entry("pyserini_dense_ext.expand.__main__")
onnx_export = _entry("pyserini_dense_ext.onnx.export")
launch = _entry("pyserini_dense_ext.launch")
quickstart = _entry("pyserini_dense_ext.quickstart")
train = _entry("pyserini_dense_ext.train.__main__")
repro = _entry("pyserini_dense_ext.repro.__main__")
