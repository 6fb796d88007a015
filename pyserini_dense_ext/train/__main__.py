"""``python -m pyserini_dense_ext.train RECIPE [options]``: train a dense retriever from a local checkpoint
on judged queries, into a model dir that every command here reads without flags."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import pyserini_dense_ext  # noqa: F401  (offline settings before transformers loads)

from ..cli import run_cli
from .args import COMMON_GROUPS, NoArgs, add_dataclass, resolve
from .loop import train
from .recipes import RECIPES

PROG = "python -m pyserini_dense_ext.train"
SOURCES = """Each option is set, last wins, by: its default, the recipe's (paper) default, --config FILE.json
(flat: {"learning_rate": 2e-5, ...}; an earlier run's training_args.json is one) and the flags.
The output dir holds the model (HF weights + dense_ext.json), training_args.json, training.json
(base model, data files and digests, seed, kept step, dev scores), train_log.csv and train_log.png.
A killed run resumes from its last checkpoint when the same command is run again."""


def build_parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG, description="Train a dense retriever from a local checkpoint on judged queries, into a model dir "
                               "that every command here (encode, search, hybrid, ONNX export, launch) reads "
                               "without flags.",
        epilog="recipes:\n" + "\n".join(f"  {n:<12} {c.summary}" for n, c in RECIPES.items())
               + f"\n\n{PROG} RECIPE --help lists a recipe's options, with an example.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="recipe", metavar="RECIPE")
    for name, recipe in RECIPES.items():
        p = sub.add_parser(name, help=recipe.summary, description=sys.modules[recipe.__module__].__doc__,
                           epilog=f"example:\n  {recipe.example}\n\n{SOURCES}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", metavar="FILE.json", help="option values as one JSON object (flags win)")
        for group in COMMON_GROUPS:
            add_dataclass(p, group, recipe.defaults)
        if recipe.Args is not NoArgs:
            add_dataclass(p, recipe.Args, {})
    return top


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    namespace = parser.parse_args(argv)
    if namespace.recipe is None:
        parser.print_help(sys.stderr)
        return 2
    given = vars(namespace)
    name, config = given.pop("recipe"), given.pop("config", None)
    recipe = RECIPES[name]
    args, options = resolve(name, recipe.Args, recipe.defaults, given, config)
    result = train(recipe, args, options)
    kept = "the last step" if result.best_step is None else f"step {result.best_step} of {result.steps}"
    scores = ", ".join(f"{k} {v:.4f}" for k, v in result.best_metrics.items())
    start = ", ".join(f"{k} {v:.4f}" for k, v in result.start_metrics.items())
    print(f"wrote {result.output} ({kept}{'; stopped early' if result.stopped_early else ''}) in "
          f"{result.seconds:.0f} s" + (f"\ndev: {scores}" if scores else "") + (f" (start: {start})" if start else ""))
    return 0


def recipe_main(name: str, argv: Sequence[str] | None = None) -> int:
    """``python -m`` entry of one recipe's own module (``train RECIPE`` with the name filled in)."""
    return main([name, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    run_cli(main)
