"""Body: a body's items -> the items that exist, with the constants each one sees.

Runs a body's build-time logic: ``let`` (a later ``let`` of a name assigns it again, as in a
Python function, and loops see the new value), ``assert``, ``if`` (only the branch whose
condition holds is kept) and ``for`` (its items once per value, spliced in place). Every other
item goes to a :class:`Sink` that knows what its body may hold: a model takes children and
declarations, a sequential takes modules and named modules, and so on. One scope per body, as
one Python function has one: container bodies nested inside share their model's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from . import codes
from . import nodes as n
from .errors import fail
from .evaluate import evaluate, iterate, truthy
from .functions import check_assert
from .params import check_name
from .values import Env, bind_target, budget_of


class Sink(Protocol):
    """Where a body's items go once its logic has run."""

    def item(self, item: Any, env: Env) -> None: ...

    def absent(self, names: list[str]) -> None:
        """Children declared only in branches not taken: torchvision's ``downsample = None``."""

    def broken(self, names: list[str]) -> None:
        """Names whose definition failed (already reported): later uses say nothing more."""

    def defined(self, name: str) -> str | None:
        """What a name is already, if a let may not take it (``"child"``), else None."""


Collect = Callable[[], AbstractContextManager[Any]]


def run(items: list[Any], env: Env, sink: Sink, collect: Collect) -> None:
    """Run a body: each item in order, a mistake reported and the next item tried."""
    for item in items:
        with collect() as outcome:
            _item(item, env, sink, collect)
        if outcome.failed:
            sink.broken(_defined_names(item))


def _item(item: Any, env: Env, sink: Sink, collect: Collect) -> None:
    if isinstance(item, n.Let):
        assign(item, env, sink)
    elif isinstance(item, n.Assert):
        check_assert(item, env)
    elif isinstance(item, n.IfItem):
        _if(item, env, sink, collect)
    elif isinstance(item, n.ForItem):
        _for(item, env, sink, collect)
    else:
        sink.item(item, env)


def assign(let: n.Let, env: Env, sink: Sink) -> None:
    value = evaluate(let.value, env)
    for ident in n.target_names(let.target):
        check_name(ident, "constant")
        if ident.name in env.params:
            fail(f"'{ident.name}' is a parameter; a let cannot assign it again (use another "
                 f"name)", ident.span, codes.DUPLICATE)
        what = sink.defined(ident.name)
        if what is not None:
            fail(f"'{ident.name}' is already a {what}; a constant needs another name",
                 ident.span, codes.DUPLICATE)
    bind_target(let.target, value, env, let.span)


def _if(item: n.IfItem, env: Env, sink: Sink, collect: Collect) -> None:
    chosen: list[Any] | None = None
    skipped: list[list[Any]] = []
    for branch in item.branches:
        if chosen is None and truthy(evaluate(branch.test, env)):
            chosen = branch.body
        else:
            skipped.append(branch.body)
    if chosen is None:
        chosen = item.orelse or []
    elif item.orelse:
        skipped.append(item.orelse)
    run(chosen, env, sink, collect)
    sink.absent([name for body in skipped for name in _child_names(body)])


def _for(item: n.ForItem, env: Env, sink: Sink, collect: Collect) -> None:
    """The body once per value. The loop's variables name each value for the body only (a
    forward may use the names again); lets made inside the loop stay, as in Python."""
    budget = budget_of(env)
    names = [ident.name for ident in n.target_names(item.target)]
    for ident in n.target_names(item.target):
        check_name(ident, "loop variable")
        if ident.name in env.params:
            fail(f"loop variable '{ident.name}' hides a parameter", ident.span, codes.DUPLICATE)
    saved = {name: env[name] for name in names if name in env}
    try:
        for value in iterate(evaluate(item.iter, env), item.iter.span, budget):
            if budget is not None:
                budget.spend(1, item.span)
            bind_target(item.target, value, env, item.span)
            run(item.body, env, sink, collect)
    finally:
        for name in names:
            env.pop(name, None)
        env.update(saved)


def _child_names(body: list[Any]) -> Iterator[str]:
    """Children a body declares by a written name (also inside its ifs and fors)."""
    for item in n.walk_items(body):
        if isinstance(item, n.Child) and isinstance(item.name, n.Ident):
            yield item.name.name
        elif isinstance(item, n.TensorDecl):
            yield item.name.name


def _defined_names(item: Any) -> list[str]:
    if isinstance(item, n.Let):
        return [i.name for i in n.target_names(item.target)]
    if isinstance(item, n.Child) and isinstance(item.name, n.Ident):
        return [item.name.name]
    if isinstance(item, n.TensorDecl):
        return [item.name.name]
    if isinstance(item, (n.IfItem, n.ForItem)):
        names = [i.name for sub in n.walk_items([item])
                 if isinstance(sub, n.Let) for i in n.target_names(sub.target)]
        return names + list(_child_names([item]))
    return []


def key_of(key: n.Ident | n.FString, env: Env) -> str:
    """A child's or key's name: as written, or the f-string's text."""
    if isinstance(key, n.Ident):
        return key.name
    value = evaluate(key, env)
    assert isinstance(value, str)
    return value


__all__ = ["Sink", "assign", "key_of", "run"]
