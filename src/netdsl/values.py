"""Values: what names stand for while a spec is checked, and the work budget that bounds it.

Constant expressions produce plain Python values (ints, floats, bools, strings, none, tuples,
lists) and two kinds of their own: a :class:`LayerRef` (a layer, a block or ``partial(...)`` of
one, used as a value: ``norm_layer: layer = BatchNorm2d``) and a :class:`FunctionRef` (a
file-level ``def``). An :class:`Env` holds one body's names over its file's globals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from . import codes
from . import nodes as n
from .errors import Span, fail
from .signatures import Arg
from .work import Budget

if TYPE_CHECKING:
    from .imports import Unit
    from .registry import Registry

Value = Any


@dataclass(eq=False, frozen=True)
class LayerRef:
    """A layer as a value: a torch class, a spec block or model, with arguments bound ahead.

    Torch code that receives one (``Conv2dNormActivation(..., norm_layer=BatchNorm2d)``) calls
    it like the class; a spec calls it like a layer (``norm_layer(planes)``).
    """

    name: str
    target: type[nn.Module] | n.ModelDecl
    unit: Unit | None = None  # the file of a spec declaration
    args: tuple[Arg, ...] = ()
    kwargs: tuple[Arg, ...] = ()

    @property
    def is_class(self) -> bool:
        return isinstance(self.target, type)

    def bind(self, args: list[Arg], kwargs: list[Arg]) -> LayerRef:
        """``partial``: more arguments bound; later keywords replace earlier ones."""
        given = {k.name for k in kwargs}
        kept = tuple(k for k in self.kwargs if k.name not in given)
        return LayerRef(self.name, self.target, self.unit, (*self.args, *args),
                        (*kept, *kwargs))

    def __call__(self, *args: Any, **kwargs: Any) -> nn.Module:
        assert isinstance(self.target, type)  # spec blocks never reach torch code (checked)
        bound = {k.name: k.value for k in self.kwargs if k.name}
        return self.target(*(a.value for a in self.args), *args, **{**bound, **kwargs})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayerRef):
            return NotImplemented
        return self.target is other.target and self._bound() == other._bound()

    def __hash__(self) -> int:
        return hash((id(self.target), len(self.args), len(self.kwargs)))

    def _bound(self) -> tuple[list[Any], dict[str | None, Any]]:
        return [a.value for a in self.args], {k.name: k.value for k in self.kwargs}

    def __repr__(self) -> str:
        if not self.args and not self.kwargs:
            return self.name
        parts = [repr(a.value) for a in self.args] + [f"{k.name}={k.value!r}"
                                                      for k in self.kwargs]
        return f"partial({', '.join([self.name, *parts])})"


@dataclass(eq=False, frozen=True)
class FunctionRef:
    """A file-level ``def``: a function on constants."""

    decl: n.DefDecl
    unit: Unit

    @property
    def name(self) -> str:
        return self.decl.name.name

    def __repr__(self) -> str:
        return f"{self.name}()"


class World:
    """What every file's globals share in one check: the layers, the budget, the evaluator."""

    def __init__(self, registry: Registry, budget: Budget,
                 evaluate: Callable[[n.Expr, Env], Value], builtins: Mapping[str, Value]):
        self.layers = registry.lookup
        self.layer_names = registry.names
        self.budget = budget
        self.evaluate = evaluate
        self.builtins = builtins
        self._globals: dict[int, Globals] = {}

    def globals(self, unit: Unit) -> Globals:
        if id(unit) not in self._globals:
            self._globals[id(unit)] = Globals(unit, self)
        return self._globals[id(unit)]


class Globals:
    """A file's names: its declarations and imports, file-level lets, then the layers."""

    def __init__(self, unit: Unit, world: World):
        self.unit = unit
        self.world = world
        self.budget = world.budget
        self._lets: dict[str, Value] = {}
        self._evaluating: set[str] = set()

    def lookup(self, name: str) -> Value:
        """The value of a global name; KeyError when there is none."""
        found = self.unit.scope.get(name)
        if found is not None:
            decl, unit = found
            return self._declared(name, decl, unit)
        if name in self.world.builtins:  # before the layers: no torchvision import for max()
            return self.world.builtins[name]
        cls = self.world.layers(name)
        if cls is None:
            raise KeyError(name)
        return LayerRef(name, cls)

    def names(self) -> list[str]:
        return list(self.unit.scope)

    def functions(self) -> list[str]:
        return [name for name, (decl, _) in self.unit.scope.items()
                if isinstance(decl, n.DefDecl)]

    def _declared(self, name: str, decl: Any, unit: Unit) -> Value:
        if isinstance(decl, n.DefDecl):
            return FunctionRef(decl, unit)
        if isinstance(decl, n.ModelDecl):
            return LayerRef(name, decl, unit)
        if unit is not self.unit:  # imported: evaluated once, in its own file
            return self.world.globals(unit).lookup(name)
        return self._let(name, decl)

    def _let(self, name: str, let: n.Let) -> Value:
        if name in self._lets:
            return self._lets[name]
        if name in self._evaluating:
            fail(f"'{name}' is defined in terms of itself", let.span, codes.RECURSION)
        self._evaluating.add(name)
        try:
            env = Env(globals=self)
            bind_target(let.target, self.world.evaluate(let.value, env), env, let.span)
        finally:
            self._evaluating.discard(name)
        self._lets.update(env)
        return self._lets[name]


class Env(dict[str, Value]):
    """One body's names (parameters, lets, loop variables) over its file's globals.

    ``params`` are the names a ``let`` may not assign again.
    """

    def __init__(self, values: Mapping[str, Value] | None = None, *,
                 globals: Globals | None = None, params: frozenset[str] = frozenset(),
                 notes: dict[str, str] | None = None):
        super().__init__(values or {})
        self.globals = globals
        self.params = params
        # What names that are not constants are (a child, a forward input), for messages.
        self.notes = {} if notes is None else notes

    def lookup(self, name: str) -> Value:
        """A name's value, own names first; KeyError when it has none."""
        if name in self:
            return self[name]
        if self.globals is None:
            raise KeyError(name)
        return self.globals.lookup(name)

    def has_constant(self, name: str) -> bool:
        """Whether a name is one of this body's or file's constants (layers not looked up)."""
        return name in self or (self.globals is not None and name in self.globals.unit.scope)

    def child(self, values: Mapping[str, Value] | None = None) -> Env:
        """A copy with more names: a comprehension's own scope."""
        env = Env(self, globals=self.globals, params=self.params, notes=self.notes)
        env.update(values or {})
        return env

    def copy(self) -> Env:
        return self.child()

    def known(self) -> Iterator[str]:
        """Names worth suggesting in "did you mean" messages."""
        yield from self
        if self.globals is not None:
            yield from self.globals.names()


def bind_target(target: n.Ident | n.TupleTarget, value: Value, env: dict[str, Value],
                span: Span) -> None:
    """``a, (b, c) = value``: names bound as Python unpacks, with located mistakes."""
    if isinstance(target, n.Ident):
        env[target.name] = value
        return
    if not isinstance(value, (tuple, list)):
        fail(f"cannot unpack {_kind(value)} into {len(target.items)} names",
             target.span, codes.TYPE)
    if len(value) != len(target.items):
        fail(f"cannot unpack {len(value)} values into {len(target.items)} names",
             target.span, codes.VALUE)
    for item, part in zip(target.items, value, strict=True):
        bind_target(item, part, env, span)


def _kind(value: Value) -> str:
    return "none" if value is None else type(value).__name__


def budget_of(env: Mapping[str, Value]) -> Budget | None:
    globs = getattr(env, "globals", None)
    return globs.budget if globs is not None else None
