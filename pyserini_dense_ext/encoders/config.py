"""The small JSON file in a model dir that says how its texts become vectors.

With it, every command picks the right family and options from the dir alone, so no class is
ever guessed from a substring of the path (Pyserini picks ANCE for any path containing 'ance').
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io.errors import InputError

CONFIG_NAME = "dense_ext.json"
POOLINGS = ("mean", "cls")

# Per-family defaults, from the papers: RepBERT truncates queries to 20 and passages to 256
# tokens; TCT-ColBERT pads queries with [MASK] to exactly 36 tokens (ColBERT's query length) and
# Pyserini encodes its documents up to 512; ME-BERT keeps the first m=3 vectors by default.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "repbert": dict(pooling="mean", query_max_length=20, doc_max_length=256, query_segment_id=0, doc_segment_id=1),
    "tct_colbert": dict(pooling="mean", query_max_length=36, doc_max_length=512),
    "mebert": dict(pooling="cls", query_max_length=32, doc_max_length=256, num_vectors=3),
}


@dataclass
class EncoderConfig:
    """Everything that decides a family's text-to-vector mapping, beside the HF weights."""

    family: str
    pooling: str = "mean"
    l2_norm: bool = False
    query_max_length: int = 20
    doc_max_length: int = 256
    query_segment_id: int = 0
    doc_segment_id: int = 0
    num_vectors: int = 1
    projection_dim: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_family(cls, family: str, **overrides: Any) -> "EncoderConfig":
        if family not in FAMILY_DEFAULTS:
            raise ValueError(f"unknown encoder family {family!r}; choose from {sorted(FAMILY_DEFAULTS)}")
        values = {**FAMILY_DEFAULTS[family], **{k: v for k, v in overrides.items() if v is not None}}
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

        if self.family not in FAMILY_DEFAULTS:
            raise bad("family", f"unknown family {self.family!r}; choose from {sorted(FAMILY_DEFAULTS)}")
        if self.pooling not in POOLINGS:
            raise bad("pooling", f"must be one of {POOLINGS}, got {self.pooling!r}")
        for name in ("query_max_length", "doc_max_length", "num_vectors"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise bad(name, f"must be a positive integer, got {value!r}")
        for name in ("query_segment_id", "doc_segment_id"):
            if getattr(self, name) not in (0, 1):
                raise bad(name, f"must be 0 or 1, got {getattr(self, name)!r}")
        if self.projection_dim is not None and (not isinstance(self.projection_dim, int) or self.projection_dim < 1):
            raise bad("projection_dim", f"must be a positive integer or null, got {self.projection_dim!r}")
        if self.family == "tct_colbert" and self.query_max_length <= 4:
            raise bad("query_max_length", "must exceed the 4 prefix tokens '[CLS] [ Q ]'")

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
