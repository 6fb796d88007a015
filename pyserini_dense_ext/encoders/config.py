"""The small JSON file in a model dir that says how its texts become vectors.

With it, every command picks the right family and options from the dir alone, so no class is
ever guessed from a substring of the path (Pyserini picks ANCE for any path containing 'ance').
Index dirs record the same fields (``dense_ext_index.json``), so a search knows how its
documents were encoded.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io.errors import InputError
from .registry import FAMILIES, get_family

CONFIG_NAME = "dense_ext.json"
POOLINGS = ("mean", "cls")
SEGMENT_IDS = (0, 1)


def option(help: str, **argparse_options: Any) -> dict[str, Any]:
    """Field metadata that makes the field a command-line flag (see ``cli.add_config_options``)."""
    return {"cli": {"help": help, **argparse_options}}


@dataclass
class EncoderConfig:
    """Everything that decides a family's text-to-vector mapping, beside the HF weights.

    The dataclass defaults are generic; a family's paper defaults live in its module
    (``FAMILIES[name].defaults``). Each field with ``option`` metadata is a flag of every command.
    """

    family: str = field(metadata=option("encoder family; overrides the dir's dense_ext.json (a plain HF dir needs "
                                        "it unless an index records it)"))
    pooling: str = field(default="mean", metadata=option("pooling (RepBERT; ME-BERT queries): mean or cls", choices=POOLINGS))
    l2_norm: bool = field(default=False, metadata=option("L2-normalise vectors (cosine similarity)"))
    query_max_length: int = field(default=20, metadata=option("query token limit", metavar="N"))
    doc_max_length: int = field(default=256, metadata=option("document token limit", metavar="N",
                                                             aliases=("--max-length",)))
    query_segment_id: int = field(default=0, metadata=option("RepBERT query segment id (paper: 0)",
                                                             choices=SEGMENT_IDS))
    doc_segment_id: int = field(default=0, metadata=option("RepBERT document segment id (paper: 1; 0 for "
                                                           "checkpoints trained with one segment)",
                                                           choices=SEGMENT_IDS))
    num_vectors: int = field(default=1, metadata=option("ME-BERT vectors per document", metavar="M"))
    projection_dim: int | None = field(default=None, metadata=option(
        "ME-BERT / ColBERT projection size (needs trained projection weights in the dir)", metavar="K"))
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_family(cls, family: str, **overrides: Any) -> "EncoderConfig":
        """The family's paper defaults, with the given non-None fields replaced."""
        values = {**get_family(family).defaults, **{k: v for k, v in overrides.items() if v is not None}}
        config = cls(family=family, **values)
        config.validate()
        return config

    def with_overrides(self, **overrides: Any) -> "EncoderConfig":
        """A copy with the given non-None fields replaced (command-line flags win over the file)."""
        config = dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})
        config.validate()
        return config

    def validate(self, source: str = "encoder config") -> None:
        def bad(name: str, why: str) -> InputError:
            return InputError(source, why, field=name)

        if self.family not in FAMILIES:
            raise bad("family", f"unknown family {self.family!r}; choose from {sorted(FAMILIES)}")
        if self.pooling not in POOLINGS:
            raise bad("pooling", f"must be one of {POOLINGS}, got {self.pooling!r}")
        for name in ("query_max_length", "doc_max_length", "num_vectors"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise bad(name, f"must be a positive integer, got {value!r}")
        for name in ("query_segment_id", "doc_segment_id"):
            if getattr(self, name) not in SEGMENT_IDS:
                raise bad(name, f"must be 0 or 1, got {getattr(self, name)!r}")
        if self.projection_dim is not None and (not isinstance(self.projection_dim, int) or self.projection_dim < 1):
            raise bad("projection_dim", f"must be a positive integer or null, got {self.projection_dim!r}")
        problems = FAMILIES[self.family].problems(self)  # the family module's own rules
        if problems:
            raise bad(*problems[0])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> "EncoderConfig | None":
        """The dir's config, or None when the dir has none (a plain HF checkpoint)."""
        path = Path(model_dir) / CONFIG_NAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(path, f"is not valid JSON: {e}") from None
        if not isinstance(data, dict) or "family" not in data:
            raise InputError(path, "is missing", field="family")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(path, f"unknown option(s) {unknown}", field=unknown[0])
        try:
            config = cls(**data)
        except TypeError as e:
            raise InputError(path, str(e)) from None
        config.validate(str(path))
        return config


CONFIG_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(EncoderConfig))


def recorded_config(data: dict[str, Any], source: str) -> EncoderConfig | None:
    """The config in an index's ``encoder`` record, or None when it records none (a Pyserini dir, a bare model name)."""
    if "family" not in data:
        return None
    try:
        config = EncoderConfig(**{k: v for k, v in data.items() if k in CONFIG_FIELDS})
    except TypeError as e:
        raise InputError(source, f"encoder record: {e}", field="encoder") from None
    config.validate(source)
    return config
