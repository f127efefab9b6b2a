"""Functions: a call of a file-level ``def`` -> its value, by running its statements.

A function on constants is pure and total: its statements are assignments, ``if``, ``for`` over
a finite value, ``assert`` and ``return``; it sees only its parameters and its file's
declarations; it may call other functions but not itself (directly or through others); and
its steps count against the check's budget like any other evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import codes
from . import nodes as n
from .errors import Span, fail
from .evaluate import evaluate, iterate, truthy
from .params import bind
from .signatures import Arg, describe
from .spectypes import PARAM_TYPES
from .values import Env, FunctionRef, bind_target, budget_of

Value = Any


class _Returned(Exception):  # control flow, not an error
    def __init__(self, value: Value):
        self.value = value


def call_function(func: FunctionRef, args: list[Arg], kwargs: list[Arg], span: Span,
                  caller: Mapping[str, Value]) -> Value:
    budget = budget_of(caller)
    key = f"{func.unit.spec.path}:{func.name}"
    active = budget.active if budget is not None else []
    if key in active:
        chain = " -> ".join([*(k.rsplit(":", 1)[1] for k in active[active.index(key):]),
                             func.name])
        fail(f"function '{func.name}' calls itself ({chain}); recursion is not allowed",
             span, codes.RECURSION)
    globs = getattr(caller, "globals", None)
    world = globs.world if globs is not None else None
    env = bind(f"{func.name}()", func.decl.params, args, kwargs, span,
               world.globals(func.unit) if world is not None else None)
    active.append(key)
    try:
        result = _run_body(func.decl, env)
    finally:
        active.pop()
    _check_return(func.decl, result, span)
    return result


def _run_body(decl: n.DefDecl, env: Env) -> Value:
    try:
        run(decl.body, env)
    except _Returned as returned:
        return returned.value
    fail(f"function '{decl.name.name}' ends without returning a value", decl.span, codes.VALUE)


def _check_return(decl: n.DefDecl, value: Value, span: Span) -> None:
    if decl.returns is None:
        return
    wanted = PARAM_TYPES.get(decl.returns.name)
    if wanted is None:
        fail(f"unknown return type '{decl.returns.name}'; use one of {', '.join(PARAM_TYPES)}",
             decl.returns.span, codes.UNKNOWN_NAME)
    if not wanted.accepts(value):
        fail(f"{decl.name.name}() should return {wanted}, but returns {describe(value)}",
             span, codes.TYPE)


def run(body: list[n.Stmt], env: Env) -> None:
    """Run statements on constants; a ``return`` leaves by raising :class:`_Returned`."""
    for stmt in body:
        _stmt(stmt, env)


def _stmt(stmt: n.Stmt, env: Env) -> None:
    if isinstance(stmt, n.Assign):
        bind_target(stmt.target, evaluate(stmt.value, env), env, stmt.span)
    elif isinstance(stmt, n.AugAssign):  # on constants, x += v is x = x + v
        name = n.new(n.Name, span=stmt.target.span, id=stmt.target.name)
        value = n.new(n.BinOp, span=stmt.span, op=stmt.op, left=name, right=stmt.value)
        bind_target(stmt.target, evaluate(value, env), env, stmt.span)
    elif isinstance(stmt, n.Return):
        raise _Returned(evaluate(stmt.value, env))
    elif isinstance(stmt, n.IfStmt):
        for branch in stmt.branches:
            if truthy(evaluate(branch.test, env)):
                run(branch.body, env)
                return
        run(stmt.orelse or [], env)
    elif isinstance(stmt, n.For):
        budget = budget_of(env)
        for value in iterate(evaluate(stmt.iter, env), stmt.iter.span, budget):
            if budget is not None:
                budget.spend(1, stmt.span)
            bind_target(stmt.target, value, env, stmt.span)
            run(stmt.body, env)
    elif isinstance(stmt, n.Assert):
        check_assert(stmt, env)
    else:
        fail("a function on constants cannot call methods; assign a value instead",
             stmt.span, codes.SYNTAX)


def check_assert(stmt: n.Assert, env: Env) -> None:
    """``assert test, message``: the message (a string) is the error when the test fails."""
    if truthy(evaluate(stmt.test, env)):
        return
    if stmt.msg is None:
        fail("assertion failed", stmt.test.span, codes.VALUE)
    message = evaluate(stmt.msg, env)
    if not isinstance(message, str):
        fail(f"an assert's message is a string, got {describe(message)}", stmt.msg.span, codes.TYPE)
    fail(message, stmt.span, codes.VALUE)


__all__ = ["call_function", "check_assert", "run"]
