"""Registry: the layer names a spec may use, found by introspecting ``torch.nn`` and
``torchvision.ops``.

Every public ``torch.nn`` module class is a layer under its own name, except the containers that
the language spells as blocks; so is every layer module of ``torchvision.ops``
(``StochasticDepth``, ``Conv2dNormActivation``, ...), imported the first time a spec names a
layer torch.nn does not have. Custom modules join only from Python
(``netdsl.load(..., modules={"Name": cls})``) or from the user's own configuration
(``netdsl check --modules mypkg.layers``, ``[tool.netdsl] modules`` in pyproject.toml); nothing
is ever looked up by a string from a spec outside this table.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from torch import nn

from . import codes
from .errors import NetDSLError, UsageTypeError
from .signatures import Signature

# Spelled as `sequential`, `list` and `dict` blocks, or not layers at all.
_NOT_LAYERS = {"Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList",
               "ParameterDict", "Container"}

# Arguments netdsl supplies itself: the device comes from load(device=...).
SUPPLIED = frozenset({"device"})


@functools.lru_cache(maxsize=1)
def torch_layers() -> Mapping[str, type[nn.Module]]:
    """Every public ``torch.nn`` module class by name, in alphabetical order."""
    found: dict[str, type[nn.Module]] = {}
    for name in sorted(dir(nn)):
        obj = getattr(nn, name)
        if (not name.startswith("_") and inspect.isclass(obj) and issubclass(obj, nn.Module)
                and name not in _NOT_LAYERS):
            found[name] = obj
    return found


@functools.lru_cache(maxsize=1)
def torchvision_layers() -> Mapping[str, type[nn.Module]]:
    """torchvision's layer modules (``torchvision.ops``), by name; imported on first use."""
    try:
        import torchvision.ops as ops
    except ImportError:  # torchvision is a dependency, but a broken install must not crash
        return {}
    found: dict[str, type[nn.Module]] = {}
    for name in sorted(getattr(ops, "__all__", [])):
        obj = getattr(ops, name, None)
        if not name.startswith("_") and inspect.isclass(obj) and issubclass(obj, nn.Module):
            found[name] = obj
    return found


def module_layers(module: ModuleType) -> dict[str, type[nn.Module]]:
    """The public nn.Module classes a Python module defines (or lists in ``__all__``)."""
    names = getattr(module, "__all__", None) or [
        name for name, obj in vars(module).items()
        if inspect.isclass(obj) and obj.__module__ == module.__name__]
    found = {}
    for name in names:
        obj = getattr(module, name, None)
        if not name.startswith("_") and inspect.isclass(obj) and issubclass(obj, nn.Module):
            found[name] = obj
    return found


@functools.cache
def layer_signature(cls: type[nn.Module], name: str) -> Signature:
    sig = Signature.of(f"{name}()", _constructor(cls), skip=1)
    return Signature(sig.title, sig.params, reserved=SUPPLIED)


def _constructor(cls: type[nn.Module]) -> Any:
    """``__init__``, or its first typed overload where it only takes ``*args, **kwargs``.

    LSTM, GRU and RNN declare their real parameters with ``typing.overload`` only.
    """
    init = cls.__init__
    kinds = {p.kind for p in inspect.signature(init).parameters.values()}
    if kinds <= {inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_POSITIONAL,
                 inspect.Parameter.VAR_KEYWORD}:
        for overload in typing.get_overloads(init):
            params = inspect.signature(overload).parameters.values()
            if not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
                return overload
    return init


@dataclass(frozen=True)
class Registry:
    """Layers available to one load: torch.nn plus the custom modules given from Python."""

    custom: Mapping[str, type[nn.Module]] = field(default_factory=dict)

    @classmethod
    def with_modules(cls, modules: Mapping[str, type[nn.Module]] | None) -> Registry:
        if modules is not None and not isinstance(modules, Mapping):
            raise UsageTypeError(f"modules= takes a mapping of layer names to nn.Module classes, "
                            f"got {type(modules).__name__}")
        for name, module in (modules or {}).items():
            if not (isinstance(name, str) and name.isidentifier() and not name.startswith("_")):
                raise NetDSLError(f"custom module name {name!r} is not a valid layer name",
                                  code=codes.VALUE)
            if not (inspect.isclass(module) and issubclass(module, nn.Module)):
                raise NetDSLError(f"custom module {name!r} must be a torch.nn.Module subclass, "
                                  f"got {module!r}", code=codes.TYPE)
        return cls(dict(modules or {}))

    def lookup(self, name: str) -> type[nn.Module] | None:
        found = self.custom.get(name) or torch_layers().get(name)
        if found is None and name[:1].isupper():  # layer names are capitalised
            found = torchvision_layers().get(name)
        return found

    def names(self) -> list[str]:
        return [*self.custom, *torch_layers(), *torchvision_layers()]


__all__ = ["Registry", "layer_signature", "module_layers", "torch_layers", "torchvision_layers"]
