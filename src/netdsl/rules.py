"""Rules: a model's ``init { ... }`` blocks -> resolved init rules (:class:`RulePlan`).

Resolves each rule's function (any ``torch.nn.init`` initialiser) and target (a torch or custom
layer type, a spec block, a path glob or ``Module``), keeps the init block's ``let`` constants a
rule needs (they are evaluated per parameter, with ``fan_in`` / ``fan_out``), and takes the
rules under an ``if`` whose condition holds. Arguments that do not depend on the parameter are
checked here; the others when the rules are applied (:mod:`netdsl.initialize`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from torch import nn

from . import codes
from . import nodes as n
from .errors import did_you_mean, fail
from .evaluate import evaluate, evaluate_args, truthy
from .functions import check_assert
from .params import check_name
from .plan import RulePlan
from .signatures import Signature
from .values import Env, LayerRef

FAN_NAMES = frozenset({"fan_in", "fan_out"})


@functools.cache
def init_functions() -> dict[str, Callable[..., Any]]:
    """``torch.nn.init``'s in-place initialisers, by name without the trailing underscore."""
    return {name[:-1]: getattr(nn.init, name) for name in dir(nn.init)
            if name.endswith("_") and not name.startswith("_")
            and callable(getattr(nn.init, name))}


def plan_rules(inits: list[tuple[n.Init, Env]], taken: set[str],
               collect: Callable[[], AbstractContextManager[Any]]) -> list[RulePlan]:
    """The rules of a model's init blocks, each with the constants where it is written.

    ``taken`` holds the names of the model's children and constants (an init let may not
    reuse one); ``collect`` records a mistake and carries on with the next item.
    """
    rules: list[RulePlan] = []
    for index, (init, env) in enumerate(inits):  # each init block is one pass, in order
        lets: list[n.Let] = []
        for item in _items(init.items, env, lets, collect):
            with collect():
                if isinstance(item, n.Let):
                    _init_let(item, lets, env, taken)
                else:
                    rules.append(_rule(item, env, lets, index))
    return rules


def _items(items: list[Any], env: Env, lets: list[n.Let],
           collect: Callable[[], AbstractContextManager[Any]]) -> Iterator[Any]:
    """The init items that apply: those under an ``if`` only when its condition holds."""
    for item in items:
        if isinstance(item, n.IfItem):
            with collect():
                body = _branch(item, env, lets)
                yield from _items(body, env, lets, collect)
        elif isinstance(item, n.Assert):
            with collect():
                check_assert(item, env)
        elif isinstance(item, (n.Let, n.InitRule)):
            yield item
        else:
            with collect():
                fail(f"an init block holds init rules (Linear.weight: normal(0, 0.01)), lets "
                     f"and ifs, not {_what(item)}", item.span, codes.INIT)


def _branch(item: n.IfItem, env: Env, lets: list[n.Let]) -> list[Any]:
    for branch in item.branches:
        per_parameter = n.names_in(branch.test) & ({let_name(x) for x in lets} | FAN_NAMES)
        if per_parameter:
            fail(f"'{sorted(per_parameter)[0]}' is known per parameter; an if in init tests "
                 f"the model's constants", branch.test.span, codes.INIT)
        if truthy(evaluate(branch.test, env)):
            return branch.body
    return item.orelse or []


def _what(item: Any) -> str:
    kinds = {n.Child: "children", n.ForItem: "for loops", n.Forward: "a forward",
             n.Init: "another init block", n.InputDecl: "input declarations",
             n.TensorDecl: "params and buffers (they belong in the model's body)",
             n.TieDecl: "ties (they belong in the model's body)"}
    return next((text for kind, text in kinds.items() if isinstance(item, kind)), "this item")


def let_name(let: n.Let) -> str:
    return let.target.name if isinstance(let.target, n.Ident) else ""


def _init_let(let: n.Let, lets: list[n.Let], env: Env, taken: set[str]) -> None:
    if not isinstance(let.target, n.Ident):
        fail("an init let names one value", let.target.span, codes.INIT)
    check_name(let.target, "constant")
    name = let.target.name
    if name in FAN_NAMES or name in taken or name in env or any(
            let_name(other) == name for other in lets):
        fail(f"'{name}' is already defined", let.target.span, codes.DUPLICATE)
    lets.append(let)


def _rule(rule: n.InitRule, env: Env, lets: list[n.Let], index: int) -> RulePlan:
    functions = init_functions()
    name = rule.func.name.removesuffix("_")
    func = functions.get(name)
    if func is None:
        fail(f"unknown init function '{rule.func.name}'{did_you_mean(name, functions)}",
             rule.func.span, codes.UNKNOWN_NAME)
    target = _target(rule, env)
    needed = n.names_in(rule)
    used_lets = []
    for let in reversed(lets):  # only the lets this rule needs, directly or through others
        if let_name(let) in needed:
            used_lets.insert(0, let)
            needed |= n.names_in(let.value)
    plan = RulePlan(rule, func, target, env, used_lets, bool(needed & FAN_NAMES), index)
    if not plan.uses_fan:  # otherwise arguments depend on each parameter: checked when applied
        rule_arguments(plan, {})
    return plan


def _target(rule: n.InitRule, env: Env) -> type[nn.Module] | n.ModelDecl | None:
    """The class (or spec block) a type rule selects."""
    if rule.target_kind != "type":
        return None
    try:
        value = env.lookup(rule.target)
    except KeyError:
        value = None
    if not isinstance(value, LayerRef) or value.args or value.kwargs:
        names = env.globals.world.layer_names() if env.globals is not None else []
        fail(f"unknown layer type '{rule.target}'{did_you_mean(rule.target, names)}",
             rule.target_span, codes.UNKNOWN_NAME)
    if isinstance(value.target, n.ModelDecl) and value.target.value is not None:
        fail(f"'{rule.target}' is declared as another module ({_declared(value.target)}); "
             f"select what it builds by that module's type or by path",
             rule.target_span, codes.INIT)
    if isinstance(value.target, n.ModelDecl):
        _check_own_param(rule, value.target, env)
    return value.target


def _check_own_param(rule: n.InitRule, decl: n.ModelDecl, env: Env) -> None:
    """``Head.weight`` selects a block's own ``param weight``: without one it would match
    nothing, silently (and a block named ``Linear`` hides torch's Linear from the rule)."""
    if rule.param == "*" or rule.subpath:
        return
    own = {t.name.name for t in decl._all(n.TensorDecl) if t.what == "param"}
    if rule.param in own:
        return
    hidden = env.globals.world.layers(rule.target) if env.globals is not None else None
    shadow = (f"; the {decl.kind} hides torch's {rule.target} of the same name"
              if hidden is not None else "")
    fail(f"'{rule.target}' is the {decl.kind} declared at {decl.name.span}, which has no "
         f"parameter '{rule.param}' of its own: select its children's by path below it "
         f"({rule.target}.<child>.{rule.param}){shadow}", rule.target_span, codes.INIT)


def _declared(decl: n.ModelDecl) -> str:
    value = decl.value
    return f"= {value.name.name}(...)" if isinstance(value, n.Layer) else f"= {value.kind}"


def rule_arguments(plan: RulePlan, fans: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Evaluate an init rule's arguments and bind them to the init function's signature."""
    rule = plan.rule
    env = plan.env.child(fans)
    for let in plan.lets:
        env[let_name(let)] = evaluate(let.value, env)
    args, kwargs = evaluate_args(rule.args, rule.kwargs, env)
    signature = Signature.of(f"{rule.func.name}()", plan.func, skip=1)
    signature.bind(args, kwargs, rule.span)
    return [a.value for a in args], {k.name: k.value for k in kwargs if k.name}


__all__ = ["init_functions", "plan_rules", "rule_arguments"]
