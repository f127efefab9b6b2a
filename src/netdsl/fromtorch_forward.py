"""Import, the forward: one module's ``forward`` -> the forward of its block, in netdsl syntax.

``torch.fx`` traces the module with every submodule as a leaf, so the graph holds this module's
own computation: calls of its children (``call_module``), torch functions and operators
(``call_function``) and tensor methods (``call_method``). Each node is spelled as the language
spells it (``netdsl.ops``): a chain of one-input calls becomes a pipeline (``x -> conv1 -> bn1``),
a value used once is written where it is used, and anything else is a variable. A node without a
netdsl spelling is refused, by name. The graph may hold the nodes of both modes
(netdsl.fromtorch_modes): those of one mode only are written under ``if training { ... }``.
"""

from __future__ import annotations

import inspect
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch._jit_internal import boolean_dispatched

from .errors import first_line
from .fromtorch_layers import ImportFailure, is_literal, is_name, literal
from .ops import ATTRIBUTES, DTYPES, LIST_METHODS, METHODS, NUMBER_FUNCTIONS, OPS

# How tightly an expression binds (docs/language.md §4.1): an operand binding more loosely than
# its operator needs is put in parentheses.
PIPE, COMPARE, ADD, MUL, UNARY, POW, POSTFIX, ATOM = 1, 6, 7, 8, 9, 10, 11, 12
_BINARY = {operator.add: ("+", ADD), operator.sub: ("-", ADD), operator.mul: ("*", MUL),
           operator.truediv: ("/", MUL), operator.floordiv: ("//", MUL),
           operator.mod: ("%", MUL), operator.matmul: ("@", MUL), operator.pow: ("**", POW),
           operator.eq: ("==", COMPARE), operator.ne: ("!=", COMPARE),
           operator.lt: ("<", COMPARE), operator.le: ("<=", COMPARE),
           operator.gt: (">", COMPARE), operator.ge: (">=", COMPARE)}
_UNARY = {operator.neg: "-", operator.pos: "+"}
# Names the forward cannot give a variable: the spec's literals and the module's mode.
_TAKEN = frozenset({"true", "false", "none", "self", "training", "children", "inf", "nan"})


def _op_names() -> dict[int, str]:
    """The torch callable behind each op name, by identity (``torch.flatten`` -> flatten)."""
    homes = {"_torch": torch, "_F": F}
    found = {}
    for name, op in OPS.items():
        home, _, attr = op.code.partition(".")
        func = getattr(homes.get(home), attr, None) if home in homes else None
        if func is not None:
            found.setdefault(id(func), name)
    # fx records math.sqrt on a traced size (nanoGPT's 1.0 / math.sqrt(k.size(-1))); the
    # language's sqrt is math's on a size.
    for name, func in NUMBER_FUNCTIONS.items():
        if getattr(func, "__module__", None) == "math":
            found.setdefault(id(func), name)
    return found


_OP_NAMES = _op_names()
_DTYPE_NAMES = {getattr(torch, name): name for name in DTYPES}


class _OwnChildren(fx.Tracer):
    """Traces one module's own forward: every submodule call stays a call, and every read of
    its own buffers a read of the buffer (fx's default hands the forward the buffer itself, so
    that MaxViT's ``self.relative_position_index.view(-1)`` would be a tensor constant)."""

    proxy_buffer_attributes = True

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def trace(module: nn.Module, where: str) -> fx.Graph:
    try:
        graph = _OwnChildren().trace(module)
    except Exception as err:  # fx's reason, whatever it is, is the user's to read
        raise ImportFailure(f"{where}: torch.fx cannot trace its forward: "
                            f"{type(err).__name__}: {first_line(err)}") from None
    _drop_unread(graph)
    return graph


def _drop_unread(graph: fx.Graph) -> None:
    """Shapes and items read for nothing: not a module call, so leaving them out changes
    nothing. (A value an assert's message shows is kept, to be shown.)"""
    shown = {name for node in graph.nodes if node.target is torch._assert
             for arg in node.args if isinstance(arg, str)
             for name in re.findall(r"Proxy\((\w+)\)", arg)}
    dropped = False
    for node in reversed(list(graph.nodes)):  # last first: a shape read only by dropped items
        if not node.users and node.name not in shown and (
                (node.op == "call_function" and node.target in (getattr, operator.getitem))
                or (node.op == "call_method" and node.target in ("size", "dim"))):
            graph.erase_node(node)
            dropped = True
    if dropped:
        _named_as_traced(graph)


def _named_as_traced(graph: fx.Graph) -> None:
    """The names fx gives the nodes left when it traces them alone: ``n, c, h, w = x.shape``
    without ``c`` is ``getitem``, ``getitem_1``, ``getitem_2``, the names its export (which
    reads no ``c``) traces to, so that import -> export -> import gives the spec back. The
    values an assert's message shows are renamed with their nodes."""
    fresh = fx.graph._Namespace()
    names = {node.name: fresh.create_name(
        node.name if node.op in ("placeholder", "output") else graph._target_to_str(node.target),
        None) for node in graph.nodes}
    for node in graph.nodes:
        node.name = names[node.name]
        if node.target is torch._assert:
            node.args = tuple(re.sub(r"Proxy\((\w+)\)", lambda m: f"Proxy({names[m.group(1)]})", a)
                              if isinstance(a, str) else a for a in node.args)


class _Mode:
    """The module's mode as a value of the forward: written ``training``."""

    def __repr__(self) -> str:
        return "training"


TRAINING = _Mode()


@dataclass(frozen=True)
class Forward:
    """A forward's text, its numbers left as marks (``\\x00{k}\\x00``): the numbers in which the
    instances of one block differ become its parameters (LayerNorm2d's width)."""

    text: str  # "forward(x) = ..." or "forward(x) {" ... "}", lines joined by newlines
    names: frozenset[str]  # every name it mentions: a block parameter must take none of them
    numbers: tuple[int | float, ...]  # the value of each mark, in order
    arguments: tuple[str, ...] = ()  # the forward's arguments, as the text names them

    def written(self, number: Callable[[int], str]) -> str:
        """The text with each mark replaced by ``number(k)``: a literal or a parameter."""
        return re.sub("\x00(\\d+)\x00", lambda m: number(int(m.group(1))), self.text)


@dataclass(frozen=True)
class _Expr:
    text: str
    prec: int


def render(graph: fx.Graph, modes: Mapping[fx.Node, bool], where: str,
           stage: Callable[[str], str], tensors: Iterable[str], reserved: Iterable[str]
           ) -> Forward:
    """The forward of ``graph``; ``modes`` holds the nodes that run in one mode only (the value
    of ``training`` they run under), ``stage`` spells a submodule path (``features.0`` ->
    ``features[0]``), ``tensors`` are the module's own parameters and buffers."""
    writer = _Writer(graph, modes, where, stage, frozenset(tensors), frozenset(reserved))
    return writer.forward()


class _Writer:
    def __init__(self, graph: fx.Graph, modes: Mapping[fx.Node, bool], where: str,
                 stage: Callable[[str], str], tensors: frozenset[str], reserved: frozenset[str]
                 ) -> None:
        self.nodes = list(graph.nodes)
        self.index = {node: i for i, node in enumerate(self.nodes)}
        self.modes, self.where, self.stage, self.tensors = modes, where, stage, tensors
        self.taken = set(reserved | _TAKEN | set(OPS))
        self._check_spellings()
        self.inline = {node for node in self.nodes if self._inlinable(node)}
        self._settle_order()
        self.names = self._name_variables()
        self.numbers: list[int | float] = []

    # ------------------------------------------------------------ which nodes are variables

    def _inlinable(self, node: fx.Node) -> bool:
        """A value used once is written where it is used, if that runs in the same modes (a
        value both compute is computed in both); a pipeline only as the head of another
        (elsewhere it would need parentheses: a variable reads better)."""
        if node.op in ("placeholder", "get_attr"):
            return True
        if node.op == "output" or len(node.users) != 1:
            return False
        user = next(iter(node.users))
        if self.modes.get(user) != self.modes.get(node):
            return False
        whole = user.op == "output" and user.args[0] is node  # return x -> f: no parentheses
        return not self._is_pipe(node) or whole or self._pipe_head(user) is node

    def _settle_order(self) -> None:
        """Keep Python's evaluation order. A statement evaluates the values written into it
        operands first; each must come after the statement before it and after the values it
        evaluates before them, and every value between the two statements must be one of them.
        A value out of place is computed as a variable of its own, in its place."""
        changed = True
        while changed:
            changed = False
            previous = -1
            for root in self._statements():
                late = self._out_of_place(root, previous)
                self.inline -= late
                changed = changed or bool(late)
                previous = self.index[root]

    def _out_of_place(self, root: fx.Node, previous: int) -> set[fx.Node]:
        inner = list(self._evaluated(root))
        late, latest = set(), previous
        for node in inner:
            if self.index[node] < latest:
                late.add(node)
            latest = max(latest, self.index[node])
        between = {n for n in self.nodes[previous + 1:self.index[root]]
                   if n.op not in ("placeholder", "get_attr")}
        return late | (between - set(inner))

    def _statements(self) -> list[fx.Node]:
        return [n for n in self.nodes if n not in self.inline and n.op != "placeholder"]

    def _evaluated(self, root: fx.Node) -> Iterable[fx.Node]:
        """The inlined nodes a statement evaluates, in Python's order (operands first)."""
        for arg in _node_args(root):
            if arg in self.inline and arg.op not in ("placeholder", "get_attr"):
                yield from self._evaluated(arg)
                yield arg

    def _name_variables(self) -> dict[fx.Node, str]:
        names: dict[fx.Node, str] = {}
        for node in self.nodes:
            if node.op == "placeholder":
                names[node] = self._argument(node)
        for node in self._statements():
            if node.op != "output" and not _is_assert(node):
                names[node] = self._fresh(node.name)
        return names

    def _argument(self, node: fx.Node) -> str:
        name = str(node.target)
        if node.args or not is_name(name) or name in self.taken:
            raise ImportFailure(f"{self.where}: forward argument '{name}' cannot be written "
                                f"in a spec (a name without a default, not a child's)")
        self.taken.add(name)
        return name

    def _fresh(self, base: str) -> str:
        base = base.lstrip("_") or "v"
        name = base if is_name(base) and base not in self.taken else f"{base}_out"
        count = 1
        while not is_name(name) or name in self.taken:
            count += 1
            name = f"{base}_out{count}"
        self.taken.add(name)
        return name

    # ------------------------------------------------------------ the text

    def forward(self) -> Forward:
        names = tuple(self.names[n] for n in self.nodes if n.op == "placeholder")
        arguments = ", ".join(names)
        lines = self._lines()
        # forward(x) = ... takes one expression: several values are returned by a statement.
        several = any(isinstance(_result(n), tuple) for n in self.nodes if n.op == "output")
        if len(lines) == 1 and not several:
            text = f"forward({arguments}) = {lines[0].removeprefix('return ')}"
        else:
            body = "\n".join("    " + line for line in lines)
            text = f"forward({arguments}) {{\n{body}\n}}"
        return Forward(text, frozenset(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)),
                       tuple(self.numbers), names)

    def _lines(self) -> list[str]:
        """The statements, each run of one mode's in ``if training { }`` or ``if not training
        { }``: eval's run right after training's is its ``else``, or after it if training's
        returns."""
        runs = [(mode, [self._statement(node) for node in run])
                for mode, run in groupby(self._statements(), key=self.modes.get)]
        lines: list[str] = []
        for k, (mode, run) in enumerate(runs):
            inside = ["    " + line for line in run]
            if mode is None:
                lines += run
            elif mode is False and k > 0 and runs[k - 1][0] is True:
                if runs[k - 1][1][-1].startswith("return "):
                    lines += run
                else:
                    lines[-1:] = ["} else {", *inside, "}"]  # in place of training's "}"
            else:
                lines += ["if training {" if mode else "if not training {", *inside, "}"]
        return lines

    def _statement(self, node: fx.Node) -> str:
        if node.op == "output":
            result = _result(node)
            if isinstance(result, tuple):
                return "return " + ", ".join(self._value(v).text for v in result)
            return f"return {self._value(result).text}"
        if _is_assert(node):  # netdsl's assert is torch._assert, as torchvision writes it
            test, message = node.args
            return f"assert {self._value(test).text}, {self._message(message)}"
        return f"{self.names[node]} = {self._expr(node).text}"

    def _message(self, message: Any) -> str:
        """An assert's message; the values an f-string showed at trace time (``Proxy(h)``) are
        shown again when the forward runs: ``f"... got {h}"``."""
        if not isinstance(message, str):
            return self._value(message).text
        variables = {node.name: name for node, name in self.names.items()}
        parts = re.split(r"Proxy\((\w+)\)", message)
        if len(parts) == 1 or not all(p in variables for p in parts[1::2]):
            return self._value(message).text
        shown = [variables[p] if i % 2 else p.replace("{", "{{").replace("}", "}}")
                 for i, p in enumerate(parts)]
        return "f" + literal("".join(f"{{{p}}}" if i % 2 else p for i, p in enumerate(shown)))

    def _value(self, value: Any, prec: int = 0) -> _Expr:
        """An argument: a node (its variable, or its expression written in place) or a
        constant, in parentheses if it binds more loosely than ``prec``."""
        if isinstance(value, fx.Node):
            expr = self._expr(value) if value in self.inline else _Expr(self.names[value], ATOM)
        else:
            expr = self._constant(value)
        return _Expr(f"({expr.text})", ATOM) if expr.prec < prec else expr

    def _constant(self, value: Any) -> _Expr:
        if value is TRAINING:
            return _Expr("training", ATOM)
        if isinstance(value, (tuple, list)):
            items = ", ".join(self._value(v).text for v in value)
            if isinstance(value, tuple):
                return _Expr(f"({items},)" if len(value) == 1 else f"({items})", ATOM)
            return _Expr(f"[{items}]", ATOM)
        if isinstance(value, torch.dtype) and value in _DTYPE_NAMES:
            return _Expr(_DTYPE_NAMES[value], ATOM)
        if isinstance(value, float) and value in (float("inf"), float("-inf")):
            return _Expr("inf" if value > 0 else "-inf", ATOM if value > 0 else UNARY)
        if not is_literal(value):
            raise ImportFailure(f"{self.where}: the forward passes {type(value).__name__} "
                                f"({value!r}), which a spec cannot write")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.numbers.append(value)
            return _Expr(f"\x00{len(self.numbers) - 1}\x00", UNARY if value < 0 else ATOM)
        return _Expr(literal(value), ATOM)

    def _expr(self, node: fx.Node) -> _Expr:
        if node.op == "placeholder":
            return _Expr(self.names[node], ATOM)
        if node.op == "get_attr":
            return self._tensor(node)
        if node.op == "call_module":
            return self._call(self.stage(str(node.target)), node)
        if node.op == "call_method":
            return self._method(node)
        return self._function(node)

    def _tensor(self, node: fx.Node) -> _Expr:
        if node.target not in self.tensors:
            raise ImportFailure(f"{self.where}: the forward reads '{node.target}', a tensor "
                                f"that is not the module's own parameter or buffer")
        return _Expr(str(node.target), ATOM)

    def _call(self, name: str, node: fx.Node) -> _Expr:
        """``name`` called on the node's arguments; a pipeline stage when the first argument is
        a value (``x -> flatten(1)``, ``x -> conv1``)."""
        if self._pipe_head(node) is not None:
            head = self._value(node.args[0], PIPE)
            rest = self._arguments(node.args[1:], _keywords(node))
            return _Expr(f"{head.text} -> {name}" + (f"({rest})" if rest else ""), PIPE)
        return _Expr(f"{name}({self._arguments(node.args, _keywords(node))})", ATOM)

    def _arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        return ", ".join([*(self._value(a).text for a in args),
                          *(f"{k}={self._value(v).text}" for k, v in kwargs.items())])

    def _method(self, node: fx.Node) -> _Expr:
        name = str(node.target)
        receiver = self._value(node.args[0], POSTFIX)
        return _Expr(f"{receiver.text}.{name}({self._arguments(node.args[1:], node.kwargs)})",
                     POSTFIX)

    def _function(self, node: fx.Node) -> _Expr:
        target = node.target
        if target in _BINARY and len(node.args) == 2 and not node.kwargs:
            symbol, prec = _BINARY[target]  # type: ignore[index]
            left, right = (prec + 1, prec) if prec == POW else (prec, prec + 1)
            if prec == COMPARE:  # a < b < c would chain: compare single operands only
                left = right = prec + 1
            return _Expr(f"{self._value(node.args[0], left).text} {symbol} "
                         f"{self._value(node.args[1], right).text}", prec)
        if target in _UNARY and len(node.args) == 1:
            return _Expr(_UNARY[target] + self._value(node.args[0], UNARY).text,  # type: ignore[index]
                         UNARY)
        if target is operator.getitem:
            return self._index(node)
        if target is getattr and node.args[1] in ATTRIBUTES:
            return _Expr(f"{self._value(node.args[0], POSTFIX).text}.{node.args[1]}", POSTFIX)
        return self._call(_OP_NAMES[id(target)], node)

    def _index(self, node: fx.Node) -> _Expr:
        value, index = node.args
        parts = index if isinstance(index, tuple) else (index,)
        text = ", ".join(self._subscript(p) for p in parts)
        return _Expr(f"{self._value(value, POSTFIX).text}[{text}]", POSTFIX)

    def _subscript(self, part: Any) -> str:
        if isinstance(part, slice):
            bounds = [("" if b is None else self._value(b).text)
                      for b in (part.start, part.stop, part.step)]
            return ":".join(bounds[:2]) + (f":{bounds[2]}" if bounds[2] else "")
        return "..." if part is Ellipsis else self._value(part).text

    def _check_spellings(self) -> None:
        """Refuse the first node, in the graph's order, that a spec cannot spell."""
        for node in self.nodes:
            if node.op == "call_method" and node.target not in METHODS | LIST_METHODS:
                what = f"tensor method '{node.target}'"
            elif node.op == "call_function" and not _spelled(node) and not (
                    _is_named_tuple(node) and self._returned(node)):
                what = f"function {_qualified(node.target)}"
            else:
                continue
            raise ImportFailure(f"{self.where}: {what} (fx node '{node.name}') has no netdsl "
                                f"spelling (docs/forward-functions.md lists what a forward may "
                                f"call)")

    def _returned(self, node: fx.Node) -> bool:
        """Whether the node is the value the forward returns, and only that."""
        return [(user.op, user.args) for user in node.users] == [("output", (node,))]

    # ------------------------------------------------------------ pipelines

    def _is_pipe(self, node: fx.Node) -> bool:
        return self._pipe_head(node) is not None

    def _pipe_head(self, node: fx.Node) -> fx.Node | None:
        """The value a call takes as its pipeline input, if it is written as a stage."""
        if not node.args or not isinstance(node.args[0], fx.Node):
            return None
        head = node.args[0]
        if node.op == "call_module" and len(node.args) == 1 and not node.kwargs:
            return head
        if node.op == "call_function" and id(node.target) in _OP_NAMES \
                and node.target not in _BINARY and head not in _node_args_after_first(node):
            return head
        return None


def _spelled(node: fx.Node) -> bool:
    """Whether a call_function node has a netdsl spelling: an operator, an index, an
    attribute, an op or an assert."""
    target, args = node.target, node.args
    return (_is_assert(node) or target is operator.getitem or id(target) in _OP_NAMES
            or (target in _BINARY and len(args) == 2 and not node.kwargs)
            or (target in _UNARY and len(args) == 1)
            or (target is getattr and len(args) == 2 and args[1] in ATTRIBUTES))


def _keywords(node: fx.Node) -> dict[str, Any]:
    """The keyword arguments of a call, less those at torch's default: torch's Python functions
    pass every argument on to the trace (``F.max_pool2d(x, 3)`` is traced with ``dilation=1,
    ceil_mode=False, return_indices=False``, ``F.relu(x)`` with ``inplace=False``), and the
    language's op, which is that function, has the same defaults, or takes no such argument."""
    op = OPS[_OP_NAMES[id(node.target)]] if node.op == "call_function" else None
    if op is None or op.signature is None:
        return dict(node.kwargs)
    defaults = _torch_defaults(node.target)
    return {key: value for key, value in node.kwargs.items()
            if key not in defaults
            or (type(value), value) != (type(defaults[key]), defaults[key])}


def _torch_defaults(function: Any) -> dict[str, Any]:
    """The defaults of a torch Python function; ``F.max_pool2d`` is a dispatcher on
    ``return_indices``, whose defaults are its functions'."""
    function = boolean_dispatched.get(function, {}).get("if_false", function)
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a C function: no signature to read
        return {}
    return {p.name: p.default for p in params if p.default is not p.empty}


def _result(output: fx.Node) -> Any:
    """What the graph's output node returns: a value, or a tuple of values."""
    result = output.args[0]
    if isinstance(result, fx.Node) and _is_named_tuple(result):
        return result.args  # a named tuple equals the tuple of its items
    return result


def _is_named_tuple(node: fx.Node) -> bool:
    """A named tuple built of its items in order (torchvision's ``GoogLeNetOutputs``)."""
    target = node.target
    return node.op == "call_function" and isinstance(target, type) \
        and issubclass(target, tuple) and hasattr(target, "_fields") \
        and len(node.args) == len(target._fields) and not node.kwargs


def _is_assert(node: fx.Node) -> bool:
    return node.op == "call_function" and node.target is torch._assert \
        and len(node.args) == 2 and not node.kwargs and not node.users


def _node_args(node: fx.Node) -> list[fx.Node]:
    """The nodes among a node's arguments, in the order Python evaluates them."""
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)
    return found


def _node_args_after_first(node: fx.Node) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg((node.args[1:], node.kwargs), lambda n: found.append(n) or n)
    return found


def _qualified(target: Any) -> str:
    module = getattr(target, "__module__", None)
    # __name__, not __qualname__: torch.relu's is _VariableFunctionsClass.relu
    name = getattr(target, "__name__", None) or repr(target)
    return f"{module}.{name}" if module else str(name)


__all__ = ["TRAINING", "Forward", "render", "trace"]
