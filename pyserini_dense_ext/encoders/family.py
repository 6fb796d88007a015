"""What a family module declares about itself; :mod:`.registry` collects one :class:`Family` per module."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

if TYPE_CHECKING:
    from .base import DenseModel
    from .config import EncoderConfig

ConfigCheck = Callable[["EncoderConfig"], Iterable[tuple[str, str]]]  # yields (field, why) per problem


@dataclass(frozen=True)
class Family:
    """One encoder family: its model class (tokenisation, pooling, extra weights), paper defaults and checks.

    ``class_prefix`` names its Pyserini classes (``RepBert`` -> ``RepBertQueryEncoder``,
    ``RepBertDocumentEncoder``); ``defaults`` are the :class:`EncoderConfig` fields the paper sets.
    A ``late_interaction`` family (ColBERT) scores token matrices, not vectors: it gets no Pyserini
    classes, index or ONNX export, only its scorer (``rerank --scorer``).
    """

    name: str
    model: type[DenseModel]
    class_prefix: str
    summary: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    checks: tuple[ConfigCheck, ...] = ()
    late_interaction: bool = False

    def __post_init__(self) -> None:
        if self.model.family != self.name:
            raise ValueError(f"family {self.name!r} declares model {self.model.__name__}, whose family is "
                             f"{self.model.family!r}")

    def problems(self, config: EncoderConfig) -> list[tuple[str, str]]:
        """(field, why) for each way ``config`` breaks this family's rules."""
        return [problem for check in self.checks for problem in check(config)]
