"""Import, the description: what an imported module is made of, as data.

netdsl.fromtorch describes a module tree with these nodes (a layer call, a container, an
instance of a block) and groups the instances into blocks; netdsl.fromtorch_write writes them.
Every value an instance was built with is a :class:`Slot`, in one order per structure, so that
the instances of one block line up value by value.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import torch
from torch import nn

from .fromtorch_forward import Forward
from .fromtorch_layers import LayerCall, literal


@dataclass(frozen=True)
class Slot:
    """One value an instance was built with, and what it is (a layer argument's name)."""

    value: Any
    label: str
    argument: bool = True  # a layer argument (False: a dimension of a tensor of its own)
    child: str = ""  # the path of the layer it is an argument of, in its block

    def under(self, key: str) -> Slot:
        return replace(self, child=f"{key}_{self.child}" if self.child else key)

    @property
    def same(self) -> tuple[str, str]:
        """Equality that tells ``1``, ``1.0`` and ``True`` apart."""
        return type(self.value).__name__, literal(self.value)


@dataclass(frozen=True)
class Layer:
    call: LayerCall

    @cached_property
    def key(self) -> Hashable:
        return ("layer", self.call.name,
                tuple((p.name, Layer(v).key if isinstance(v, LayerCall) else type(v).__name__)
                      for p, v in zip(self.call.params, self.call.values, strict=True)))

    @cached_property
    def slots(self) -> tuple[Slot, ...]:
        """A slot per argument; a module argument's slots in its place (its nested call's)."""
        return tuple(slot for p, v in zip(self.call.params, self.call.values, strict=True)
                     for slot in (Layer(v).slots if isinstance(v, LayerCall)
                                  else (Slot(v, p.name),)))


@dataclass(frozen=True)
class Container:
    kind: str  # sequential, list or dict
    where: str  # for messages: its path and class
    items: tuple[tuple[str, Node], ...]

    @cached_property
    def key(self) -> Hashable:
        return (self.kind, tuple((name, item.key) for name, item in self.items))

    @cached_property
    def slots(self) -> tuple[Slot, ...]:
        return tuple(slot.under(key) for key, item in self.items for slot in item.slots)

    @property
    def numbered(self) -> bool:
        return [name for name, _ in self.items] == [str(i) for i in range(len(self.items))]


@dataclass(frozen=True)
class Tensor:
    """A parameter or buffer of a block's own (ViT's class_token, ConvNeXt's layer_scale)."""

    kind: str  # param or buffer
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    requires_grad: bool


@dataclass(frozen=True)
class Instance:
    """A module of a class that is not a layer of the language: an instance of a block."""

    cls: type[nn.Module]
    tensors: tuple[Tensor, ...]
    children: tuple[tuple[str, Node], ...]
    forward: Forward
    key: Hashable = field(init=False)
    slots: tuple[Slot, ...] = field(init=False)

    def __post_init__(self) -> None:
        key = ("block", self.cls, tuple((t.kind, t.name, len(t.shape), t.dtype, t.requires_grad)
                                        for t in self.tensors),
               tuple((name, child.key) for name, child in self.children), self.forward.text,
               tuple(type(v).__name__ for v in self.forward.numbers))
        dims = tuple(Slot(d, f"{t.name}_size", argument=False)
                     for t in self.tensors for d in t.shape)
        numbers = tuple(Slot(v, "value", argument=False) for v in self.forward.numbers)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "slots", dims + tuple(
            slot.under(name) for name, child in self.children for slot in child.slots) + numbers)


Node = Layer | Container | Instance


@dataclass
class Block:
    """The instances of one class and one structure, as one block with parameters."""

    name: str
    instances: list[Instance]
    params: tuple[Param, ...] = ()


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    slots: tuple[int, ...]  # the slots of each instance that hold this parameter's value


__all__ = ["Block", "Container", "Instance", "Layer", "Node", "Param", "Slot", "Tensor"]
