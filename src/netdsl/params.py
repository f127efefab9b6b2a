"""Params: a declaration's parameter list -> a checked signature, and calls bound to it.

One mechanism for models, blocks and file-level functions: names are checked once (no
duplicates, no reserved words, known types), arguments bind as Python binds them, values are
checked against the declared types, and defaults are evaluated left to right, so a default may
use the parameters before it.
"""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Sequence

from . import codes
from . import nodes as n
from .errors import Span, did_you_mean, fail
from .evaluate import evaluate
from .signatures import Arg, Signature
from .spectypes import PARAM_TYPES, SpecType
from .values import Env, Globals

# Literals: a name spelled like one could not be referred to.
RESERVED = frozenset({"true", "false", "none", "self"})


def check_name(ident: n.Ident, what: str) -> None:
    """A name the spec gives (a parameter, child, constant, variable) must be usable."""
    if keyword.iskeyword(ident.name):
        fail(f"'{ident.name}' is reserved in Python and cannot name a {what}",
             ident.span, codes.SYNTAX)
    if ident.name in RESERVED:
        fail(f"'{ident.name}' is reserved and cannot name a {what}", ident.span, codes.SYNTAX)


def param_type(param: n.Param) -> SpecType | None:
    if param.type is None:
        return None
    found = PARAM_TYPES.get(param.type.name)
    if found is None:
        fail(f"unknown parameter type '{param.type.name}'; use one of "
             f"{', '.join(PARAM_TYPES)}{did_you_mean(param.type.name, PARAM_TYPES)}",
             param.type.span, codes.UNKNOWN_NAME)
    none_default = isinstance(param.default, n.Constant) and param.default.value is None
    return found.or_none() if none_default else found


def signature_of(title: str, params: Sequence[n.Param], *, typed: bool) -> Signature:
    """The parameters as a Python signature, checked for duplicates, names and types."""
    seen: set[str] = set()
    built = []
    for p in params:
        check_name(p.name, "parameter")
        if p.name.name in seen:
            fail(f"'{p.name.name}' cannot name a parameter twice", p.name.span, codes.DUPLICATE)
        seen.add(p.name.name)
        if typed and p.type is None and not p.varargs:
            fail(f"parameter '{p.name.name}' needs a type: {p.name.name}: int (or float, bool, "
                 f"str, tuple, list, layer)", p.name.span, codes.TYPE)
        kind = inspect.Parameter.VAR_POSITIONAL if p.varargs else \
            inspect.Parameter.POSITIONAL_OR_KEYWORD
        annotation = param_type(p) or inspect.Parameter.empty
        default = inspect.Parameter.empty if p.default is None or p.varargs else None
        built.append(inspect.Parameter(p.name.name, kind, default=default,
                                       annotation=annotation))
    return Signature(title, tuple(built))


def bind(title: str, params: Sequence[n.Param], args: Sequence[Arg], kwargs: Sequence[Arg],
         call_span: Span, globs: Globals | None, *, typed: bool = True) -> Env:
    """Parameter values for a call: given values, then defaults, all type-checked."""
    signature = signature_of(title, params, typed=typed)
    bound = signature.bind(args, kwargs, call_span)
    env = Env(globals=globs, params=frozenset(p.name.name for p in params))
    for p, param in zip(params, signature.params, strict=True):
        name = p.name.name
        if name in bound:
            value = bound[name]
            env[name] = tuple(value) if p.varargs else value
        elif p.varargs:
            env[name] = ()
        else:
            assert p.default is not None
            value = evaluate(p.default, env)
            signature.check_type(param, Arg(value, p.default.span, name))
            env[name] = value
    return env
