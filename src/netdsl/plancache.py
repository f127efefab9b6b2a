"""The plan cache: a spec compiled again in one process is built, not checked again.

A training script loads its model at start-up, a notebook re-runs the cell that loads a spec, a
test loads one spec in every test: each time, the check and the shape pass would give the same
plan. A checked plan is kept by its recipe (pickling.Recipe: the texts of the spec and of every
file it imports, the model, the parameters, the custom modules and the limits), so an edited file
or another parameter is another key. A build does not change a plan, so a kept one is shared.

Only plain parameter values (numbers, strings, None, classes and lists, tuples and dicts of them)
make a key: the recipe says other objects by their repr, which need not tell two of them apart.
Classes (custom modules, a class given as a parameter) are held by identity, so a class defined
again (a notebook cell run twice) is a new key even under its old name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .kept import Kept
from .pickling import Recipe
from .plan import ModelPlan


@dataclass
class Checked:
    plan: ModelPlan
    counts: tuple[int, int] | None = None  # parameters and buffer elements, once counted


_plans: Kept[Checked] = Kept(32)


def checked(made: Recipe, make: Callable[[], ModelPlan]) -> Checked:
    """The checked plan of ``made``: kept from an earlier compile, or made (and kept)."""
    key = _key(made)
    found = _plans.get(key) if key is not None else None
    if found is None:
        found = Checked(make())  # an error here keeps nothing
        if key is not None:
            _plans.put(key, found)
    return found


def _key(made: Recipe) -> tuple[Any, ...] | None:
    if not all(_plain(value) for _, value in made.params):
        return None
    try:
        text = made.key()
    except ValueError:  # an int too long for repr (p=10**5000): the check says so, uncached
        return None
    return text, made.modules, tuple(_classes([v for _, v in made.params]))


def _classes(value: Any) -> list[type]:
    """The classes among plain values, held in the key by identity (the recipe names them)."""
    if isinstance(value, type):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [cls for v in value for cls in _classes(v)]
    return []


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str, type)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False
