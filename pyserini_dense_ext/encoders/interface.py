"""The one encoder interface every backend implements (torch :class:`~.base.DenseModel`, ONNX ``OnnxModel``).

Commands, searchers, corpus encoding and training hold an :class:`Encoder` and never ask which
backend runs it: texts of one side in, float32 vectors out, plus the config that made them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol, Sequence, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from .config import EncoderConfig

Side = Literal["query", "document"]
SIDES: tuple[Side, ...] = ("query", "document")


def check_side(side: str) -> Side:
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    return side  # type: ignore[return-value]


@runtime_checkable
class Encoder(Protocol):
    """Texts to vectors for one family and config."""

    config: EncoderConfig

    @property
    def dim(self) -> int:
        """Dimension of the output vectors (the index's dimension)."""

    @property
    def sides(self) -> tuple[Side, ...]:
        """The sides this encoder can encode (an ONNX export holds one)."""

    def vectors_per_text(self, side: Side) -> int:
        """Rows each text adds to an index: m for ME-BERT documents, else 1."""

    def encode(self, texts: Sequence[str], side: Side, batch_size: int = 32, progress: bool = False,
               max_length: int | None = None) -> np.ndarray:
        """Float32 ``(n, d)``, or ``(n, m, d)`` for multi-vector documents, in input order."""
