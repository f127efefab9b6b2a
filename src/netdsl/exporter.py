"""Export: a spec's model -> a standalone PyTorch file (``netdsl export``), the way out of netdsl.

The file holds one ``nn.Module`` class per model and block, for the parameter values given: the
spec's build-time logic (lets, ifs, loops, asserts) has run, so each ``__init__`` builds the
children the plan holds, in the plan's order (same ``state_dict`` keys, same random draws), then
runs the init rules as ``for m in self.modules()`` loops (:mod:`netdsl.export_init`). The forward
is netdsl's own generated code (:mod:`netdsl.forward`), renamed for the file
(:mod:`netdsl.export_code`).

Instances of a block whose structure is the same share one class; the values that differ
between them (layer arguments, the numbers of param expressions and of the forward) become the
class's constructor parameters, named after the block's parameters (or lets) when their values
agree; the forward reads its own from ``self``. Instances whose structure differs (a
``downsample`` present in one, absent in the other) get classes of their own: ``BasicBlock``,
``BasicBlock2``.
"""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import codes
from . import nodes as n
from .api import PathLike, open_spec, ready_plan
from .build import build
from .errors import InternalError, Span, fail
from .export_code import (
    INDENT,
    WIDTH,
    Call,
    Code,
    Imports,
    Prefixed,
    annotation,
    fill,
    is_scalar,
    layout,
    numbers_as_slots,
    python_name,
    renamed,
    slot,
    slots_in,
    tie_text,
)
from .export_forward import function_text, tidy
from .export_init import init_code, without_rules
from .forward_expr import ExprCompiler
from .limits import DEFAULT_LIMITS, Limits
from .plan import (
    DictPlan,
    LayerPlan,
    ListPlan,
    ModelPlan,
    Plan,
    SequentialPlan,
    TensorPlan,
    models_with_paths,
)

# Names the file defines or imports: no class or constructor parameter may take one.
_FILE_NAMES = frozenset({"torch", "nn", "F", "math", "torchvision", "OrderedDict", "partial",
                         "fnmatchcase", "checkpoint", "self", *dir(builtins)})
_DeclKey = tuple[int, str]  # a block's declaration (by identity) and name


def export(path: PathLike, *, model: str | None = None,
           modules: Mapping[str, type[nn.Module]] | None = None,
           limits: Limits = DEFAULT_LIMITS, source: str | None = None, **params: Any) -> str:
    """The PyTorch source of the spec's model for these parameters (see the module docs);
    ``source`` is the file's text when it is not on disk, as for :func:`netdsl.diagnose`."""
    with open_spec(path, limits, source) as (_, unit):
        plan = ready_plan(unit, model, modules, limits, params)
        return Exporter(plan, str(path), model).source()


# ---------------------------------------------------------------- one instance


@dataclass
class _Shape:
    """An instance's ``__init__`` with its varying values as slots: equal shapes share a
    class."""

    statements: tuple[Code, ...]
    methods: tuple[str, ...]  # the forward and the defs, as generated (their numbers slots)
    init: tuple[str, ...]

    def key(self) -> tuple[Any, ...]:
        return (self.statements, self.methods, self.init)


@dataclass
class _Instance:
    """A model or block instance of the plan, at its module path."""

    plan: ModelPlan
    path: str
    shape: _Shape | None = None
    values: list[tuple[Any, str]] = field(default_factory=list)  # each slot's value and hint
    cls: _Class | None = None


@dataclass
class _Class:
    """One class of the file, and the instances it builds."""

    name: str
    instances: list[_Instance]
    params: list[str] = field(default_factory=list)  # constructor parameters, in order
    slot_param: list[str | None] = field(default_factory=list)  # None: the same everywhere

    def arguments(self, instance: _Instance) -> list[tuple[str, Any]]:
        """The constructor arguments that build ``instance``."""
        given: dict[str, Any] = {}
        for (value, _), param in zip(instance.values, self.slot_param, strict=True):
            if param is not None:
                given.setdefault(param, value)
        return [(p, given[p]) for p in self.params]


class Exporter:
    """Writes one model's file: classes bottom-up (a block before the classes that use it)."""

    def __init__(self, plan: ModelPlan, spec: str, model: str | None):
        self.plan = plan
        self.spec = spec
        self.model = model
        self.imports = Imports()
        self.classes: list[_Class] = []
        self.by_decl: dict[_DeclKey, list[_Class]] = {}
        self.taken: set[str] = set(_FILE_NAMES)  # and the classes' names, once made
        self.instance_of: dict[int, _Instance] = {}  # by id of the plan
        self.values: list[tuple[Any, str]] = []  # the slots of the instance being shaped
        with torch.device("meta"):  # the module tree the init rules walk, drawing nothing
            self.tree = build(without_rules(plan))

    def source(self) -> str:
        instances = [_Instance(p, path) for path, p in models_with_paths(self.plan)]
        self.instance_of = {id(i.plan): i for i in instances}
        for key in self._decls_bottom_up(instances):
            self._make_classes(key, [i for i in instances if _decl_key(i.plan) == key])
        classes = "\n\n".join(self._class_text(c) for c in self.classes)
        return f"{self._header()}\n{self.imports.text(classes)}\n\n{classes}"

    # ------------------------------------------------------------ order and grouping
    def _decls_bottom_up(self, instances: list[_Instance]) -> list[_DeclKey]:
        """Blocks before their users (the spec allows no recursion, so this is a DAG)."""
        inner: dict[_DeclKey, set[_DeclKey]] = {}
        written: dict[_DeclKey, tuple[str, int, int, str]] = {}  # where the spec declares it
        for instance in instances:
            inner.setdefault(_decl_key(instance.plan), set()).update(
                _decl_key(p) for _, p in models_with_paths(instance.plan) if p is not
                instance.plan)
            span = instance.plan.decl.span if instance.plan.decl is not None else None
            written[_decl_key(instance.plan)] = (
                (span.path, span.line, span.column, instance.plan.name) if span is not None
                else ("", 0, 0, instance.plan.name))
        order: list[_DeclKey] = []

        def visit(key: _DeclKey) -> None:
            if key in order:
                return
            for below in sorted(inner[key], key=written.__getitem__):  # the same every run
                visit(below)
            order.append(key)

        visit(_decl_key(self.plan))
        return order

    def _make_classes(self, key: _DeclKey, instances: list[_Instance]) -> None:
        groups: dict[Any, list[_Instance]] = {}
        for instance in instances:
            self._shape(instance)
            assert instance.shape is not None
            groups.setdefault(instance.shape.key(), []).append(instance)
        made = []
        for number, members in enumerate(groups.values(), 1):
            name = python_name(key[1] if number == 1 else f"{key[1]}{number}", self.taken)
            self.taken.add(name)
            made.append(self._class(name, members))
        self.by_decl[key] = made
        self.classes += made

    def _class(self, name: str, members: list[_Instance]) -> _Class:
        made = _Class(name, members)
        by_values: dict[tuple[Any, ...], str] = {}
        for index in range(len(members[0].values)):
            column = [_typed(m.values[index][0]) for m in members]
            if len(set(column)) == 1:
                made.slot_param.append(None)
                continue
            param = by_values.get(tuple(column))
            if param is None:
                param = self._param_name(members, index, made.params)
                by_values[tuple(column)] = param
                made.params.append(param)
            made.slot_param.append(param)
        for member in members:
            member.cls = made
        return made

    def _param_name(self, members: list[_Instance], index: int, params: list[str]) -> str:
        """The block's parameter (or let) whose value is the slot's in every instance."""
        values = [_typed(m.values[index][0]) for m in members]
        first = members[0].plan
        declared = [p.name.name for p in first.decl.params or []] if first.decl else []
        for name in dict.fromkeys([*declared, *first.env]):
            if all(name in m.plan.env and _typed(m.plan.env[name]) == v
                   for m, v in zip(members, values, strict=True)):
                return self._free_param(name, params)
        return self._free_param(members[0].values[index][1], params)

    def _free_param(self, name: str, params: list[str]) -> str:
        """Not a name of the file (its classes included), nor another parameter's."""
        name = python_name(name, self.taken)
        base, number = name, 2
        while name in params:
            name, number = f"{base}_{number}", number + 1
        return name

    # ------------------------------------------------------------ an instance's shape
    def _shape(self, instance: _Instance) -> None:
        plan = instance.plan
        self.values = instance.values
        statements: list[Code] = []
        for index, (name, child) in enumerate(plan.children):
            statements += self._declared_before(plan, index)
            statements.append(Prefixed(f"self.{name} = ", self._code(child)))
        statements += self._declared_before(plan, len(plan.children))
        statements += [f"self.{name} = None" for name in plan.absent]
        root = self.tree.get_submodule(instance.path)
        rules = init_code(plan.rules, root, self._class_ref, self._literal, self._renamed_init)
        self.imports.need(rules.needs)
        instance.shape = _Shape(tuple(statements), self._methods(plan), tuple(rules.lines))

    def _declared_before(self, plan: ModelPlan, position: int) -> list[Code]:
        """Params, buffers and ties where the spec declares them (as netdsl.build does)."""
        found: list[Code] = [self._tensor(plan, t) for t in plan.tensors
                             if t.position == position]
        return found + [tie_text(t) for t in plan.ties if t.position == position]

    def _code(self, plan: Plan) -> Code:
        if isinstance(plan, LayerPlan):
            return self._layer(plan)
        if isinstance(plan, ModelPlan):
            return self._block_call(plan)
        if isinstance(plan, DictPlan):
            return Call("nn.ModuleDict({", tuple(Prefixed(f"{k!r}: ", self._code(p))
                                                  for k, p in plan.items), "})", compact=False)
        if isinstance(plan, ListPlan):
            if not plan.items:
                return "nn.ModuleList()"
            return Call("nn.ModuleList([", tuple(self._code(p) for p in plan.items), "])",
                        runs=True, compact=False)
        return self._sequential(plan)

    def _sequential(self, plan: SequentialPlan) -> Code:
        if plan.items and plan.items[0][0] is not None:  # named children: an OrderedDict
            self.imports.need({"OrderedDict"})
            return Call("nn.Sequential(OrderedDict([", tuple(
                Call("(", (repr(name), self._code(p)), ")") for name, p in plan.items), "]))",
                compact=False)
        return Call("nn.Sequential(", tuple(self._code(p) for _, p in plan.items), ")",
                    runs=True, compact=False)

    def _layer(self, plan: LayerPlan) -> Code:
        names = _param_names(plan.cls)
        args = [self._argument(v, names[i] if i < len(names) else "arg", plan.span)
                for i, v in enumerate(plan.args)]
        args += [Prefixed(f"{k}=", self._argument(v, k, plan.span))
                 for k, v in plan.kwargs.items()]
        return Call(f"{self._class_ref(plan.cls, plan.span)}(", tuple(args), ")")

    def _argument(self, value: Any, hint: str, span: Span) -> Code:
        if isinstance(value, LayerPlan):
            return self._layer(value)
        if is_scalar(value):
            self.values.append((value, hint))
            return slot(len(self.values) - 1)
        return self._literal(value, span)

    def _block_call(self, plan: ModelPlan) -> Code:
        inner = self.instance_of[id(plan)]
        assert inner.cls is not None
        args = tuple(Prefixed(f"{name}=", self._argument(value, name, plan.span or None))
                     for name, value in inner.cls.arguments(inner))
        return Call(f"{inner.cls.name}(", args, ")")

    def _tensor(self, plan: ModelPlan, tensor: TensorPlan) -> str:
        code = self._tensor_code(plan, tensor)
        if tensor.what == "param":
            grad = "" if tensor.requires_grad else ", requires_grad=False"
            return f"self.{tensor.name} = nn.Parameter({code}{grad})"
        persistent = "" if tensor.persistent else ", persistent=False"
        return f"self.register_buffer({tensor.name!r}, {code}{persistent})"

    def _tensor_code(self, plan: ModelPlan, tensor: TensorPlan) -> str:
        """The declaration's expression compiled again, as netdsl.tensors compiles it; checked
        against the code that runs (a let reassigned after the declaration would differ)."""
        decl = next((d for d in plan.decl._all(n.TensorDecl) if d.value.span == tensor.span),
                    None) if plan.decl is not None else None
        if decl is None:
            raise InternalError(f"cannot find the declaration of {tensor.name}", tensor.span)
        code = ExprCompiler(plan.name, {}, plan.env).value(decl.value)
        again = compile(f"def make():\n    return {code}\n", "<export>", "exec").co_consts
        made = next(c for c in again if inspect.iscode(c))
        runs = tensor.make.__code__
        if (made.co_code, made.co_names, made.co_consts) != (runs.co_code, runs.co_names,
                                                             runs.co_consts):
            fail(f"cannot export {tensor.what} '{tensor.name}': its expression uses a constant "
                 f"assigned again after it", tensor.span, codes.VALUE)
        text, needs = renamed(code, False, tensor.span)
        self.imports.need(needs)
        return numbers_as_slots(tidy(text), self.values, f"{tensor.name}_size")

    def _methods(self, plan: ModelPlan) -> tuple[str, ...]:
        """The forward and the defs: netdsl's generated functions, as they run; their numbers
        are slots, as the sizes of params are (LayerNorm2d's width)."""
        return tuple(numbers_as_slots(self._function_source(plan, f), self.values, "value")
                     for f in [plan.forward, *plan.methods.values()])

    def _function_source(self, plan: ModelPlan, function: Callable[..., Any]) -> str:
        try:
            source = inspect.getsource(function)
        except OSError as err:
            raise InternalError(f"the generated code of {plan.name} is no longer in the line "
                                f"cache ({err})", plan.span) from None
        text, needs = renamed(source, False, plan.span)
        self.imports.need(needs)
        return text

    # ------------------------------------------------------------ names the file uses
    def _class_ref(self, cls: Any, span: Span | None = None) -> str:
        """A torch or custom layer class; for a spec block (an init rule's type), the block's
        classes."""
        if not isinstance(cls, n.ModelDecl):
            return self.imports.layer(cls, span)
        names = [c.name for key, made in self.by_decl.items() if key[0] == id(cls) for c in made]
        if not names:  # the block's own rules select it: no other instance is below it
            return "type(self)"
        return names[0] if len(names) == 1 else f"({', '.join(names)})"

    def _literal(self, value: Any, span: Span | None = None) -> str:
        return self.imports.literal(value, span)

    def _renamed_init(self, code: str) -> str:
        return renamed(code, True, None)[0]

    # ------------------------------------------------------------ the text
    def _class_text(self, made: _Class) -> str:
        first = made.instances[0]
        assert first.shape is not None

        kept = _Kept(first.plan)

        def text(index: int, attribute: bool = False) -> str:
            param = made.slot_param[index]
            if param is None:
                return self._literal(first.values[index][0])
            return f"self.{kept[param]}" if attribute else param

        body = [_laid_out(fill(s, text), 2) for s in first.shape.statements]
        params = [f"{p}{annotation(list(_param_values(made, p)))}" for p in made.params]
        signature = Call("def __init__(", ("self", *params), ") -> None:")
        read = dict.fromkeys(made.slot_param[i] for m in first.shape.methods for i in slots_in(m))
        lines = [f"class {made.name}(nn.Module):",
                 INDENT + layout(signature, len(INDENT), len(INDENT)),
                 f"{INDENT * 2}super().__init__()",
                 *(f"{INDENT * 2}self.{kept[p]} = {p}" for p in read if p is not None),
                 *body,
                 *(f"{INDENT * 2}{line}" for line in first.shape.init)]
        functions = [function_text(str(fill(m, lambda i: text(i, True))))
                     for m in first.shape.methods]
        return "\n".join(lines) + "\n\n" + "\n".join(functions)

    def _header(self) -> str:
        decl = self.plan.decl
        names = [p.name.name for p in decl.params or []] if decl is not None else []
        values = ", ".join(f"{name}={self.plan.env[name]!r}" for name in names
                           if name in self.plan.env)
        model = self.model or self.plan.name
        lines = [f"# {model}, exported by `netdsl export` from {self.spec}.",
                 *_wrapped(f"# Parameters: {values or 'none'}"),
                 "# Plain PyTorch: this file does not need netdsl."]
        return "\n".join(lines) + "\n"


class _Kept(dict[str, str]):
    """Constructor parameter -> the attribute its forward reads it from: ``self.weight_size``,
    or ``self.weight_size_`` where a child, tensor or method has that name."""

    def __init__(self, plan: ModelPlan):
        super().__init__()
        self.members = {*dir(nn.Module), *(name for name, _ in plan.children),
                        *(t.name for t in plan.tensors), *plan.absent, *plan.methods}

    def __missing__(self, param: str) -> str:
        self[param] = python_name(param, self.members)
        self.members.add(self[param])  # and no other parameter's attribute
        return self[param]


def _param_values(made: _Class, param: str) -> Iterator[Any]:
    """The value a constructor parameter takes in each instance (for its annotation)."""
    for instance in made.instances:
        yield dict(made.arguments(instance))[param]


def _laid_out(code: Code, depth: int) -> str:
    indent = len(INDENT) * depth
    return " " * indent + layout(code, indent, indent)


def _typed(value: Any) -> tuple[type, Any]:
    """A value compared with its type: 1, 1.0 and True are three values here."""
    if isinstance(value, (tuple, list)):
        return type(value), tuple(_typed(v) for v in value)
    return type(value), value


def _wrapped(line: str) -> list[str]:
    words, lines, current = line.split(" "), [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > WIDTH:
            lines.append(current)
            current = "#  "
        current = f"{current} {word}" if current else word
    return [*lines, current]


def _decl_key(plan: ModelPlan) -> _DeclKey:
    return (id(plan.decl), plan.name)


def _param_names(cls: type) -> list[str]:
    try:
        return list(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return []


__all__ = ["Exporter", "export"]
