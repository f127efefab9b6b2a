"""Import, layers: a built torch layer -> the constructor call that builds it again.

A ``torch.nn`` (or ``torchvision.ops``) layer keeps its constructor's arguments as attributes of
the same names (``Conv2d.kernel_size``, ``Dropout.p``), or as a parameter that is present or
``None`` (``bias``); one that is a module, as a child of the same name
(``TransformerEncoder.norm``), recovered the same way as a nested call. The few classes of
``_KEPT_AS`` keep some arguments elsewhere, under a path of their own. Each argument of the
constructor's signature is read back that way, or assumed to be its default; then the call is
checked by building it again on the meta device and comparing the two modules (repr, tensors,
attributes): a layer whose arguments cannot be read back is refused instead of imported wrong.
"""

from __future__ import annotations

import inspect
import keyword
import math
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from .errors import NetDSLError, Span
from .params import RESERVED
from .registry import Registry, layer_signature
from .signatures import Arg, Signature

Value = Any  # int | float | bool | str | None | tuple | list of those, or a LayerCall

# Where a type check needs a span: nothing of an import has a source location.
_NOWHERE = Span(path="<import>", line=1, column=1, end_line=1, end_column=1)
# Constructor parameters that are not the layer's configuration.
_NOT_ARGUMENTS = frozenset({"device", "dtype"})
_REGISTRY = Registry()
# Arguments a class keeps under another name, by their path in the module (torch records no
# such link). TransformerEncoder and TransformerDecoder deep-copy their layer into every entry
# of ``layers`` (the rebuild check compares all the copies); Transformer keeps its custom
# encoder and decoder, or the ones it builds, as ``encoder`` and ``decoder``; the transformer
# layers keep most of their configuration only in the layers they build.
_LAYER_SIZES = {"d_model": "self_attn.embed_dim", "nhead": "self_attn.num_heads",
                "dim_feedforward": "linear1.out_features", "dropout": "dropout.p",
                "layer_norm_eps": "norm1.eps", "batch_first": "self_attn.batch_first",
                "bias": "linear1.bias"}
_KEPT_AS: dict[type[nn.Module], dict[str, str]] = {
    nn.TransformerEncoder: {"encoder_layer": "layers.0"},
    nn.TransformerDecoder: {"decoder_layer": "layers.0"},
    nn.Transformer: {"custom_encoder": "encoder", "custom_decoder": "decoder"},
    nn.TransformerEncoderLayer: _LAYER_SIZES,
    nn.TransformerDecoderLayer: _LAYER_SIZES,
}


class ImportFailure(ValueError):
    """A module that netdsl cannot write as a spec, and why (a usage error of from_module)."""


@dataclass(frozen=True)
class LayerCall:
    """A layer by its registry name, with every argument of its signature (defaults included,
    so that instances of one block line up argument by argument)."""

    name: str
    params: tuple[inspect.Parameter, ...]
    values: tuple[Value, ...]


def registry_class(module: nn.Module) -> str | None:
    """The registry's name for the module's class, if the class is a layer of the language."""
    cls = type(module)
    return cls.__name__ if _REGISTRY.lookup(cls.__name__) is cls else None


def is_torch_nn(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.nn")


def recover(module: nn.Module, name: str, path: str) -> LayerCall:
    """The call that rebuilds ``module``; :class:`ImportFailure` when none does."""
    # A parameter whose default a spec cannot write (a class, a function) stays at its default:
    # the rebuild below checks that the module was built with it.
    params = tuple(p for p in layer_signature(type(module), name).params
                   if p.name not in _NOT_ARGUMENTS
                   and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                   and (p.default is inspect.Parameter.empty or is_literal(p.default)))
    read = [_read(module, p, path, name) for p in params]
    for values in (tuple(_shortened(p, v) for p, v in zip(params, read, strict=True)),
                   tuple(read)):
        call = LayerCall(name, params, values)
        if _rebuilds(module, call):
            return _defaulted(module, call)
    raise ImportFailure(f"{path} ({name}): rebuilding it as {name}{_shown(call)} gives a "
                        f"different module: {_difference(module, call)}")


def _defaulted(module: nn.Module, call: LayerCall) -> LayerCall:
    """Each argument that may as well be left out, left out (MultiheadAttention keeps
    ``kdim=embed_dim`` for its default ``kdim=None``)."""
    for i, param in enumerate(call.params):
        if param.default is not inspect.Parameter.empty and call.values[i] != param.default:
            tried = LayerCall(call.name, call.params,
                              (*call.values[:i], param.default, *call.values[i + 1:]))
            if _rebuilds(module, tried):
                call = tried
    return call


def _read(module: nn.Module, param: inspect.Parameter, path: str, name: str) -> Value:
    held = _KEPT_AS.get(type(module), {}).get(param.name, param.name)
    parent, _, attribute = held.rpartition(".")
    owner = module.get_submodule(parent)
    child = owner._modules.get(attribute)
    if isinstance(child, nn.Module):
        return _nested(child, f"{path}.{held}", f"{path} ({name}): argument '{param.name}'")
    tensors = {**owner._parameters, **owner._buffers}
    if attribute in tensors and isinstance(param.default, bool):
        return tensors[attribute] is not None  # bias=False leaves the parameter None
    if attribute in vars(owner) and attribute not in owner._modules:
        value = vars(owner)[attribute]
    elif param.default is not inspect.Parameter.empty:
        return param.default  # not kept: assumed, and the rebuild checks the assumption
    else:
        raise ImportFailure(f"{path} ({name}): the module does not keep its argument "
                            f"'{param.name}', so netdsl cannot write the call that builds it")
    value = tuple(value) if isinstance(value, torch.Size) else value
    if not is_literal(value):
        raise ImportFailure(f"{path} ({name}): argument '{param.name}' is "
                            f"{type(value).__name__} ({value!r}), which a spec cannot write")
    return value


def _nested(child: nn.Module, path: str, argument: str) -> LayerCall:
    """A module argument (at ``path``), as the nested call that rebuilds it."""
    child_name = registry_class(child)
    if child_name is None:
        cls = type(child)
        raise ImportFailure(f"{argument} is a {cls.__module__}.{cls.__qualname__}, which is not "
                            f"a layer of the language")
    return recover(child, child_name, path)


def is_literal(value: Value) -> bool:
    """Whether a value has a spec literal: numbers, strings, booleans, none, tuples, lists."""
    if value is None or isinstance(value, (bool, int)):
        return True
    if isinstance(value, str):  # a spec string is one line of printable text, tabs aside
        return all(c.isprintable() or c in "\t" for c in value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (tuple, list)):
        return all(is_literal(v) for v in value)
    return False


def _shortened(param: inspect.Parameter, value: Value) -> Value:
    """``(3, 3)`` as ``3`` where the annotation takes an int (the rebuild checks that the
    constructor expands it to the same tuple)."""
    if isinstance(value, tuple) and value and all(type(v) is int and v == value[0]
                                                    for v in value):
        return value[0] if accepts(param, value[0]) else value
    return value


def accepts(param: inspect.Parameter, value: Value) -> bool:
    """Whether a spec may pass ``value`` for ``param``: the strict check its arguments get."""
    try:
        Signature("", (param,)).check_type(param, Arg(value, _NOWHERE))
    except NetDSLError:
        return False
    return True


class _Fingerprint(NamedTuple):
    """What two modules of one class must share to be built by the same call."""

    text: str  # the repr
    tensors: list[tuple[str, tuple[int, ...], torch.dtype, bool]]
    attributes: list[tuple[str, list[tuple[str, str]]]]  # each submodule's plain values, by path


def _rebuilds(module: nn.Module, call: LayerCall) -> bool:
    key = (type(module), tuple(p.name for p in call.params), literal(call.values))
    if key not in _REBUILT:
        try:
            _REBUILT[key] = _fingerprint(_built(type(module), call))
        except Exception:  # torch refuses the arguments: this reading is not the one
            _REBUILT[key] = None
    rebuilt = _REBUILT[key]
    return rebuilt is not None and rebuilt == _fingerprint(module, _hints(module, rebuilt, call))


# Fingerprints of rebuilt layers, by class and call: a ResNet-152 has 150 Conv2d of a few kinds.
_REBUILT: dict[tuple[type[nn.Module], tuple[str, ...], str], _Fingerprint | None] = {}


def _built(cls: type[nn.Module], call: LayerCall) -> nn.Module:
    """The call made, on the meta device (each nested call made first). Warnings are the
    original's: torch gave them when it was built (TransformerEncoder's about nested tensors)."""
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(**{p.name: _built(_REGISTRY.lookup(v.name), v) if isinstance(v, LayerCall)
                      else v for p, v in zip(call.params, call.values, strict=True)})


def _fingerprint(module: nn.Module, hints: frozenset[str] = frozenset()) -> _Fingerprint:
    """The module's fingerprint, less the attributes of its own named in ``hints``."""
    tensors = [(name, tuple(t.shape), t.dtype, isinstance(t, nn.Parameter) and t.requires_grad)
               for name, t in (*module.named_parameters(), *module.named_buffers())]
    plain = [(path, sorted((k, repr(v)) for k, v in vars(sub).items()
                           if k != "training" and is_literal(v)
                           and not (sub is module and k in hints)))
             for path, sub in module.named_modules()]
    return _Fingerprint(repr(module), tensors, plain)


def _hints(module: nn.Module, rebuilt: _Fingerprint, call: LayerCall) -> frozenset[str]:
    """The values set on the layer under names its class does not know: neither an argument of
    its constructor nor an attribute the constructor sets (torchvision's Inception sets
    ``stddev`` on some of its convolutions and linears, for its own init loop to read). The
    layer's code reads only what its constructor sets, so they take no part in what it
    computes: the rebuilt layer goes without them. A value under an argument's name is kept
    (it may be configuration the constructor sets only for some arguments)."""
    _, own = rebuilt.attributes[0]  # named_modules() gives the layer itself first
    kept = {name for name, _ in own} | {p.name for p in call.params}
    return frozenset(k for k in vars(module) if k not in kept)


def _difference(module: nn.Module, call: LayerCall) -> str:
    """What the rebuilt layer lacks or has otherwise: the reason the import is refused."""
    theirs = _fingerprint(_built(type(module), call))
    ours = _fingerprint(module, _hints(module, theirs, call))
    for (path, mine), (_, other) in zip(ours.attributes, theirs.attributes, strict=False):
        rebuilt_values = dict(other)
        for key, value in mine:
            name = f"{path}.{key}" if path else key
            if key not in rebuilt_values:
                return f"it has the attribute {name} = {value}, which the constructor does not set"
            if rebuilt_values[key] != value:
                return f"its {name} is {value}, the rebuilt one's {rebuilt_values[key]}"
    if ours.tensors != theirs.tensors:
        return "its parameters or buffers differ"
    return f"{ours.text!r} is built as {theirs.text!r}"


def is_name(name: str) -> bool:
    """A name a spec can give a child, parameter or key."""
    return (name.isidentifier() and name.isascii() and name[:1].isalpha()
            and not keyword.iskeyword(name) and name not in RESERVED)


def literal(value: Value) -> str:
    """A value as spec text (a nested call with the arguments it does not leave at default)."""
    if isinstance(value, LayerCall):
        return value.name + _shown(value)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t") + '"'
    items = ", ".join(literal(v) for v in value)
    if isinstance(value, tuple):
        return f"({items},)" if len(value) == 1 else f"({items})"
    return f"[{items}]"


def _shown(call: LayerCall) -> str:
    return "(" + ", ".join(f"{p.name}={literal(v)}"
                           for p, v in zip(call.params, call.values, strict=True)
                           if v != p.default) + ")"


__all__ = ["ImportFailure", "LayerCall", "accepts", "is_literal", "is_name", "is_torch_nn",
           "literal", "recover", "registry_class"]
