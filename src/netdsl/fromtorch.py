"""Import: a built ``nn.Module`` -> the text of a ``.net`` spec that builds the same module.

Three steps. *Describe* walks the module tree into nodes (netdsl.fromtorch_nodes):
``nn.Sequential`` / ``nn.ModuleList`` / ``nn.ModuleDict`` stay containers, a layer of the
language is its constructor call (netdsl.fromtorch_layers), and every other module is an
instance of a block, with its children, its own tensors and its forward traced by ``torch.fx``
in training and in eval mode (netdsl.fromtorch_modes, netdsl.fromtorch_forward). *Group*
gathers the instances of one class that have the same structure into one block; the values in
which they differ (channel counts, strides, ...) become the block's parameters. *Write*
(netdsl.fromtorch_write) prints the model, then the blocks.

Nothing is evaluated: the spec is written from the module's attributes and its fx graph.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence

from torch import nn

from .api import check_shapes
from .containers import attributes
from .errors import UsageTypeError, UsageValueError
from .fmt import format_text
from .fromtorch_forward import render
from .fromtorch_layers import (
    ImportFailure,
    is_name,
    is_torch_nn,
    literal,
    recover,
    registry_class,
)
from .fromtorch_modes import trace_modes
from .fromtorch_nodes import Block, Container, Instance, Layer, Node, Param, Tensor
from .fromtorch_write import declaration
from .ops import DTYPES
from .registry import Registry

_TYPES = {bool: "bool", int: "int", float: "float", str: "str", tuple: "tuple", list: "list"}


def from_module(module: nn.Module, *, name: str | None = None,
                inputs: Sequence[Sequence[int | str]] | None = None) -> str:
    """The text of a ``.net`` spec whose model builds ``module`` again: the same module tree,
    ``state_dict`` keys and forward (``netdsl.loads(text)`` then loads its ``state_dict``).
    ``inputs`` (``[("N", 3, 224, 224)]``, one shape per tensor argument of the forward, in
    order) become the model's ``input`` declarations, so that ``netdsl check`` checks its
    shapes too."""
    if not isinstance(module, nn.Module):
        raise UsageTypeError(f"from_module() takes an nn.Module, got {type(module).__name__}")
    if name is not None and not (isinstance(name, str) and is_name(name)):
        raise UsageTypeError(f"from_module() name= takes a name (letters, digits and _, "
                             f"starting with a letter), got {name!r}")
    _refuse_shared_modules(module)
    root = _describe(module, "")
    if not isinstance(root, Instance):
        raise ImportFailure(f"{_qualified(type(module))} is a layer or a container, not a "
                            f"model: import a module of your own class that holds it")
    model_name = name or _block_base(type(module))
    blocks = _group(root, model_name)
    declared = _input_lines(root.forward.arguments, inputs)
    parts = [f"# Imported from {_qualified(type(module))} by netdsl import.",
             declaration("model", model_name, (), root, blocks, _ties(module), declared)]
    parts += [declaration("block", block.name, block.params, block.instances[0], blocks)
              for block in blocks.values()]
    # netdsl fmt's layout (long lines wrapped at 100 columns), as a person would commit it.
    return format_text("\n\n".join(parts) + "\n")


def _input_lines(arguments: Sequence[str], inputs: Sequence[Sequence[int | str]] | None
                 ) -> list[str]:
    if inputs is None:
        return []
    check_shapes(inputs, "from_module() inputs")
    if len(inputs) > len(arguments):
        raise UsageValueError(f"from_module() inputs: {len(inputs)} shapes for a forward of "
                              f"{len(arguments)} argument(s) ({', '.join(arguments)})")
    return [f"input {argument}: [{', '.join(str(size) for size in shape)}]"
            for argument, shape in zip(arguments, inputs, strict=False)]


# ---------------------------------------------------------------- describe


def _describe(module: nn.Module, path: str) -> Node:
    name = registry_class(module)
    if name is not None:
        try:
            return Layer(recover(module, name, path or "the model"))
        except ImportFailure:
            if is_torch_nn(module) or not _structured(module):
                raise
            # A torchvision layer that keeps no arguments (Conv2dNormActivation, an
            # nn.Sequential) is written as what it is made of.
    kind = _container_kind(module)
    if kind is not None:
        container = Container(kind, _where(module, path), tuple(
            (key, _describe(child, _join(path, key))) for key, child in module.named_children()))
        return container
    if is_torch_nn(module):
        raise ImportFailure(f"{_where(module, path)}: not a layer of the language "
                            f"(docs/language.md §6 says which classes are)")
    return _instance(module, path)


def _structured(module: nn.Module) -> bool:
    return _container_kind(module) is not None or type(module).forward is not nn.Module.forward


def _container_kind(module: nn.Module) -> str | None:
    """sequential, list or dict for the containers, and for subclasses that keep their forward
    (torchvision's Conv2dNormActivation is an nn.Sequential)."""
    for cls, kind in ((nn.Sequential, "sequential"), (nn.ModuleList, "list"),
                      (nn.ModuleDict, "dict")):
        if isinstance(module, cls) and type(module).forward is cls.forward:
            return kind
    return None


def _instance(module: nn.Module, path: str) -> Instance:
    where = _where(module, path)
    children = tuple((key, _describe(child, _join(path, key)))
                     for key, child in module.named_children())
    for key, _ in children:
        _check_child(key, where)
    tensors = _tensors(module, where)
    nodes = dict(children)
    graph, modes = trace_modes(module, where)
    forward = render(graph, modes, where, lambda target: _stage(target, nodes, where),
                     [t.name for t in tensors], nodes)
    return Instance(type(module), tensors, children, forward)


def _tensors(module: nn.Module, where: str) -> tuple[Tensor, ...]:
    found = [Tensor("param", key, tuple(p.shape), p.dtype, p.requires_grad)
             for key, p in module._parameters.items() if p is not None]
    for key, b in module._buffers.items():
        if b is None:
            continue
        if key in module._non_persistent_buffers_set:
            raise ImportFailure(f"{where}: buffer '{key}' is not in the state_dict, so its "
                                f"values cannot be carried over")
        found.append(Tensor("buffer", key, tuple(b.shape), b.dtype, False))
    for tensor in found:
        _check_child(tensor.name, where)
        if str(tensor.dtype).removeprefix("torch.") not in DTYPES:
            raise ImportFailure(f"{where}: tensor '{tensor.name}' has dtype {tensor.dtype}, "
                                f"which a spec cannot write")
    return tuple(found)


def _stage(target: str, children: dict[str, Node], where: str) -> str:
    """A submodule path of the fx graph as a forward spells it: ``features.0`` ->
    ``features[0]``, ``heads.relu`` -> ``heads["relu"]``."""
    first, *rest = target.split(".")
    text, node = first, children[first]
    for key in rest:
        if not isinstance(node, Container):
            raise ImportFailure(f"{where}: the forward calls '{target}', a module inside its "
                                f"child '{first}'; a forward calls its own children, and the "
                                f"items of sequential, list and dict children")
        keys = [k for k, _ in node.items]
        text += f"[{literal(key)}]" if node.kind == "dict" else f"[{keys.index(key)}]"
        node = dict(node.items)[key]
    return text


def _refuse_shared_modules(module: nn.Module) -> None:
    """A module held at two places is one module; a spec builds each child of its own."""
    seen: dict[int, str] = {}
    for path, sub in module.named_modules(remove_duplicate=False):
        if id(sub) in seen:
            raise ImportFailure(f"{_where(sub, path)}: the same module as "
                                f"'{seen[id(sub)] or 'the model'}'; a spec builds each child "
                                f"of its own (share its parameters with tie instead)")
        seen[id(sub)] = path


def _ties(module: nn.Module) -> list[str]:
    """``tie`` lines for parameters held at several places (nanoGPT's lm_head.weight): the
    first place holds it, the others are tied to it."""
    first: dict[int, str] = {}
    ties = []
    for path, param in module.named_parameters(remove_duplicate=False):
        if id(param) in first:
            source = first[id(param)]
            if not all(is_name(part) for part in f"{path}.{source}".split(".")):
                raise ImportFailure(f"parameter '{path}' is '{source}'; a tie names the modules "
                                    f"on its path by name, not by position")
            ties.append(f"tie {path} = {source}")
        else:
            first[id(param)] = path
    return ties


# ---------------------------------------------------------------- group


def _group(root: Instance, model_name: str) -> dict[Hashable, Block]:
    """Every instance below the root, in its block (first seen first)."""
    blocks: dict[Hashable, Block] = {}
    layers = set(Registry().names())
    taken = {model_name, *layers}
    for instance in _instances(root):
        block = blocks.get(instance.key)
        if block is None:
            base = _block_base(instance.cls)
            # A block named like a layer would hide that layer from the whole spec.
            base = f"{base}Block" if base in layers else base
            blocks[instance.key] = block = Block(_fresh(base, taken), [])
        block.instances.append(instance)
    for block in blocks.values():
        block.params = _params(block.instances)
    return blocks


def _instances(node: Node) -> Iterator[Instance]:
    """The instances inside a node, outermost first."""
    for _, child in (node.children if isinstance(node, Instance) else
                     node.items if isinstance(node, Container) else ()):
        if isinstance(child, Instance):
            yield child
        yield from _instances(child)


def _params(instances: Sequence[Instance]) -> tuple[Param, ...]:
    """The slots whose values differ between instances; slots equal in every instance are one
    parameter (a block's width, passed to each of its layers)."""
    columns: dict[tuple[tuple[str, str], ...], list[int]] = {}
    first = instances[0]
    for i in range(len(first.slots)):
        column = tuple(inst.slots[i].same for inst in instances)
        if len(set(column)) > 1:
            columns.setdefault(column, []).append(i)
    taken = set(first.forward.names) | {name for name, _ in first.children} | \
        {t.name for t in first.tensors}
    params = []
    for slots in columns.values():
        labels = [first.slots[i] for i in slots]
        slot = next((s for s in labels if s.argument), labels[0])
        # Named for the argument, or where a name is taken for its layer too: expand1x1's
        # out_channels (squeeze's is the parameter out_channels). A size or a number of the
        # forward belongs to no layer: value, value2 (a leading _ would never be a name).
        name = _fresh(slot.label if slot.label not in taken or not slot.child
                      else f"{slot.child}_{slot.label}", taken)
        params.append(Param(name, _TYPES[type(first.slots[slots[0]].value)], tuple(slots)))
    return tuple(params)


# ---------------------------------------------------------------- names


def _check_child(key: str, where: str) -> None:
    if not is_name(key) or key in attributes(nn.Module):
        raise ImportFailure(f"{where}: child '{key}' cannot be written in a spec (a child's "
                            f"name is a name, not an nn.Module attribute)")


def _fresh(label: str, taken: set[str]) -> str:
    name, count = label, 1
    while not is_name(name) or name in taken:
        count += 1
        name = f"{label}{count}"
    taken.add(name)
    return name


def _block_base(cls: type[nn.Module]) -> str:
    base = cls.__name__.lstrip("_")
    return base if is_name(base) else "Block"


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _where(module: nn.Module, path: str) -> str:
    return f"{path or 'the model'} ({_qualified(type(module))})"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


__all__ = ["ImportFailure", "from_module"]
