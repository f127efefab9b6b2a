"""Expectations: ``expect output: [...]`` and ``expect params: N``, checked after the shape pass.

``netdsl check`` (and :func:`netdsl.check`) verify them on the model as declared, with its default
parameters; a failed expectation is a located error that says what was found instead.
"""

from __future__ import annotations

from typing import Any

import torch

from . import codes
from . import nodes as n
from .errors import NetDSLError, fail
from .evaluate import evaluate
from .models import dimension
from .plan import ModelPlan
from .shapes import Trace
from .signatures import describe


def check_expectations(plan: ModelPlan, trace: Trace, params: int) -> list[NetDSLError]:
    errors = []
    for expect, env in plan.expects:
        try:
            if expect.what.name == "params":
                _params(expect, env, params)
            else:
                _output(expect, env, plan, trace)
        except NetDSLError as err:
            errors.append(err)
    return errors


def _params(expect: n.Expect, env: dict[str, Any], found: int) -> None:
    wanted = evaluate(expect.value, env)
    if not isinstance(wanted, int) or isinstance(wanted, bool):
        fail(f"expect params takes an integer, got {describe(wanted)}",
             expect.value.span, codes.TYPE)
    if wanted != found:
        fail(f"expected {wanted:,} parameters, but the model has {found:,} "
             f"(difference {found - wanted:+,})", expect.span, codes.EXPECT)


def _output(expect: n.Expect, env: Any, plan: ModelPlan, trace: Trace) -> None:
    if not isinstance(expect.value, n.ListExpr):
        fail("expect output takes a shape, such as [N, 10]", expect.value.span, codes.TYPE)
    if not plan.inputs:
        fail("expect output needs input declarations (input x: [N, ...])",
             expect.span, codes.EXPECT)
    wanted = [dimension(d, env) for d in expect.value.items]
    sizes = {name: size for size, name in trace.symbols.items()}
    for output in trace.outputs:
        if not isinstance(output, torch.Tensor):
            fail(f"expected a tensor output {_text(wanted)}, but forward returns "
                 f"{type(output).__name__}", expect.span, codes.EXPECT)
        if [sizes.get(d, d) if isinstance(d, str) else d for d in wanted] != list(output.shape):
            fail(f"expected output {_text(wanted)}, but the forward returns "
                 f"{trace.described(output)}", expect.span, codes.EXPECT)


def _text(dims: list[int | str]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"
