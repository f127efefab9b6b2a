"""spec -> ``netdsl export`` -> ``netdsl import`` -> spec: which specs come back, as a property.

An ``nn.Module`` holds its tree, its layers' arguments and its forward, not the text it was
written from, so only a spec in *import's normal form* can come back whole. The strategy below
generates such specs, and the property is that importing the exported class gives the spec
back, byte for byte after ``netdsl fmt``, with the same ``state_dict`` as ``netdsl.load`` (built
after the same seed) and the same outputs. The normal form, and why a spec outside it does not
come back (each a fact the module does not record):

* a ``model`` of children: layers, ``sequential`` (numbered or named), ``list`` and ``dict``
  containers and block instances, with no comments, ``input`` declarations, lets, ifs, loops,
  asserts or ``init`` rules: the module holds what they built, not them;
* layer calls with every argument explicit (``Conv2d(8, 16, 3)``, not ``Conv2d(16, 3)`` with
  its input channels inferred), required ones positional, the others by keyword, and only where
  they differ from the default, as the layer keeps them: ``MaxPool2d(2)`` for
  ``MaxPool2d(2, stride=2)`` (the pool keeps its stride, not whether it was given), floats as
  Python's ``repr`` (``1e-06``), ``3`` for ``(3, 3)`` where the constructor takes an int;
* three or more equal items of a numbered ``sequential`` or a ``list`` in a row as one repeat
  (``Unit(8) for i in range(3)``): the container holds the items, not how they were written;
* a block's own tensors as ``param gain = zeros(...)`` (the values come with the state_dict);
* a block's parameters are the values its instances differ in (ints, floats, bools), one per
  group of values equal in every instance, in import's order (the sizes of the block's tensors,
  then its children's arguments), named after the first layer argument that takes them
  (``in_channels``, or ``conv_in_channels`` where that name is taken): a class built as
  ``Unit(8)`` twice holds an 8, not that it came from a parameter, and an exported class's
  constructor names are not kept by the modules it builds;
* blocks in the order the model first uses them; forwards as pipelines through the children
  and functions (``flatten(1)``), a residual add from the input written ``conv_out + x``, its
  variable named as ``torch.fx`` names the value (``conv_out`` for the child ``conv``,
  ``blocks_0`` for ``blocks[0]``, ``gelu_1`` for the second ``gelu``): fx keeps values, not
  the names they had.

The bundled examples are outside the normal form (comments, inferred arguments, lets, init
rules); for them the round trip's other half holds instead: export -> import -> export is a
fixed point, and the imported spec carries the original's weights and outputs.
"""

from __future__ import annotations

import inspect
import itertools
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import same_state, seeded
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_export import CASES, _case_id, exported_module, inputs, model_class
from torch import nn

import netdsl
from netdsl.fmt import format_text
from netdsl.fromtorch import ImportFailure, from_module

ROOT = Path(__file__).resolve().parents[1]
_FILES = itertools.count()


# ---------------------------------------------------------------- what a spec is made of


@dataclass(frozen=True)
class Sym:
    """A block template's parameter ``index``, where a layer argument takes it."""

    index: int


Arg = Any  # a literal value (int, float, bool, str, tuple) or a Sym


@dataclass(frozen=True)
class Call:
    """A layer call in normal form: required arguments positional, the others by keyword."""

    name: str
    args: tuple[Arg, ...]
    kwargs: tuple[tuple[str, Arg], ...] = ()

    def text(self, value: Callable[[Arg], str]) -> str:
        parts = [value(a) for a in self.args] + [f"{k}={value(v)}" for k, v in self.kwargs]
        return f"{self.name}({', '.join(parts)})"

    def symbols(self) -> Iterator[tuple[int, str, Sym]]:
        """The template parameters it takes: (position in the signature, argument, Sym)."""
        names = list(inspect.signature(getattr(nn, self.name)).parameters)
        given = [*zip(names, self.args, strict=False), *self.kwargs]
        for name, value in sorted(given, key=lambda item: names.index(item[0])):
            if isinstance(value, Sym):
                yield names.index(name), name, value


def literal(value: Arg) -> str:
    """A value as ``netdsl import`` writes it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "(" + ", ".join(literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


@dataclass
class Template:
    """A block, with the template parameters its layers and its tensor take: 0 the input's
    width, 1 the output's (where the first layer changes it), 2 a float (a dropout's p, ...),
    3 a bool (a bias); each instance gives the four values."""

    name: str
    family: str
    children: list[tuple[str, Call]]
    residual: int  # the children the residual add goes around, from the first (0: none)
    changes: bool  # whether its first layer changes the width (a second parameter, the output's)
    tensor: tuple[str, tuple[Arg, ...]] | None  # a param of its own, multiplying the output
    scaled: bool  # whether the forward multiplies the output by the float too (a number of it)
    instances: list[tuple[int, int, float, bool]] = field(default_factory=list)

    def forward(self, number: str = "0") -> str:
        """Its forward, in import's spelling: a pipeline through the children, maybe with a
        residual add, times the block's tensor and ``number`` (the float's text)."""
        names = [name for name, _ in self.children]
        factors = ([self.tensor[0]] if self.tensor else []) + [number] * self.scaled
        if not factors:
            return pipeline([(name, name) for name in names], self.residual, set(names))
        # The residual branch (or the whole pipeline) times them: a variable of its own.
        last = names[(self.residual or len(names)) - 1]
        inner = " -> ".join(["x", *names[:self.residual or len(names)]])
        rest = "".join(f" -> {name}" for name in names[self.residual:]) if self.residual else ""
        value = " * ".join([f"{last}_out", *factors]) + (" + x" if self.residual else "")
        return f"forward(x) {{\n    {last}_out = {inner}\n    return {value}{rest}\n}}"


@dataclass(frozen=True)
class Instance:
    template: Template
    values: tuple[int, int, float, bool]


@dataclass(frozen=True)
class Container:
    kind: str  # sequential, list or dict
    items: tuple[tuple[str | None, Node], ...]  # keys: None in a numbered sequential or a list
    called: tuple[str, ...] = ()  # a dict's keys the forward calls, in order


@dataclass(frozen=True)
class Function:
    """A function stage of the model's forward (``-> flatten(1)``), between its children."""

    text: str
    name: str  # the fx node's


Node = Call | Instance | Container


# ---------------------------------------------------------------- writing the normal form


@dataclass(frozen=True)
class Signature:
    """A block's parameters: the groups of template parameters equal in every instance."""

    names: tuple[str, ...]
    groups: tuple[tuple[int, ...], ...]  # template parameters of each, in the block's order
    constant: dict[int, Arg]  # template parameters equal in every instance, and their value


def signature(template: Template, forward: str) -> Signature:
    """The block's parameters as import finds them in its instances (the module docs)."""
    # Where each parameter is used, in the order of import's slots: the tensor's dims first.
    uses = [(-1, position, f"{template.tensor[0]}_size", sym.index)
            for position, sym in enumerate(template.tensor[1] if template.tensor else ())
            if isinstance(sym, Sym)]
    uses += [(child, position, label, sym.index)
             for child, (_, call) in enumerate(template.children)
             for position, label, sym in call.symbols()]
    outside = len(template.children)  # the forward's number: after the children's arguments
    uses += [(outside, 0, "value", 2)] * template.scaled
    columns: dict[tuple[tuple[type, Arg], ...], list[int]] = {}
    constant = {}
    for k in sorted({use[3] for use in uses}):
        # Typed: 1.0 and True, 0.0 and False are different values of different parameters.
        column = tuple((type(values[k]), values[k]) for values in template.instances)
        if len(set(column)) == 1:
            constant[k] = column[0][1]
        else:
            columns.setdefault(column, []).append(k)
    taken = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", forward)) | \
        {name for name, _ in template.children}
    names, groups = [], []
    for group in sorted(columns.values(), key=lambda g: min(u[:2] for u in uses if u[3] in g)):
        # Named after its first use as a layer argument, else after the tensor's size or the
        # forward's value; only a layer's argument takes the layer's name where it is taken.
        child, _, label, _ = min(uses, key=lambda u: (u[3] not in group,
                                                      not 0 <= u[0] < outside, u[:2]))
        base = label if label not in taken or not 0 <= child < outside else \
            f"{template.children[child][0]}_{label}"
        name, number = base, 1
        while name in taken:
            number += 1
            name = f"{base}{number}"
        taken.add(name)
        names.append(name)
        groups.append(tuple(group))
    return Signature(tuple(names), tuple(groups), constant)


def pipeline(stages: Sequence[tuple[str, str]], residual: int, taken: set[str]) -> str:
    """``forward(x) = x -> a -> b`` through the stages (text, fx target); with a residual add
    around the first ``residual`` of them, the variable named as fx and import name it."""
    if not residual:
        return "forward(x) = " + " -> ".join(["x", *(text for text, _ in stages)])
    base = re.sub(r"\W", "_", stages[residual - 1][1])  # fx's node names are identifiers
    repeated = sum(target == stages[residual - 1][1] for _, target in stages[:residual - 1])
    base = f"{base}_{repeated}" if repeated else base  # fx's name for the k-th gelu: gelu_k
    variable = f"{base}_out" if base in taken else base
    inner = " -> ".join(["x", *(text for text, _ in stages[:residual])])
    rest = "".join(f" -> {text}" for text, _ in stages[residual:])
    return f"forward(x) {{\n    {variable} = {inner}\n    return {variable} + x{rest}\n}}"


def block_text(template: Template) -> str:
    sig = signature(template, template.forward())
    by_param = {k: name for name, group in zip(sig.names, sig.groups, strict=True)
                for k in group}

    def value(arg: Arg) -> Arg:
        return sig.constant.get(arg.index, arg) if isinstance(arg, Sym) else arg

    def text(arg: Arg) -> str:
        return by_param[arg.index] if isinstance(arg, Sym) else literal(arg)

    types = {int: "int", float: "float", bool: "bool"}
    params = "(" + ", ".join(f"{name}: {types[type(template.instances[0][group[0]])]}"
                             for name, group in zip(sig.names, sig.groups, strict=True)) + ")" \
        if sig.names else ""
    lines = [f"param {template.tensor[0]} = zeros("
             f"{', '.join(text(value(d)) for d in template.tensor[1])})"] if template.tensor else []
    lines += [f"{name} = {without_defaults(call, value).text(text)}"
              for name, call in template.children]
    lines += template.forward(text(value(Sym(2))) if template.scaled else "").split("\n")
    return f"block {template.name}{params} {{\n" + "".join(f"    {line}\n" for line in lines) + "}"


def without_defaults(call: Call, value: Callable[[Arg], Arg]) -> Call:
    """The call with ``value`` given to its arguments, less the keywords it leaves at their
    defaults (a block's parameter equal in every instance is a literal like any other)."""
    defaults = {name: p.default for name, p in
                inspect.signature(getattr(nn, call.name)).parameters.items()}
    kwargs = tuple((k, value(v)) for k, v in call.kwargs
                   if (type(value(v)), value(v)) != (type(defaults[k]), defaults[k]))
    return Call(call.name, tuple(value(a) for a in call.args), kwargs)


def instance_text(instance: Instance) -> str:
    template = instance.template
    sig = signature(template, template.forward())
    args = ", ".join(literal(instance.values[group[0]]) for group in sig.groups)
    return f"{template.name}({args})"


def node_text(node: Node, indent: str) -> str:
    if isinstance(node, Call):
        return node.text(literal)
    if isinstance(node, Instance):
        return instance_text(node)
    inner = indent + "    "
    items = [node_text(item, inner) if key is None else
             f"{key if key.isidentifier() else literal(key)}: {node_text(item, inner)}"
             for key, item in node.items]
    if node.kind != "dict" and node.items[0][0] is None:
        items = list(repeats(items))
    open_, close = ("[", "]") if node.kind == "list" else ("{", "}")
    return f"{node.kind} {open_}\n" + "".join(f"{inner}{item}\n" for item in items) + \
        f"{indent}{close}"


def repeats(items: Sequence[str]) -> Iterator[str]:
    """Runs of three or more equal one-line items, as one repeat."""
    for text, run in itertools.groupby(items):
        count = len(list(run))
        if count >= 3 and "\n" not in text:
            yield f"{text} for i in range({count})"
        else:
            yield from [text] * count


def stages(name: str, node: Node | Function) -> list[tuple[str, str]]:
    """How the model's forward calls a child: the child, each item of a list, the called keys
    of a dict; with the fx target of each call."""
    if isinstance(node, Container) and node.kind == "list":
        return [(f"{name}[{i}]", f"{name}.{i}") for i in range(len(node.items))]
    if isinstance(node, Container) and node.kind == "dict":
        return [(f'{name}["{key}"]', f"{name}.{key}") for key in node.called]
    if isinstance(node, Function):
        return [(node.text, node.name)]
    return [(name, name)]


@dataclass(frozen=True)
class Spec:
    children: tuple[tuple[str, Node | Function], ...]  # a Function's name is ""
    residual: int  # the forward's stages the residual add goes around (0: none)
    templates: tuple[Template, ...]  # in the order the model first uses them
    family: str
    shape: tuple[int, ...]  # the input's, without the batch

    def text(self) -> str:
        lines = [f"{name} = {node_text(node, '    ')}" for name, node in self.children
                 if not isinstance(node, Function)]
        called = [s for name, node in self.children for s in stages(name, node)]
        # Import names no variable after a child or a function of the language.
        taken = {name for name, _ in self.children} | {"flatten", "gelu"}
        lines += pipeline(called, self.residual, taken).split("\n")
        model = "model Net {\n" + "".join(f"    {line}\n" for line in lines) + "}"
        return format_text("\n\n".join([model, *(block_text(t) for t in self.templates)]) + "\n")

    def inputs(self) -> torch.Tensor:
        if self.family == "tokens":
            return torch.randint(0, 10, (2, *self.shape))
        return torch.randn(2, *self.shape)


# ---------------------------------------------------------------- the strategy

# A state is the family of the tensor (img N,C,H,W; seq N,C,L; vec ..., F) and its dims.
State = tuple[str, tuple[int, ...]]
WIDTHS = st.sampled_from([2, 3, 4, 6, 8])
ACTIVATIONS = [Call("ReLU", ()), Call("ReLU", (), (("inplace", True),)), Call("GELU", ()),
               Call("GELU", (), (("approximate", "tanh"),)), Call("SiLU", ()), Call("Tanh", ()),
               Call("Sigmoid", ()), Call("LeakyReLU", (), (("negative_slope", 0.2),)),
               Call("ELU", (), (("alpha", 0.5),)), Call("ELU", (), (("alpha", 2),)),
               Call("Hardswish", ()), Call("Identity", ()), Call("Softmax", (), (("dim", 1),))]
NAMES = ["stem", "conv", "norm", "act", "drop", "pool", "proj", "mix", "head", "body", "gate",
         "lin", "fc", "layer1", "layer2", "features", "classifier", "blocks", "heads", "emb"]
# The layers a block's float parameter is an argument of.
RATES = {"Dropout": "p", "LeakyReLU": "negative_slope", "ELU": "alpha"}
# A block instance's values: its input width (from the tensor it takes), then these.
TAILS = st.tuples(WIDTHS, st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.booleans())
KEYS = ["conv", "norm", "act", "drop", "pool", "proj", "fc", "gate", "a", "b"]
# A dict's keys may be strings that are not names.
DICT_KEYS = [*KEYS, "3x3", "block-1"]


def channels(state: State) -> int:
    """The width a layer or block takes: the channels, or a vector's last dimension."""
    family, dims = state
    return dims[-1] if family == "vec" else dims[0]


@st.composite
def norm_options(draw: st.DrawFn) -> tuple[tuple[str, Arg], ...]:
    """A batch norm's keywords, those not at their defaults."""
    defaults = {"eps": 1e-05, "momentum": 0.1, "affine": True, "track_running_stats": True}
    options = [("eps", draw(st.sampled_from([1e-05, 0.001, 1e-06]))),
               ("momentum", draw(st.sampled_from([0.1, 0.01, None]))),
               ("affine", draw(st.sampled_from([True, True, False]))),
               ("track_running_stats", draw(st.sampled_from([True, True, False])))]
    return tuple((k, v) for k, v in options if v != defaults[k])


@st.composite
def keeping(draw: st.DrawFn, family: str, width: Arg) -> Call:
    """A layer that keeps a tensor of this family and width as it is."""
    kinds = ["act", "act", "drop", "norm", "mix"]
    kind = draw(st.sampled_from(kinds))
    if kind == "act":
        return draw(st.sampled_from(ACTIVATIONS))
    if kind == "drop":
        p = draw(st.sampled_from([0.5, 0.25, 0.0]))
        return Call("Dropout", (), (("p", p),) if p != 0.5 else ())
    if family == "vec":
        if kind == "norm":
            eps = draw(st.sampled_from([1e-05, 1e-06]))
            options = (("eps", eps),) if eps != 1e-05 else ()
            affine = draw(st.sampled_from([(), (), (("elementwise_affine", False),),
                                           (("bias", False),)]))
            return Call("LayerNorm", (width,), options + affine)
        return Call("Linear", (width, width), (("bias", False),) if draw(st.booleans()) else ())
    dim = "2d" if family == "img" else "1d"
    if kind == "norm":
        return Call(f"BatchNorm{dim}", (width,), draw(norm_options()))
    kernel = draw(st.sampled_from([1, 3]))
    options = (("padding", 1),) if kernel == 3 else ()
    if draw(st.booleans()):
        options += (("groups", width),)
    if draw(st.booleans()):
        options += (("bias", False),)
    return Call(f"Conv{dim}", (width, width, kernel), options)


def widening(family: str, width: Arg, out: Arg, biased: bool) -> Call:
    """The layer that takes a block from its input width to its output width; its bias maybe
    a (bool) parameter of the block."""
    bias = (("bias", Sym(3)),) if biased else ()
    if family == "vec":
        return Call("Linear", (width, out), bias)
    return Call("Conv2d" if family == "img" else "Conv1d", (width, out, 3),
                (("padding", 1), *bias))


@st.composite
def templates(draw: st.DrawFn, family: str, name: str) -> Template:
    """A block that keeps its width (maybe around a residual add) or changes it."""
    changes = draw(st.booleans())
    first = [widening(family, Sym(0), Sym(1), draw(st.booleans()))] if changes else []
    width = Sym(1) if changes else Sym(0)
    calls = first + [draw(keeping(family, width)) for _ in range(draw(st.integers(1, 3)))]
    if draw(st.booleans()):  # a float parameter
        rated = draw(st.sampled_from(sorted(RATES)))
        calls.insert(draw(st.integers(0, len(calls))), Call(rated, (), ((RATES[rated], Sym(2)),)))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=len(calls), max_size=len(calls),
                          unique=True))
    residual = 0 if changes else draw(st.integers(0, len(calls)))
    ones = {"img": (1, 1), "seq": (1,), "vec": ()}[family]
    tensor = (draw(st.sampled_from(["gain", "scale"])), (width, *ones)) \
        if draw(st.booleans()) else None
    return Template(name, family, list(zip(names, calls, strict=True)), residual, changes,
                    tensor, draw(st.booleans()))


@dataclass
class Blocks:
    """The templates a spec has made so far, in the order it first used them."""

    made: list[Template] = field(default_factory=list)

    def instance(self, template: Template, state: State,
                 tail: tuple[int, float, bool]) -> tuple[Instance, State]:
        """An instance taking a tensor in this state, given (out, rate, bias), and the state
        after it."""
        out = tail[0] if template.changes else channels(state)
        values = (channels(state), out, *tail[1:])
        template.instances.append(values)
        family, dims = state
        dims = (*dims[:-1], out) if family == "vec" else (out, *dims[1:])
        return Instance(template, values), (family, dims)


@st.composite
def block_instance(draw: st.DrawFn, state: State, blocks: Blocks) -> tuple[Node, State]:
    """An instance of a block made for this family of tensors (or a new block, up to two)."""
    family = state[0]
    fitting = [t for t in blocks.made if t.family == family]
    if len(blocks.made) < 2 and (not fitting or draw(st.booleans())):
        template = draw(templates(family, ["Unit", "Cell"][len(blocks.made)]))
        blocks.made.append(template)
    elif fitting:
        template = draw(st.sampled_from(fitting))
    else:  # two blocks already, of other families
        return draw(layer(state))
    return blocks.instance(template, state, draw(TAILS))


@st.composite
def layer(draw: st.DrawFn, state: State) -> tuple[Call, State]:
    """A layer of the model with explicit arguments, and the state after it."""
    family, dims = state
    kind = draw(st.sampled_from(["keep", "keep", "change", "pool", "flatten"]))
    if kind == "keep" or (kind == "flatten" and dims == (dims[-1],)):
        return draw(keeping(family, channels(state))), state
    if kind == "flatten":
        return Call("Flatten", ()), ("vec", (int(torch.Size(dims).numel()),))
    if family == "vec":
        out = draw(WIDTHS)
        bias = (("bias", False),) if draw(st.booleans()) else ()
        return Call("Linear", (dims[-1], out), bias), ("vec", (*dims[:-1], out))
    dim = "2d" if family == "img" else "1d"
    size = dims[1]
    if kind == "pool":
        return draw(pool(dim, size, dims))
    out, kernel = draw(WIDTHS), draw(st.integers(1, min(3, size)))
    if draw(st.integers(0, 3)) == 0:  # sizes kept: padding="same", or a (1, 3) kernel
        if dim == "2d" and draw(st.booleans()):
            return Call("Conv2d", (dims[0], out, (1, 3)), (("padding", (0, 1)),)), \
                (family, (out, *dims[1:]))
        return Call(f"Conv{dim}", (dims[0], out, kernel), (("padding", "same"),)), \
            (family, (out, *dims[1:]))
    stride = draw(st.sampled_from([1, 1, 2]))
    padding = draw(st.integers(0, kernel // 2))
    options = tuple((k, v) for k, v in (("stride", stride), ("padding", padding)) if v) \
        if stride != 1 else ((("padding", padding),) if padding else ())
    after = (size + 2 * padding - kernel) // stride + 1
    return Call(f"Conv{dim}", (dims[0], out, kernel), options), \
        (family, (out, *[after] * (len(dims) - 1)))


@st.composite
def pool(draw: st.DrawFn, dim: str, size: int, dims: tuple[int, ...]) -> tuple[Call, State]:
    family = "img" if dim == "2d" else "seq"
    if draw(st.booleans()) or size < 2:
        out = draw(st.sampled_from([1, 2] if size >= 2 else [1]))
        # (1, 1), as torchvision writes it, stays a tuple: the pool keeps what it was given.
        given = (out, out) if dim == "2d" and draw(st.booleans()) else out
        return Call(f"AdaptiveAvgPool{dim}", (given,)), \
            (family, (dims[0], *[out] * (len(dims) - 1)))
    kernel = draw(st.integers(2, min(3, size)))
    stride = draw(st.sampled_from([kernel, 1]))
    options = (("stride", stride),) if stride != kernel else ()
    after = (size - kernel) // stride + 1
    kind = draw(st.sampled_from(["MaxPool", "AvgPool"]))
    return Call(f"{kind}{dim}", (kernel,), options), (family, (dims[0], *[after] * (len(dims) - 1)))


@st.composite
def child(draw: st.DrawFn, state: State, blocks: Blocks, depth: int,
          callable_only: bool = False) -> tuple[Node, State]:
    """A child and the state after it: a layer, a block instance, or a container."""
    kinds = ["layer", "layer", "block"] + (["sequential", "run"] if depth else [])
    if depth and not callable_only:
        kinds += ["list", "dict"]
    kind = draw(st.sampled_from(kinds))
    if kind == "layer":
        return draw(layer(state))
    if kind == "block":
        return draw(block_instance(state, blocks))
    if kind == "run":  # instances of one block in a row: its parameters, or a repeat
        first, state = draw(block_instance(state, blocks))
        if not isinstance(first, Instance):
            return first, state
        items: list[tuple[str | None, Node]] = [(None, first)]
        for _ in range(draw(st.integers(1, 3))):
            node, state = blocks.instance(first.template, state, draw(TAILS))
            items.append((None, node))
        kind = "sequential" if callable_only else draw(st.sampled_from(["sequential", "list"]))
        return Container(kind, tuple(items)), state
    if kind == "dict":
        keys = draw(st.lists(st.sampled_from(DICT_KEYS), min_size=1, max_size=3, unique=True))
        items = [(key, draw(keeping(*_keeping_family(state)))) for key in keys]
        called = draw(st.permutations(keys))[:draw(st.integers(1, len(keys)))]
        return Container("dict", tuple(items), tuple(called)), state
    items = []
    named = kind == "sequential" and draw(st.booleans())
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=4, max_size=4, unique=True))
    for i in range(draw(st.integers(1, 4))):
        node, state = draw(child(state, blocks, depth - 1, callable_only=True))
        items.append((keys[i] if named else None, node))
    return Container(kind, tuple(items)), state


def _keeping_family(state: State) -> tuple[str, int]:
    return state[0], channels(state)


def function_stage(state: State) -> tuple[Function, State]:
    """``flatten(1)`` where the tensor has more than one dimension after the batch, else
    ``gelu``."""
    dims = state[1]
    if len(dims) > 1:
        return Function("flatten(1)", "flatten"), ("vec", (int(torch.Size(dims).numel()),))
    return Function("gelu", "gelu"), state


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    family = draw(st.sampled_from(["img", "seq", "vec", "tokens"]))
    shape = {"img": (3, 6, 6), "seq": (3, 8), "vec": (6,), "tokens": (5,)}[family]
    state: State = ("vec", (5, 4)) if family == "tokens" else (family, shape)
    children: list[tuple[str, Node | Function]] = []
    names = draw(st.lists(st.sampled_from(NAMES), min_size=6, max_size=6, unique=True))
    if family == "tokens":
        padding = (("padding_idx", 0),) if draw(st.booleans()) else ()
        children.append((names.pop(), Call("Embedding", (10, 4), padding)))
    blocks = Blocks()
    after = []
    for name in names[:draw(st.integers(1, 5))]:
        if draw(st.integers(0, 3)) == 0:
            function, state = function_stage(state)
            children.append(("", function))
            after.append(state)
        node, state = draw(child(state, blocks, depth=2))
        children.append((name, node))
        after.append(state)
    # A residual add from the input around the first children, where they keep its shape.
    around = [i + 1 for i, s in enumerate(after) if s == (family, shape)
              and all(len(stages(n, c)) == 1 for n, c in children[:i + 1])]
    residual = draw(st.sampled_from([0, *around])) if family != "tokens" else 0
    return Spec(tuple(children), residual, tuple(blocks.made), family, shape)


# ---------------------------------------------------------------- the property


def _exported(spec: Path, directory: Path) -> type[nn.Module]:
    return model_class(exported_module(netdsl.export(spec), directory,
                                       f"roundtrip{next(_FILES)}"))


def _body(text: str) -> str:
    """An imported spec without its first line, which names where it came from."""
    first, _, rest = text.partition("\n\n")
    assert first.startswith("# Imported from ")
    return rest


@settings(max_examples=int(os.environ.get("NETDSL_ROUNDTRIP_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs())
def test_a_spec_in_normal_form_comes_back_through_export_and_import(
        spec: Spec, tmp_path_factory: pytest.TempPathFactory) -> None:
    directory = tmp_path_factory.mktemp("roundtrip")
    text = spec.text()
    path = directory / "spec.net"
    path.write_text(text)
    exported = _exported(path, directory)
    ours, theirs = seeded(lambda: netdsl.load(path)), seeded(exported)
    same_state(ours, theirs)
    assert _body(from_module(theirs)) == text
    ours.eval()
    theirs.eval()
    data = spec.inputs()
    with torch.no_grad():
        assert torch.equal(ours(data), theirs(data))


# ---------------------------------------------------------------- the bundled examples

# Every example, and each zoo file at the builders test_export.py exports (small sizes).
EXAMPLES = [case for case in CASES if "/init/" not in case[0]]
# The examples import cannot take back from their exported class, each with the reason.
REFUSED = {
    # fx traces a forward with tensors for its arguments: a dict indexed by one is not traced.
    "module_dict-": "the model ({module}.ModuleDict): torch.fx cannot trace its forward: "
                   "KeyError: Proxy(choice)",
    # The spec's bn_function(*features) unpacks the list argument, which fx cannot iterate.
    **dict.fromkeys(["densenet-densenet121", "densenet-densenet121-memory_efficient=True"],
                    "features.denseblock1.denselayer1 ({module}.DenseLayer): torch.fx cannot "
                    "trace its forward: TraceError: Proxy object cannot be iterated. This can "
                    "be attempted when the Proxy is used in a loop or as a *args or **kwargs "
                    "function argument. See the torch.fx docs on pytorch.org for a more "
                    "detailed explanation of what types of control flow can be traced, and "
                    "check out the Proxy docstring for help troubleshooting Proxy iteration "
                    "errors"),
}


def _imported(source: str, directory: Path) -> str:
    """The spec ``netdsl import`` writes for the model class of an exported file."""
    with torch.device("meta"):
        module = model_class(exported_module(source, directory, f"roundtrip{next(_FILES)}"))()
    return from_module(module)


def _code(source: str) -> str:
    """An exported file without its header, which names the spec and its parameters."""
    return source.split("# Plain PyTorch: this file does not need netdsl.\n", 1)[1]


@pytest.mark.parametrize(("spec", "model", "params"), EXAMPLES,
                         ids=[_case_id(c) for c in EXAMPLES])
def test_export_is_a_fixed_point_through_import(spec: str, model: str | None,
                                                params: dict[str, Any], tmp_path: Path) -> None:
    """spec -> export -> import -> export -> import -> export: the second and third exports are
    the same file, and so are the two imported specs; the imported spec carries the original's
    weights (strict=True) and gives its outputs. (The first export is the spec's own spelling:
    its forward's variable names and arguments as written, which the module does not keep.)"""
    first = netdsl.export(ROOT / spec, model=model, **params)
    case = _case_id((spec, model, params))
    if case in REFUSED:
        with pytest.raises(ImportFailure) as refused:
            _imported(first, tmp_path)
        module = re.escape(f"roundtrip{next(_FILES) - 1}")
        assert re.fullmatch(re.escape(REFUSED[case]).replace(re.escape("{module}"), module),
                            str(refused.value))
        return
    imported = _imported(first, tmp_path)
    (tmp_path / "imported.net").write_text(imported)
    second = netdsl.export(tmp_path / "imported.net")
    again = _imported(second, tmp_path)
    (tmp_path / "again.net").write_text(again)
    assert _body(again) == _body(imported)
    assert _code(netdsl.export(tmp_path / "again.net")) == _code(second)
    original = netdsl.load(ROOT / spec, model=model, **params)
    copy = netdsl.load(tmp_path / "imported.net")
    copy.load_state_dict(original.state_dict(), strict=True)
    original.eval()
    copy.eval()
    given = inputs(netdsl.load_plan(ROOT / spec, model=model, **params))
    with torch.no_grad():
        expected, got = original(*given), copy(*given)
    for a, b in zip(expected if isinstance(expected, tuple) else [expected],
                    got if isinstance(got, tuple) else [got], strict=True):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- regressions


class Scaled(nn.Module):
    """Two numbers of its forward, which fx folds into the graph as constants."""

    def __init__(self, factor: float, power: int) -> None:
        super().__init__()
        self.factor, self.power = factor, power

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor + x ** self.power


class TwoScaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = Scaled(0.5, 2)
        self.b = Scaled(2.0, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


def test_numbers_of_a_forward_in_which_instances_differ_are_value_value2() -> None:
    """Two numbers of the forward that differ between a block's instances are two parameters,
    named value and value2 (the second once looped for ever, trying names starting with _)."""
    module = TwoScaled()
    text = from_module(module)
    assert "block Scaled(value: float, value2: int) {\n" \
           "    forward(x) = x * value + x ** value2\n}\n" in text
    assert "a = Scaled(0.5, 2)\n    b = Scaled(2.0, 3)\n" in text
    copy = netdsl.loads(text)
    copy.load_state_dict(module.state_dict(), strict=True)
    given = torch.randn(2, 3)
    assert torch.equal(copy(given), module(given))
