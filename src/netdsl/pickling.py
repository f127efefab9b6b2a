"""Pickling compiled models: ``torch.save(model)``, ``pickle``, ``copy.deepcopy``, spawn.

A spec's classes are made when it is compiled, so pickle cannot find them by name. Each generated
class instead carries the :class:`Recipe` it was compiled from (the text of the spec and of its
imports, the model, the parameters, the custom layers, the limits) and its index among the classes
of that compile. A pickled instance is ``instance(recipe, index)`` plus its ``__dict__``: loading
it compiles the recipe's texts again (once per process and recipe; nothing is read from disk, and
nothing is run beyond what loading the spec runs), on the meta device, to get the same classes;
the state (parameters, buffers, children) is the pickle's own. In the process that compiled the
recipe, the original classes are reused, so a deepcopy has the very class of its original.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from .limits import Limits


@dataclass(frozen=True, eq=False)
class Recipe:
    """What a compile was made from: enough to make the same classes again."""

    sources: tuple[tuple[str, str], ...]  # (path, text) of the spec and each file it imports
    path: str | None  # the spec file as loaded; None for loads(), whose text is under `name`
    name: str
    model: str | None
    params: tuple[tuple[str, Any], ...]
    modules: tuple[tuple[str, type[nn.Module]], ...]  # pickled by reference, as classes are
    limits: Limits

    # register() sets `classes` on the compile's own recipe object: a deepcopy shares that object,
    # a pickle does not carry it (it carries the texts, never classes).
    def __reduce__(self) -> Any:
        return Recipe, (self.sources, self.path, self.name, self.model, self.params,
                        self.modules, self.limits)

    def __deepcopy__(self, memo: dict[int, Any]) -> Recipe:
        return self  # immutable; and a deepcopy of a model keeps its own classes through it

    def key(self) -> str:
        modules = [(name, f"{cls.__module__}.{cls.__qualname__}") for name, cls in self.modules]
        text = repr((self.sources, self.path, self.name, self.model, self.params, modules,
                     self.limits))
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def recipe(sources: Mapping[str, str], path: str | None, name: str, model: str | None,
           params: Mapping[str, Any], modules: Mapping[str, type[nn.Module]] | None,
           limits: Limits) -> Recipe:
    # A wrong `modules` is refused by the registry with a usage error; not here.
    layers = tuple(sorted(modules.items())) if isinstance(modules, Mapping) else ()
    return Recipe(tuple(sources.items()), path, name, model, tuple(sorted(params.items())),
                  layers, limits)


# Classes by recipe key, in the order the compile made them.
_CLASSES: dict[str, list[type[nn.Module]]] = {}


def register(made: Recipe, classes: list[type[nn.Module]]) -> None:
    """Mark a compile's classes as made from ``made``; the first compile of a recipe is kept."""
    for index, cls in enumerate(classes):
        cls._netdsl_recipe = made  # type: ignore[attr-defined]
        cls._netdsl_index = index  # type: ignore[attr-defined]
    object.__setattr__(made, "classes", classes)
    _CLASSES.setdefault(made.key(), classes)


def instance(made: Recipe, index: int) -> nn.Module:
    """An empty instance of class ``index`` of the recipe's compile (pickle fills its state)."""
    classes = getattr(made, "classes", None) or _CLASSES.get(made.key())
    if classes is None:
        from .api import rebuild_classes  # the compiler, only when a pickle is loaded

        classes = rebuild_classes(made)
        register(made, classes)
    cls = classes[index]
    return cls.__new__(cls)


class GeneratedModule(nn.Module):
    """The base of every class a spec makes: it pickles through its recipe."""

    def __reduce_ex__(self, protocol: Any) -> Any:
        made = getattr(type(self), "_netdsl_recipe", None)
        if made is None:  # built by a tool from a plan, not by load(): plain pickling
            return super().__reduce_ex__(protocol)
        return instance, (made, type(self)._netdsl_index), self.__getstate__()  # type: ignore[attr-defined]


__all__ = ["GeneratedModule", "Recipe", "instance", "recipe", "register"]
