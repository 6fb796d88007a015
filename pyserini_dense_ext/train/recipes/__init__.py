"""Training recipes, one module each: a module here that defines ``RECIPE`` (a :class:`~..recipe.Recipe`
subclass) is a sub-command of ``python -m pyserini_dense_ext.train``; nothing else needs to change."""
from __future__ import annotations

import importlib
import pkgutil

from ..args import TrainArgs, field_names
from ..recipe import Recipe


def discover() -> dict[str, type[Recipe]]:
    """Every recipe module's ``RECIPE`` by name; an option that shadows a shared one is a bug, caught here."""
    common = set(field_names(TrainArgs))
    found: dict[str, type[Recipe]] = {}
    for info in pkgutil.iter_modules(__path__):
        recipe = getattr(importlib.import_module(f"{__name__}.{info.name}"), "RECIPE", None)
        if recipe is None:
            continue
        clash = common & set(field_names(recipe.Args))
        unknown = set(recipe.defaults) - common
        if clash or unknown or recipe.name in found:
            raise TypeError(f"recipe {recipe.name!r} ({info.name}.py): options {sorted(clash)} shadow shared ones, "
                            f"defaults {sorted(unknown)} name no shared option, or the name is taken")
        found[recipe.name] = recipe
    return dict(sorted(found.items()))


RECIPES: dict[str, type[Recipe]] = discover()
