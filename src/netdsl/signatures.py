"""Signatures: bind a call's arguments to a real Python signature and type-check the values.

One mechanism for torch layers, registered custom modules, ``torch.nn.init`` functions and the
spec's own blocks: positional order and keyword names come from ``inspect.signature``, value
types from the annotations, checked with pydantic in strict mode (so ``True`` is not an ``int``).
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import ConfigDict, TypeAdapter, ValidationError

from . import codes
from .errors import Span, did_you_mean, fail

Value = Any  # int | float | bool | str | None | tuple | list of those


@dataclass(frozen=True)
class Arg:
    """An evaluated argument with the span of its expression (and of its keyword, if any)."""

    value: Value
    span: Span
    name: str | None = None
    name_span: Span | None = None


@functools.lru_cache(maxsize=1024)
def _parameters(func: Callable[..., Any]) -> tuple[inspect.Parameter, ...]:
    """A callable's parameters, read once: an init rule binds its arguments for every parameter
    it sets (a ResNet-50: ~160 times a load)."""
    try:  # annotations written as strings (PEP 563) are resolved in the callable's module
        signature = inspect.signature(func, eval_str=True)
    except Exception:  # an annotation that cannot be resolved: keep it unchecked
        signature = inspect.signature(func)
    return tuple(signature.parameters.values())


@dataclass(frozen=True)
class Signature:
    """The parameters a callable accepts, minus the ones netdsl supplies itself."""

    title: str  # how messages name the callable, e.g. "Conv2d()"
    params: tuple[inspect.Parameter, ...]
    # Parameters a spec may not set (netdsl sets them): binding one, even by position, fails.
    reserved: frozenset[str] = frozenset()

    @classmethod
    def of(cls, title: str, func: Callable[..., Any], skip: int = 0) -> Signature:
        try:
            params = _parameters(func)
        except TypeError:  # unhashable: not kept
            params = _parameters.__wrapped__(func)
        return cls(title, params[skip:])

    def bind(self, args: Sequence[Arg], kwargs: Sequence[Arg], call_span: Span) -> dict[str, Any]:
        """Map arguments to parameter names as Python would, failing at the offending argument."""
        bound: dict[str, Any] = {}
        self._bind_positional(args, bound)
        self._bind_keywords(kwargs, bound)
        missing = [p.name for p in self.params
                   if p.name not in bound and p.default is inspect.Parameter.empty
                   and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if missing:
            names = ", ".join(f"'{m}'" for m in missing)
            fail(f"{self.title} is missing required argument{'s' if len(missing) > 1 else ''} "
                 f"{names}", call_span, codes.ARGUMENTS)
        return bound

    def _bind_positional(self, args: Sequence[Arg], bound: dict[str, Any]) -> None:
        positional = [p for p in self.params if p.kind in (p.POSITIONAL_ONLY,
                                                             p.POSITIONAL_OR_KEYWORD)]
        star = next((p for p in self.params if p.kind == p.VAR_POSITIONAL), None)
        for i, arg in enumerate(args):
            if i < len(positional):
                self._check_reserved(positional[i].name, arg.span)
                self.check_type(positional[i], arg)
                bound[positional[i].name] = arg.value
            elif star is not None:
                bound.setdefault(star.name, []).append(arg.value)
            else:
                fail(f"{self.title} takes {_count(len(positional), 'positional argument')} "
                     f"but {len(args)} were given", arg.span, codes.ARGUMENTS)

    def _bind_keywords(self, kwargs: Sequence[Arg], bound: dict[str, Any]) -> None:
        by_name = {p.name: p for p in self.params
                   if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        star = next((p for p in self.params if p.kind == p.VAR_KEYWORD), None)
        for arg in kwargs:
            assert arg.name is not None
            where = arg.name_span or arg.span
            if arg.name in bound:
                fail(f"{self.title} got multiple values for argument '{arg.name}'",
                     where, codes.ARGUMENTS)
            self._check_reserved(arg.name, where)
            param = by_name.get(arg.name)
            if param is None and star is None:
                fail(f"{self.title} got an unexpected keyword argument '{arg.name}'"
                     f"{did_you_mean(arg.name, by_name)}", where, codes.UNKNOWN_NAME)
            if param is not None:
                self.check_type(param, arg)
            bound[arg.name] = arg.value

    def _check_reserved(self, name: str, span: Span) -> None:
        if name in self.reserved:
            fail(f"{self.title} argument '{name}' is set by netdsl.load(..., {name}=...), "
                 f"not in the spec", span, codes.ARGUMENTS)

    def check_type(self, param: inspect.Parameter, arg: Arg) -> None:
        accepts = getattr(param.annotation, "accepts", None)
        if accepts is not None:  # a spec type (netdsl.spectypes)
            if not accepts(arg.value):
                fail(f"{self.title} argument '{param.name}' expects {param.annotation}, got "
                     f"{describe(arg.value)}", arg.span, codes.TYPE)
            return
        module_class = getattr(arg.value, "module_class", None)  # a layer given as argument
        if module_class is not None:
            if not _takes_module(param.annotation, module_class):
                fail(f"{self.title} argument '{param.name}' expects "
                     f"{type_name(param.annotation)}, got {describe(arg.value)}",
                     arg.span, codes.TYPE)
            return
        annotation = _implied(param)
        adapter = _adapter(annotation)
        if adapter is None:
            return
        try:
            adapter.validate_python(arg.value, strict=True)
        except ValidationError:
            fail(f"{self.title} argument '{param.name}' expects "
                 f"{type_name(annotation)}, got {describe(arg.value)}", arg.span, codes.TYPE)


def _implied(param: inspect.Parameter) -> Any:
    """The annotation, or for an unannotated flag (MultiheadAttention's ``bias=True``) ``bool``:
    ``bias=0`` is a mistake there as much as where torch annotates it."""
    if param.annotation is inspect.Parameter.empty and isinstance(param.default, bool):
        return bool
    return param.annotation


def _takes_module(annotation: Any, module_class: type) -> bool:
    """Whether an annotation admits an instance of ``module_class`` (unknown ones do)."""
    if annotation is inspect.Parameter.empty or annotation is Any or isinstance(annotation, str):
        return True
    if isinstance(annotation, type):
        return issubclass(module_class, annotation)
    options = typing.get_args(annotation)
    return not options or any(_takes_module(o, module_class) for o in options
                              if o is not type(None))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


@functools.cache
def _cached_adapter(annotation: Any) -> TypeAdapter[Any] | None:
    try:
        return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # an annotation pydantic cannot check (a tensor, a forward ref): skip it
        return None


def _adapter(annotation: Any) -> TypeAdapter[Any] | None:
    if annotation is inspect.Parameter.empty or annotation is Any or isinstance(annotation, str):
        return None
    try:
        return _cached_adapter(_spec_type(annotation))
    except TypeError:  # unhashable annotation
        return None


def _spec_type(annotation: Any) -> Any:
    """The annotation as spec values meet it: a ``torch.Size`` is written as a tuple of ints."""
    if annotation is torch.Size:
        return tuple[int, ...]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_spec_type(a) for a in args)]  # noqa: UP007
    return annotation


def type_name(annotation: Any) -> str:
    """``Union[int, tuple[int, int]]`` -> ``int | tuple[int, int]``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "none"
    if annotation is torch.Size:
        return "tuple[int, ...]"
    if origin is not None:
        inner = ", ".join(type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def describe(value: Value) -> str:
    """A value as messages show it: ``bool (True)``, ``str ('relu')``, ``layer (ReLU)``."""
    kind = "none" if value is None else _KINDS.get(type(value).__name__, type(value).__name__)
    shown = "none" if value is None else _shown(value)
    return kind if kind == shown else f"{kind} ({shown})"


# netdsl's own value types as messages name them.
_KINDS = {"LayerRef": "layer", "FunctionRef": "function", "Builtin": "function",
          "LayerPlan": "module"}
_MAX_SHOWN = 60


def _shown(value: Value) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 3] + "..."
