"""Import, the text: the model and blocks netdsl.fromtorch found -> their declarations.

A declaration writes one instance of its block, each value the instance was built with as a
literal or, where the block's instances differ in it, as the block's parameter.
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .fromtorch_layers import LayerCall, is_name, literal
from .fromtorch_nodes import Block, Container, Instance, Layer, Node, Param, Tensor

INDENT = "    "
# Consecutive identical items of a sequential or list written as one repeat (Item for i in ...).
MIN_REPEAT = 3


@dataclass(frozen=True)
class _Values:
    """How a declaration writes the slots of its instance: each a constant or a parameter."""

    instance: Instance
    params: dict[int, str]

    def text(self, i: int) -> str:
        return self.params.get(i) or literal(self.instance.slots[i].value)

    def default(self, i: int, default: Any) -> bool:
        """Whether slot ``i`` is a constant equal to ``default`` (so it is left out)."""
        value = self.instance.slots[i].value
        return i not in self.params and default is not _EMPTY and \
            (type(value), literal(value)) == (type(default), literal(default))


_EMPTY = object()


def declaration(kind: str, name: str, params: Sequence[Param], instance: Instance,
                blocks: dict[Hashable, Block], ties: Sequence[str] = (),
                inputs: Sequence[str] = ()) -> str:
    """``model`` or ``block`` ``name``, written from one of its instances; ``blocks`` gives the
    block of every instance inside it, ``ties`` the model's tie lines, ``inputs`` its input
    declarations."""
    values = _Values(instance, {i: p.name for p in params for i in p.slots})
    signature = "(" + ", ".join(f"{p.name}: {p.type}" for p in params) + ")" if params else ""
    lines = [*inputs, *(_tensor_line(t, values, i) for t, i in _tensor_offsets(instance))]
    offset = len([d for t in instance.tensors for d in t.shape])
    for child_name, child in instance.children:
        text = _module(child, offset, values, blocks, INDENT)
        lines.append(f"{child_name} = {text}")
        offset += len(child.slots)
    lines += ties
    lines += instance.forward.written(lambda k: values.text(offset + k)).split("\n")
    body = "\n".join(INDENT + line for line in lines)
    return f"{kind} {name}{signature} {{\n{body}\n}}"


def _tensor_offsets(instance: Instance) -> Iterator[tuple[Tensor, int]]:
    offset = 0
    for tensor in instance.tensors:
        yield tensor, offset
        offset += len(tensor.shape)


def _tensor_line(tensor: Tensor, values: _Values, offset: int) -> str:
    dims = [values.text(offset + d) for d in range(len(tensor.shape))]
    dtype = str(tensor.dtype).removeprefix("torch.")
    args = ", ".join(dims + ([f"dtype={dtype}"] if tensor.dtype != torch.float32 else []))
    options = "(requires_grad=false)" if tensor.kind == "param" and not tensor.requires_grad \
        else ""
    # Zeros: the values come with the state_dict (load_state_dict), as torchvision's weights do.
    return f"{tensor.kind}{options} {tensor.name} = zeros({args})"


def _module(node: Node, offset: int, values: _Values, blocks: dict[Hashable, Block],
            indent: str) -> str:
    if isinstance(node, Layer):
        return _layer(node.call, offset, values)
    if isinstance(node, Instance):
        block = blocks[node.key]
        args = ", ".join(values.text(offset + p.slots[0]) for p in block.params)
        return f"{block.name}({args})"
    return _container(node, offset, values, blocks, indent)


def _layer(call: LayerCall, offset: int, values: _Values) -> str:
    args: list[str] = []
    positional = True
    for param, value in zip(call.params, call.values, strict=True):
        default = _EMPTY if param.default is inspect.Parameter.empty else param.default
        if isinstance(value, LayerCall):  # a module argument: its nested call, never a default
            text = _layer(value, offset, values)
            offset += len(Layer(value).slots)
        elif values.default(offset, default):
            offset += 1
            continue
        else:
            text = values.text(offset)
            offset += 1
        if default is _EMPTY and positional and param.kind != param.KEYWORD_ONLY:
            args.append(text)
        else:
            positional = False
            args.append(f"{param.name}={text}")
    return f"{call.name}({', '.join(args)})"


def _container(node: Container, offset: int, values: _Values, blocks: dict[Hashable, Block],
               indent: str) -> str:
    items = []
    for key, item in node.items:
        text = _module(item, offset, values, blocks, indent + INDENT)
        offset += len(item.slots)
        items.append(text if node.kind == "list" or (node.kind == "sequential" and node.numbered)
                     else f"{_key(key, node)}: {text}")
    if node.kind != "dict" and (node.kind == "list" or node.numbered):
        items = list(_repeats(items))
    if not items:
        return "sequential {}" if node.kind == "sequential" else \
            "list []" if node.kind == "list" else "dict {}"
    open_, close = ("[", "]") if node.kind == "list" else ("{", "}")
    inner = "\n".join(indent + INDENT + item for item in items)
    return f"{node.kind} {open_}\n{inner}\n{indent}{close}"


def _repeats(items: Sequence[str]) -> Iterator[str]:
    """Runs of one item, written once as a repeat: each iteration builds a module of its own."""
    i = 0
    while i < len(items):
        j = i
        while j < len(items) and items[j] == items[i]:
            j += 1
        if j - i >= MIN_REPEAT and "\n" not in items[i]:
            yield f"{items[i]} for i in range({j - i})"
        else:
            yield from items[i:j]
        i = j


def _key(key: str, node: Container) -> str:
    return key if is_name(key) else literal(key)


__all__ = ["declaration"]
