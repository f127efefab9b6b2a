"""Export text: code trees laid out at 100 columns, values as literals, generated code renamed.

:mod:`netdsl.exporter` describes an ``__init__`` as small trees (:class:`Call`: a head, items and a
tail) so that the layout is decided once the values are known: a call fits on its line or puts
one item per line, as black does. The forward and the param expressions are netdsl's own
generated code (:mod:`netdsl.forward`), renamed from the names it runs under (``_torch``,
``_F``) to the ones a person imports (``torch``, ``F``).
"""

from __future__ import annotations

import ast
import io
import keyword
import math
import re
import tokenize
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from . import codes
from .errors import Span, fail
from .ops import NAMESPACE
from .plan import TiePlan
from .values import LayerRef

WIDTH = 100
INDENT = "    "
# A value that differs between the instances of a class: filled in when the class is known.
_SLOT = re.compile("\x00([0-9]+)\x00")


@dataclass(frozen=True)
class Call:
    """``head item, item tail``: a call, a list, a dict, a comprehension."""

    head: str
    items: tuple[Code, ...]
    tail: str
    sep: str = ", "
    # Module items (a sequential's, a list's): three or more equal ones in a row are written
    # as a comprehension, which builds them in the same order.
    runs: bool = False
    # Arguments may share one line of their own when the call does not fit (as black does);
    # a container's modules get a line each.
    compact: bool = True


@dataclass(frozen=True)
class Prefixed:
    """``name=value`` or ``'key': value``: a prefix that stays on the value's first line."""

    prefix: str
    item: Code


Code = str | Call | Prefixed


def slot(index: int) -> str:
    return f"\x00{index}\x00"


def fill(code: Code, text: Callable[[int], str]) -> Code:
    """The code with each slot replaced by ``text(index)``; equal runs then compressed."""
    if isinstance(code, str):
        return _SLOT.sub(lambda m: text(int(m.group(1))), code)
    if isinstance(code, Prefixed):
        return Prefixed(code.prefix, fill(code.item, text))
    items = tuple(fill(i, text) for i in code.items)
    if not code.runs:
        return replace(code, items=items)
    runs = _runs(items)
    if code.head.endswith("[") and len(runs) == 1 and isinstance(runs[0], Call) \
            and runs[0].head == "*[":  # the whole list is one run: [X for _ in range(n)]
        return replace(code, items=runs[0].items, sep=" ")
    return replace(code, items=runs)


def _runs(items: tuple[Code, ...]) -> tuple[Code, ...]:
    out: list[Code] = []
    i = 0
    while i < len(items):
        j = i
        while j < len(items) and items[j] == items[i]:
            j += 1
        if j - i >= 3:
            out.append(Call("*[", (items[i], f"for _ in range({j - i})"), "]", sep=" "))
        else:
            out += items[i:j]
        i = j
    return tuple(out)


def inline(code: Code) -> str:
    if isinstance(code, str):
        return code
    if isinstance(code, Prefixed):
        return code.prefix + inline(code.item)
    return f"{code.head}{code.sep.join(inline(i) for i in code.items)}{code.tail}"


def layout(code: Code, indent: int, used: int, after: int = 0) -> str:
    """The code starting at column ``used``, its further lines indented by ``indent``;
    ``after`` characters follow it on its last line (a comma)."""
    one = inline(code)
    if used + len(one) + after <= WIDTH or isinstance(code, str):
        return one
    if isinstance(code, Prefixed):
        return code.prefix + layout(code.item, indent, used + len(code.prefix), after)
    if not code.items:
        return one
    inner = indent + len(INDENT)
    comma = "," if code.sep == ", " else ""
    joined = code.sep.join(inline(item) for item in code.items)
    if code.compact and inner + len(joined) <= WIDTH:
        return "\n".join([code.head, " " * inner + joined, " " * indent + code.tail])
    lines = [f"{' ' * inner}{layout(item, inner, inner, len(comma))}{comma}"
             for item in code.items]
    return "\n".join([code.head, *lines, " " * indent + code.tail])


# ---------------------------------------------------------------- values


def literal(value: Any, class_text: Callable[[type], str], span: Span | None) -> str:
    """A constant as Python source: numbers, strings, tuples, dtypes, layer classes."""
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else _non_finite(value)
    if isinstance(value, (tuple, list)):
        items = [literal(v, class_text, span) for v in value]
        if isinstance(value, list):
            return f"[{', '.join(items)}]"
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if isinstance(value, torch.dtype):
        return str(value)  # torch.float32
    if isinstance(value, type):
        return class_text(value)
    if isinstance(value, LayerRef) and value.is_class:
        return _layer_ref(value, class_text, span)
    fail(f"cannot export the value {value!r}: it has no Python literal", span, codes.VALUE)


def _non_finite(value: float) -> str:
    if math.isnan(value):
        return "float('nan')"
    return "float('inf')" if value > 0 else "-float('inf')"


def _layer_ref(ref: LayerRef, class_text: Callable[[type], str], span: Span | None) -> str:
    """``BatchNorm2d`` -> ``nn.BatchNorm2d``; ``partial(SiLU, inplace=true)`` ->
    ``partial(nn.SiLU, inplace=True)``."""
    assert isinstance(ref.target, type)
    name = class_text(ref.target)
    if not ref.args and not ref.kwargs:
        return name
    parts = [literal(a.value, class_text, span) for a in ref.args]
    parts += [f"{k.name}={literal(k.value, class_text, span)}" for k in ref.kwargs]
    return f"partial({', '.join([name, *parts])})"


def is_scalar(value: Any) -> bool:
    """A value that may differ between a class's instances (a constructor parameter)."""
    if isinstance(value, (tuple, list)):
        return all(is_scalar(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def annotation(values: list[Any]) -> str:
    kinds = {type(v) for v in values}
    if len(kinds) == 1 and next(iter(kinds)) in (bool, int, float, str, tuple, list):
        return f": {next(iter(kinds)).__name__}"
    return ""


def python_name(name: str, taken: set[str]) -> str:
    """A name that is an identifier, no keyword and not taken: ``name``, ``name_``, ..."""
    while keyword.iskeyword(name) or name in taken:
        name += "_"
    return name


def tie_text(plan: TiePlan) -> str:
    """``self.transformer.wte.weight = self.lm_head.weight``, as nanoGPT writes it."""
    target, source = plan.target, plan.source
    if all(_plain(p) for p in [*target, *source]):
        return f"self{_attribute_path(target)} = self{_attribute_path(source)}"
    owner = ".".join(target[:-1])  # a dict key that is no identifier: by path
    return (f"self.get_submodule({owner!r}).{target[-1]} = "
            f"self.get_parameter({'.'.join(source)!r})")


def _plain(part: str) -> bool:
    return part.isdigit() or (part.isidentifier() and not keyword.iskeyword(part))


def _attribute_path(parts: list[str]) -> str:
    return "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in parts)


# ---------------------------------------------------------------- generated code

# The names generated code runs under (netdsl.ops.NAMESPACE) -> the ones a file imports.
RENAMES = {"_torch": "torch", "_F": "F", "_math": "math", "_checkpoint": "checkpoint"}
# sqrt, exp, ...: math's on a number, torch's on a tensor (netdsl.ops.NUMBER_OR_TENSOR).
NUMBERS = {"sqrt": "math.sqrt", "exp": "math.exp", "log": "math.log", "ceil": "math.ceil",
           "floor": "math.floor", "abs": "abs", "min": "min", "max": "max", "round": "round"}
# netdsl's run-time helpers, which an exported file does not have.
_HELPER = re.compile(r"_(no_key|dict)[0-9]+|_at|_operator")
# The dict lookup netdsl generates for a key given to the forward, with its located error:
# here a plain ModuleDict lookup (its KeyError names the key).
_DICT_LOOKUP = re.compile(r"\((_dict\d+)\[(\w+)\] if \2 in \(\1 := (self(?:\.\w+|\[-?\d+\])+)\) "
                          r"else _no_key\d+\(\2\)\)")


def renamed(source: str, numbers_are_sizes: bool, span: Span | None) -> tuple[str, set[str]]:
    """Generated code with a person's names, and the module names it needs (``torch``, ``F``,
    ``math``, ``checkpoint`` or a helper ``_sqrt``)."""
    source = _DICT_LOOKUP.sub(r"\3[\2]", source)
    lines = source.splitlines(keepends=True)
    needs: set[str] = set()
    # Renamed by token, so that a string constant holding "_torch" stays as it is.
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for index in reversed(range(len(tokens))):
        token = tokens[index]
        if token.type != tokenize.NAME:
            continue
        attribute = index > 0 and tokens[index - 1].string == "."  # self.math: a child
        text = token.string if attribute else _rename(token.string, numbers_are_sizes, span)
        if not attribute and text == token.string and text in (*RENAMES.values(), "nn"):
            fail(f"cannot export: the generated code names '{text}', which the exported "
                 f"file imports; rename it in the spec", span, codes.VALUE)
        if text != token.string:
            needs.add(text.split(".")[0])
            (row, start), (_, end) = token.start, token.end
            line = lines[row - 1]
            lines[row - 1] = line[:start] + text + line[end:]
    return "".join(lines), needs


def numbers_as_slots(source: str, values: list[tuple[Any, str]], hint: str) -> str:
    """The code with each number a slot, its value appended to ``values``: a number in which
    the instances of a class differ (a size a block parameter gives) becomes a constructor
    parameter, as a layer argument does."""
    lines = source.splitlines(keepends=True)
    numbers = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
               if t.type == tokenize.NUMBER]
    first = len(values)
    values += [(ast.literal_eval(t.string), hint) for t in numbers]
    for index, token in reversed(list(enumerate(numbers))):
        (row, start), (_, end) = token.start, token.end
        line = lines[row - 1]
        lines[row - 1] = line[:start] + slot(first + index) + line[end:]
    return "".join(lines)


def slots_in(code: str) -> list[int]:
    """The slots ``code`` holds, in order."""
    return [int(m.group(1)) for m in _SLOT.finditer(code)]


def _rename(name: str, numbers_are_sizes: bool, span: Span | None) -> str:
    if name in RENAMES:
        return RENAMES[name]
    if name.startswith("_number_") and name[8:] in NUMBERS:
        return NUMBERS[name[8:]] if numbers_are_sizes else f"_{name[8:]}"
    # The forward's own variables (_out, _layer) stay; netdsl's run-time helpers cannot.
    if name in NAMESPACE or _HELPER.fullmatch(name):
        fail(f"cannot export: the generated code uses netdsl's helper '{name}'", span,
             codes.INTERNAL)
    return name


def _number_helper(name: str) -> str:
    """The spec's ``sqrt`` on a value of the forward: a size's math, a tensor's torch."""
    number = NUMBERS[name]
    return (f"def _{name}(*args):\n"
            f"    # The spec's {name}(): torch.{name} on a tensor, {number} on a number.\n"
            f"    if any(isinstance(a, torch.Tensor) for a in args):\n"
            f"        return torch.{name}(*args)\n"
            f"    return {number}(*args)\n")


# ---------------------------------------------------------------- imports

# What each name the code needs is imported by.
_IMPORTS = {"F": "import torch.nn.functional as F", "math": "import math",
            "checkpoint": "from torch.utils.checkpoint import checkpoint",
            "fnmatchcase": "from fnmatch import fnmatchcase",
            "partial": "from functools import partial",
            "OrderedDict": "from collections import OrderedDict",
            "torchvision": "import torchvision"}
_STDLIB = ("collections", "fnmatch", "functools", "math")


@dataclass
class Imports:
    """What the exported file imports, and the helper functions it defines."""

    lines: set[str] = field(default_factory=lambda: {"import torch", "from torch import nn"})
    helpers: set[str] = field(default_factory=set)

    def need(self, names: set[str]) -> None:
        for name in names:
            if name in _IMPORTS:
                self.lines.add(_IMPORTS[name])
            elif name.startswith("_") and name[1:] in NUMBERS:
                self.helpers.add(_number_helper(name[1:]))
                self.lines.add(_IMPORTS["math"])

    def layer(self, cls: type, span: Span | None) -> str:
        """``nn.Conv2d``, ``torchvision.ops.Conv2dNormActivation``, a custom layer's module."""
        name = cls.__name__
        if getattr(nn, name, None) is cls:
            return f"nn.{name}"
        if cls.__module__.startswith("torchvision."):
            import torchvision.ops  # only for a spec that uses its layers

            if getattr(torchvision.ops, name, None) is cls:
                self.need({"torchvision"})
                return f"torchvision.ops.{name}"
        module, qualname = cls.__module__, cls.__qualname__
        if module == "__main__" or not all(p.isidentifier() for p in
                                           [*module.split("."), *qualname.split(".")]):
            fail(f"cannot export layer {name}: an exported file cannot import "
                 f"{module}.{qualname} (define the class at the top level of an importable "
                 f"module)", span, codes.VALUE)
        self.lines.add(f"import {module}")
        return f"{module}.{qualname}"

    def literal(self, value: Any, span: Span | None) -> str:
        text = literal(value, lambda cls: self.layer(cls, span), span)
        if "partial(" in text:
            self.need({"partial"})
        return text

    def text(self, body: str) -> str:
        """The import lines (isort's order) and the helpers, for a file whose code is
        ``body``."""
        helpers = "".join(f"\n\n{h}" for h in sorted(self.helpers))
        lines = set(self.lines)
        if not re.search(r"\btorch\.", helpers + body):  # children and nn alone
            lines.discard("import torch")
        plain = sorted(i for i in lines if i.startswith("import "))
        froms = sorted(i for i in lines if i.startswith("from "))
        std = [i for i in [*plain, *froms] if i.split()[1].split(".")[0] in _STDLIB]
        third = [i for i in [*plain, *froms] if i not in std]
        return "\n".join(std) + ("\n\n" if std else "") + "\n".join(third) + "\n" + helpers


__all__ = ["INDENT", "WIDTH", "Call", "Code", "Imports", "Prefixed", "annotation", "fill",
           "inline", "is_scalar", "layout", "literal", "numbers_as_slots", "python_name",
           "renamed", "slot", "slots_in", "tie_text"]
