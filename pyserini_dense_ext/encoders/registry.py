"""``FAMILIES``: every encoder family, by name, from the family modules' own ``FAMILY`` records.

It feeds the ``--family`` choices, :class:`~.config.EncoderConfig` validation, the generated
Pyserini classes (:mod:`.pyserini_api`) and ONNX export. A new family is a module declaring a
``FAMILY`` (see :class:`~.family.Family`) plus its name in the tuple below.
"""
from __future__ import annotations

from . import colbert, mebert, repbert, tct_colbert
from .family import Family

FAMILIES: dict[str, Family] = {module.FAMILY.name: module.FAMILY for module in (repbert, tct_colbert, mebert, colbert)}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown encoder family {name!r}; choose from {sorted(FAMILIES)}") from None
