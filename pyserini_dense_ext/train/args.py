"""Training arguments: dataclasses with help text, set by flags or one JSON file (Tevatron's pattern).

Every recipe shares :class:`TrainArgs` (model, data, output and optimisation, evaluation); each
recipe adds its own dataclass. A value is decided, last wins, by: the dataclass default, the
recipe's paper defaults (``Recipe.defaults``), ``--config FILE.json`` (flat, field names as
keys) and the command-line flags. The resolved values are saved as ``training_args.json`` in the
output dir, and ``--config`` reads that file back, so a run can be repeated exactly.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from ..encoders.config import EncoderConfig
from ..io.errors import InputError

ARGS_FILE = "training_args.json"


def arg(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field carrying its help text (and argparse extras such as ``metavar``)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    if get_origin(tp) in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            return inner[0], True
    return tp, False


def _config_fields() -> list[tuple[str, Any, Any]]:
    """One optional field per :class:`EncoderConfig` flag but ``family`` (the recipe's): None lets the model
    dir's ``dense_ext.json`` (or the family's defaults) decide, as in every other command."""
    hints = get_type_hints(EncoderConfig)
    out = []
    for f in dataclasses.fields(EncoderConfig):
        spec = f.metadata.get("cli")
        if spec is None or f.name == "family":
            continue
        kind = Literal[tuple(spec["choices"])] if "choices" in spec else _unwrap(hints[f.name])[0]
        extra = {"metavar": spec["metavar"]} if "metavar" in spec else {}
        out.append((f.name, kind | None, arg(None, spec["help"], **extra)))
    return out


ENCODER_FIELDS: tuple[str, ...] = tuple(name for name, _, _ in _config_fields())
ModelArgs = dataclasses.make_dataclass("ModelArgs", [
    ("model", str | None, arg(None, "local model dir to start from: a Hugging Face checkpoint, with or without "
                                    "dense_ext.json (required)", metavar="DIR")),
    *_config_fields(),
    ("device", str, arg("auto", "auto (CUDA when there is one), cpu, cuda or cuda:N")),
    ("precision", Literal["auto", "fp32", "bf16", "fp16"], arg(
        "auto", "autocast on CUDA: auto is bf16 where the GPU supports it, else fp16 (with loss scaling); "
                "CPU always trains in fp32")),
])
ModelArgs.__module__ = __name__
ModelArgs.__doc__ = """model: where training starts and how texts become vectors (the encoder options are
    EncoderConfig's flags; unset ones come from the model dir's dense_ext.json, else the family's defaults)"""


@dataclass
class DataArgs:
    """data: judged training queries, a dev split and hard negatives"""

    data: str | None = arg(None, "BEIR-layout dir: corpus.jsonl, queries.jsonl, qrels/<split>.tsv", metavar="DIR")
    corpus: str | None = arg(None, "corpus file or dir (JsonCollection or BEIR corpus.jsonl); overrides --data",
                             metavar="PATH")
    queries: str | None = arg(None, "queries: TSV (qid<TAB>text) or BEIR queries.jsonl; overrides --data",
                              metavar="FILE")
    qrels: str | None = arg(None, "training judgements: TREC or BEIR TSV; overrides --data", metavar="FILE")
    split: str = arg("train", "qrels split read from --data (qrels/<split>.tsv)")
    dev_qrels: str | None = arg(None, "judgements of dev queries (disjoint from the training queries); "
                                      "default: hold out --dev-fraction of the training queries", metavar="FILE")
    dev_fraction: float = arg(0.1, "share of the training queries held out as the dev split when no --dev-qrels "
                                   "(0: no dev split, no evaluation, the last weights are kept)")
    split_seed: int = arg(0, "seed of the dev split (separate from --seed, so seeds can vary on a fixed split)")
    negatives: str | None = arg(None, "run file (TREC or MS MARCO) whose hits are hard negatives: BM25, dense or "
                                      "hybrid; judged positives are never used as negatives", metavar="RUN")
    negative_depth: int = arg(100, "hard negatives are drawn from the top N hits of --negatives", metavar="N")


@dataclass
class OptimArgs:
    """output and optimisation"""

    output: str | None = arg(None, "model dir to write (required); it appears complete, by rename, at the end. "
                                   "Work in progress is kept in .<name>.partial beside it, and re-running the same "
                                   "command resumes from its last checkpoint", metavar="DIR")
    overwrite: bool = arg(False, "replace --output if it exists")
    epochs: int = arg(1, "passes over the training pairs")
    max_steps: int = arg(0, "stop after this many optimiser steps (0: --epochs decides)")
    batch_size: int = arg(32, "training queries (pairs) per forward pass")
    gradient_accumulation: int = arg(1, "forward passes per optimiser step")
    learning_rate: float = arg(2e-5, "peak learning rate of AdamW")
    weight_decay: float = arg(0.01, "AdamW weight decay (not applied to biases and LayerNorm weights)")
    adam_epsilon: float = arg(1e-8, "AdamW epsilon")
    warmup_ratio: float = arg(0.1, "linear warm-up over this share of the steps, then linear decay to 0")
    warmup_steps: int | None = arg(None, "warm-up steps (overrides --warmup-ratio)", metavar="N")
    max_grad_norm: float = arg(1.0, "clip the gradient norm to this (0: no clipping)")
    seed: int = arg(42, "seed of data order, negative sampling, dropout and new weights")
    save_steps: int = arg(50, "write a resumable checkpoint every N optimiser steps", metavar="N")
    plot: bool = arg(True, "draw train_log.png (needs matplotlib: the plot extra)")
    quiet: bool = arg(False, "no progress bar")


@dataclass
class EvalArgs:
    """evaluation on the dev split (our eval module, trec_eval's numbers)"""

    eval_steps: int = arg(50, "evaluate every N optimiser steps and at the end (0: only at the end)", metavar="N")
    eval_at_start: bool = arg(True, "evaluate the starting model too, so the kept model is never worse on dev "
                                    "than where training began")
    eval_candidates: str | None = arg(None, "run file whose top --eval-depth hits per dev query are re-scored "
                                            "(default: --negatives; without either, every corpus document)",
                                      metavar="RUN")
    eval_depth: int = arg(100, "candidates per dev query taken from --eval-candidates", metavar="N")
    eval_metrics: list[str] = arg(["ndcg@10", "recall@100"], "dev metrics logged; the first picks the best "
                                                              "checkpoint", metavar="METRIC")
    eval_batch_size: int = arg(64, "texts per forward pass when encoding for evaluation", metavar="N")
    patience: int = arg(0, "stop after N evaluations without a better dev score (0: never stop early)",
                        metavar="N")


@dataclass
class TrainArgs(ModelArgs, DataArgs, OptimArgs, EvalArgs):
    """Options every recipe shares."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the flag of the first impossible value."""
        from ..eval import parse_metrics

        def need(ok: bool, name: str, why: str) -> None:
            if not ok:
                raise ValueError(f"--{name.replace('_', '-')}: {why}, got {getattr(self, name)!r}")

        need(self.model is not None, "model", "is required")
        need(self.output is not None, "output", "is required")
        need(self.data is not None or None not in (self.queries, self.qrels), "data",
             "give a BEIR dir, or --queries and --qrels (and --corpus where the recipe reads documents)")
        for name in ("epochs", "batch_size", "gradient_accumulation", "save_steps", "negative_depth", "eval_depth",
                     "eval_batch_size"):
            need(getattr(self, name) >= 1, name, "must be a positive integer")
        for name in ("max_steps", "eval_steps", "patience", "seed", "split_seed"):
            need(getattr(self, name) >= 0, name, "must be >= 0")
        need(self.learning_rate > 0, "learning_rate", "must be positive")
        for name in ("weight_decay", "adam_epsilon", "max_grad_norm"):
            need(getattr(self, name) >= 0, name, "must be >= 0")
        need(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        need(self.warmup_steps is None or self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        need(0 <= self.dev_fraction < 1, "dev_fraction", "must be in [0, 1)")
        need(bool(self.eval_metrics), "eval_metrics", "needs at least one metric")
        parse_metrics(self.eval_metrics)  # ValueError naming the bad metric


@dataclass
class NoArgs:
    """(this recipe has no options of its own)"""


COMMON_GROUPS: tuple[type, ...] = (ModelArgs, DataArgs, OptimArgs, EvalArgs)
# Fields whose value does not change the trained weights (a resumed run may differ in them).
UNTRACKED = frozenset({"overwrite", "quiet", "plot"})


# ----- argparse from dataclasses -----------------------------------------------------------------

def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_dataclass(parser: argparse.ArgumentParser, cls: type, defaults: dict[str, Any]) -> None:
    """One argument group per dataclass; flags default to SUPPRESS so only given ones reach the namespace.

    The help shows the effective default: ``defaults`` (the recipe's) over the dataclass's own.
    """
    doc = " ".join((cls.__doc__ or cls.__name__).split())
    title, _, description = doc.partition(": ")
    group = parser.add_argument_group(title, description or None)
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, _ = _unwrap(hints[f.name])
        default = defaults.get(f.name, f.default if f.default is not dataclasses.MISSING else f.default_factory())
        kwargs: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS)
        if "metavar" in f.metadata:
            kwargs["metavar"] = f.metadata["metavar"]
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
            shown = "the model dir's setting" if default is None else "on" if default else "off"
        else:
            shown = None if default is None else " ".join(map(str, default)) if isinstance(default, list) else default
            if get_origin(tp) is Literal:
                kwargs.update(choices=get_args(tp), type=type(get_args(tp)[0]))
            elif get_origin(tp) is list:
                kwargs.update(nargs="+", type=get_args(tp)[0])
            else:
                kwargs["type"] = tp
                kwargs.setdefault("metavar", {int: "N", float: "X"}.get(tp))
        kwargs["help"] = f.metadata.get("help", "") + ("" if shown is None else f" (default: {shown})")
        group.add_argument(_flag(f.name), **kwargs)


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def check_value(cls: type, name: str, value: Any, source: str) -> Any:
    """A JSON value of field ``name`` in the type the field declares, or an ``InputError`` naming it."""
    tp, optional = _unwrap(get_type_hints(cls)[name])

    def bad() -> InputError:
        return InputError(source, f"{value!r} is not a valid value (expected {tp})", field=name)

    if value is None:
        if optional:
            return None
        raise bad()
    if get_origin(tp) is Literal:
        if value not in get_args(tp) or isinstance(value, bool):
            raise InputError(source, f"must be one of {get_args(tp)}, got {value!r}", field=name)
        return value
    if get_origin(tp) is list:
        if not isinstance(value, list) or not all(isinstance(v, get_args(tp)[0]) for v in value):
            raise bad()
        return list(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, tp) or isinstance(value, bool):
        raise bad()
    return value


def read_config(path: str | Path, recipe: str, known: dict[str, type]) -> dict[str, Any]:
    """A flat JSON object of field values (``training_args.json`` of an earlier run is one)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "config file does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise InputError(path, "must hold one JSON object of option names and values")
    if data.pop("recipe", recipe) != recipe:
        raise InputError(path, f"is a config for another recipe, not {recipe!r}", field="recipe")
    values = {}
    for name, value in data.items():
        if name not in known:
            raise InputError(path, "unknown option (keys are the long flags of --help with _ for -)", field=name)
        values[name] = check_value(known[name], name, value, str(path))
    return values


def resolve(recipe_name: str, options_cls: type, recipe_defaults: dict[str, Any],
            given: dict[str, Any], config: str | None = None) -> tuple[TrainArgs, Any]:
    """Merge defaults, the recipe's defaults, the JSON config and the given flags into the two dataclasses."""
    known = {**{n: TrainArgs for n in field_names(TrainArgs)}, **{n: options_cls for n in field_names(options_cls)}}
    values = dict(recipe_defaults)
    if config is not None:
        values.update(read_config(config, recipe_name, known))
    values.update(given)
    common = TrainArgs(**{k: v for k, v in values.items() if known[k] is TrainArgs})
    options = options_cls(**{k: v for k, v in values.items() if known[k] is options_cls})
    common.validate()
    if hasattr(options, "validate"):
        options.validate()
    return common, options


def args_dict(recipe_name: str, common: TrainArgs, options: Any) -> dict[str, Any]:
    """What ``training_args.json`` holds: the recipe name and every resolved value."""
    return {"recipe": recipe_name, **dataclasses.asdict(common), **dataclasses.asdict(options)}


def write_args(path: Path, recipe_name: str, common: TrainArgs, options: Any) -> None:
    path.write_text(json.dumps(args_dict(recipe_name, common, options), indent=2) + "\n", encoding="utf-8")
