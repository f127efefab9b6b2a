"""Tensors: ``param`` / ``buffer`` / ``tie`` declarations -> TensorPlan / TiePlan.

A declaration's expression is compiled like a forward expression (the same closed op table,
only validated names and literals in the generated code) into a function that makes the tensor
when the module is built, so the random draws of ``empty(1, n, d).normal_(std=0.02)`` happen
exactly where the hand-written ``__init__`` makes them. At check time the function runs once on
the meta device: its shape and dtype are known (and counted against the limits) before anything
is allocated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from . import codes
from . import nodes as n
from .errors import Span, fail, first_line
from .evaluate import evaluate
from .forward_expr import VALUE, ExprCompiler
from .plan import LayerPlan, ModelPlan, Plan, TensorPlan, TiePlan, children_of
from .signatures import describe

# The keyword options of each declaration: nn.Parameter's and register_buffer's.
OPTIONS = {"param": "requires_grad", "buffer": "persistent"}


def plan_tensor(decl: n.TensorDecl, model: str, env: Mapping[str, Any], position: int
                ) -> TensorPlan:
    make = _compile(decl, model, env)
    plan = TensorPlan(decl.what, decl.name.name, make, decl.value.span, position)
    _options(decl, plan, env)
    tensor = _on_meta(plan, decl.value.span)
    if decl.what == "param" and plan.requires_grad and not (
            tensor.is_floating_point() or tensor.is_complex()):
        fail(f"a param that requires grad is a floating-point tensor, got {tensor.dtype} (make "
             f"it a buffer, or write param(requires_grad=false))", decl.value.span, codes.TYPE)
    plan.shape, plan.dtype = tuple(tensor.shape), tensor.dtype
    return plan


def _compile(decl: n.TensorDecl, model: str, env: Mapping[str, Any]) -> Callable[[], Any]:
    compiler = ExprCompiler(model, {}, env, where=f"in {decl.what} '{decl.name.name}'")
    compiled = compiler.expr(decl.value)
    compiler.require_value(compiled, decl.value.span)
    if compiled.kind != VALUE:
        fail(f"a {decl.what} is a tensor made by torch's functions (zeros(n), "
             f"empty(1, n).normal_(std=0.02)), got {describe(compiled.const)}",
             decl.value.span, codes.TYPE)
    filename = f"<netdsl {decl.span.path}:{model}.{decl.name.name}>"
    code = compile(f"def make():\n    return {compiled.code}\n", filename, "exec")
    exec(code, compiler.namespace)  # noqa: S102  # netdsl: generated-code
    make: Callable[[], Any] = compiler.namespace.pop("make")
    return make


def _options(decl: n.TensorDecl, plan: TensorPlan, env: Mapping[str, Any]) -> None:
    if decl.args:
        fail(f"{decl.what} options are keywords: {decl.what}({OPTIONS[decl.what]}=false)",
             decl.args[0].span, codes.ARGUMENTS)
    for option in decl.options:
        if option.name.name != OPTIONS[decl.what]:
            fail(f"unknown {decl.what} option '{option.name.name}' (a {decl.what} takes "
                 f"{OPTIONS[decl.what]}=...)", option.name.span, codes.UNKNOWN_NAME)
        value = evaluate(option.value, env)
        if not isinstance(value, bool):
            fail(f"{option.name.name} is true or false, got {describe(value)}",
                 option.value.span, codes.TYPE)
        setattr(plan, OPTIONS[decl.what], value)


def _on_meta(plan: TensorPlan, span: Span) -> torch.Tensor:
    tensor = make_tensor(plan, torch.device("meta"))
    if not isinstance(tensor, torch.Tensor):
        fail(f"a {plan.what} is a tensor, got {describe(tensor)}", span, codes.TYPE)
    return tensor


def make_tensor(plan: TensorPlan, device: torch.device | None = None) -> Any:
    """Run the declaration's expression; torch's own errors are located at it."""
    try:
        if device is None:
            return plan.make()
        with device:
            return plan.make()
    except Exception as err:
        fail(f"{plan.what} '{plan.name}': {first_line(err)}", plan.span, codes.VALUE)


# ---------------------------------------------------------------- ties


def plan_tie(decl: n.TieDecl, children: Mapping[str, Plan], tensors: Mapping[str, TensorPlan],
             position: int) -> TiePlan:
    """Both sides must name a parameter of what is already declared."""
    shapes = [_check_path(side, children, tensors) for side in (decl.source, decl.target)]
    if None not in shapes and shapes[0] != shapes[1]:
        fail(f"cannot tie {_dotted(decl.target)} {list(shapes[1] or ())} to "
             f"{_dotted(decl.source)} {list(shapes[0] or ())}: the shapes differ",
             decl.span, codes.SHAPE)
    return TiePlan([i.name for i in decl.target], [i.name for i in decl.source], decl.span,
                   position)


def _dotted(path: list[n.Ident]) -> str:
    return ".".join(i.name for i in path)


def _check_path(path: list[n.Ident], children: Mapping[str, Plan],
                tensors: Mapping[str, TensorPlan]) -> tuple[int, ...] | None:
    """The shape of the parameter a path names, when it is known before the shape pass."""
    head = path[0]
    if head.name not in children:
        where = "" if head.name not in tensors else " (tie parameters of children)"
        fail(f"'{head.name}' is not a child declared before this tie{where}",
             head.span, codes.UNKNOWN_NAME)
    plan: Plan = children[head.name]
    for part in path[1:-1]:
        found = dict(children_of(plan))
        if part.name not in found:
            fail(f"'{part.name}' is not a child of '{head.name}'", part.span, codes.UNKNOWN_NAME)
        plan = found[part.name]
    last = path[-1]
    shapes = _parameter_shapes(plan)
    if shapes is None:
        return None
    if last.name not in shapes:
        fail(f"'{last.name}' is not a parameter of {_what(plan)} (it has "
             f"{', '.join(shapes) or 'none'})", last.span, codes.UNKNOWN_NAME)
    return shapes[last.name]


def _parameter_shapes(plan: Plan) -> dict[str, tuple[int, ...]] | None:
    """A layer's or block's own parameters; None when not known before the shape pass."""
    if isinstance(plan, ModelPlan):
        return {t.name: t.shape for t in plan.tensors if t.what == "param"}
    if not isinstance(plan, LayerPlan):
        return {}
    if not plan.complete:
        return None
    from .build import build_layer  # build imports the plans this module makes

    with torch.device("meta"):
        return {name: tuple(p.shape)
                for name, p in build_layer(plan).named_parameters(recurse=False)}


def _what(plan: Plan) -> str:
    return plan.call_text() if isinstance(plan, LayerPlan) else f"'{getattr(plan, 'name', '')}'"


__all__ = ["make_tensor", "plan_tensor", "plan_tie"]
