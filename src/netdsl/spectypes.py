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


def _dtypes() -> dict[str, Any]:
    import torch  # the parameter types above need no torch

    names = {"bool": "bool", "uint8": "uint8", "int8": "int8", "int16": "int16",
             "int32": "int32", "int64": "int64", "int": "int32", "long": "int64",
             "float16": "float16", "half": "float16", "bfloat16": "bfloat16",
             "float32": "float32", "float": "float32", "float64": "float64",
             "double": "float64"}
    return {name: getattr(torch, dtype) for name, dtype in names.items()}


# The dtypes an input may declare (``input idx: [B, T] long``), by torch's names; the grammar's
# DTYPE terminal lists the same words.
DTYPES: dict[str, Any] = _dtypes()
