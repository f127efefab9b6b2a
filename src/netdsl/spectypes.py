"""Spec types: the types a spec's parameters declare (``width: int``, ``norm_layer: layer``).

``tuple`` and ``list`` each accept a tuple or a list (configs are written either way); ``layer``
is a layer, a block or a ``partial(...)`` of one; a parameter whose default is ``none`` also
accepts none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .values import LayerRef


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _float(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _sequence(value: Any) -> bool:
    return isinstance(value, (tuple, list))


@dataclass(frozen=True)
class SpecType:
    name: str
    check: Callable[[Any], bool]
    optional: bool = False

    def accepts(self, value: Any) -> bool:
        return (self.optional and value is None) or self.check(value)

    def or_none(self) -> SpecType:
        return SpecType(self.name, self.check, optional=True)

    def __str__(self) -> str:
        return f"{self.name} | none" if self.optional else self.name


PARAM_TYPES: dict[str, SpecType] = {
    "int": SpecType("int", _int),
    "float": SpecType("float", _float),
    "bool": SpecType("bool", lambda v: isinstance(v, bool)),
    "str": SpecType("str", lambda v: isinstance(v, str)),
    "tuple": SpecType("tuple", _sequence),
    "list": SpecType("list", _sequence),
    "layer": SpecType("layer", lambda v: isinstance(v, LayerRef)),
}
