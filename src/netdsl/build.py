"""Build: a plan -> the nn.Module tree, constructed in declaration order.

Exactly what the hand-written ``__init__`` does: each layer is constructed with the arguments as
written (so torch's default initialisation draws the same random numbers in the same order),
containers wrap their already-built children, and a model's init rules run once its own
children exist. One ``build_<plan>`` function per plan kind.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from .errors import fail, first_line
from .initialize import apply_rules
from .plan import (
    DictPlan,
    LayerPlan,
    ListPlan,
    ModelPlan,
    Plan,
    SequentialPlan,
    layers_of,
    walk_plans,
)

# One class per model or block name and forward function, so that repeated instances of a block
# share their class (as a hand-written block would) and print alike.
_ClassKey = tuple[str, Any]


def build(plan: Plan, classes: dict[_ClassKey, type[nn.Module]] | None = None) -> nn.Module:
    classes = {} if classes is None else classes
    if isinstance(plan, LayerPlan):
        return build_layer(plan)
    if isinstance(plan, SequentialPlan):
        return build_sequential(plan, classes)
    if isinstance(plan, ListPlan):
        return nn.ModuleList([build(p, classes) for p in plan.items])
    if isinstance(plan, DictPlan):
        return nn.ModuleDict({key: build(p, classes) for key, p in plan.items})
    return build_model(plan, classes)


def build_layer(plan: LayerPlan) -> nn.Module:
    try:
        return plan.cls(*plan.args, **plan.kwargs)
    except Exception as err:
        # torch validates some arguments only in the constructor, e.g. Conv2d(3, 6, 5, groups=4)
        fail(f"{plan.call_text()}: {first_line(err)}", plan.span)


def build_sequential(plan: SequentialPlan, classes: dict[_ClassKey, type[nn.Module]]
                     ) -> nn.Module:
    children = [(name, build(p, classes)) for name, p in plan.items]
    if children and children[0][0] is not None:
        return nn.Sequential(OrderedDict(children))  # type: ignore[arg-type]
    return nn.Sequential(*(module for _, module in children))


def build_model(plan: ModelPlan, classes: dict[_ClassKey, type[nn.Module]]) -> nn.Module:
    key = (plan.name, plan.forward, id(plan.decl))
    if key not in classes:
        classes[key] = type(plan.name, (nn.Module,), {
            **plan.namespace(), "__module__": "netdsl.generated", "__qualname__": plan.name,
            # Init rules select a block's instances by the declaration that made them.
            "_netdsl_decl": plan.decl,
        })
    module = classes[key]()
    for name, child in plan.children:
        setattr(module, name, build(child, classes))
    for name in plan.absent:  # a plain attribute, not a submodule: no state, no parameters
        setattr(module, name, None)
    apply_rules(module, plan.rules)
    return module



def has_rules(plan: Plan) -> bool:
    """Whether any model or block in the plan has init rules."""
    return any(isinstance(p, ModelPlan) and p.rules for p in walk_plans(plan))


def count_parameters(plan: Plan) -> int:
    """The parameters the plan builds, counted on the meta device without building it whole.

    Every distinct layer call is constructed once on meta (so torch's constructor checks still
    run and are located), then counted as often as it occurs: a 10,000-layer stack of one layer
    costs one construction. Containers and blocks hold no parameters of their own.
    """
    sizes: dict[tuple[type, str], int] = {}
    total = 0
    with torch.device("meta"):
        for layer in layers_of(plan):
            key = (layer.cls, layer.call_text())
            if key not in sizes:
                sizes[key] = sum(p.numel() for p in build_layer(layer).parameters())
            total += sizes[key]
    return total
