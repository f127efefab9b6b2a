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

from . import codes, work
from .errors import fail, first_line
from .initialize import apply_rules
from .pickling import GeneratedModule
from .plan import (
    DictPlan,
    LayerPlan,
    ListPlan,
    ModelPlan,
    Plan,
    SequentialPlan,
    TensorPlan,
    TiePlan,
    children_of,
    layers_of,
    walk_plans,
)
from .tensors import make_tensor

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
    # Layers given as arguments (TransformerEncoder(TransformerEncoderLayer(...))) are built
    # first, in the order written, as Python evaluates a call's arguments.
    args = [build_layer(a) if isinstance(a, LayerPlan) else a for a in plan.args]
    kwargs = {k: build_layer(v) if isinstance(v, LayerPlan) else v
              for k, v in plan.kwargs.items()}
    try:
        return plan.cls(*args, **kwargs)
    except Exception as err:
        # torch validates some arguments only in the constructor, e.g. Conv2d(3, 6, 5, groups=4)
        fail(f"{plan.call_text()}: {first_line(err)}", plan.span, codes.VALUE)


def build_sequential(plan: SequentialPlan, classes: dict[_ClassKey, type[nn.Module]]
                     ) -> nn.Module:
    children = [(name, build(p, classes)) for name, p in plan.items]
    if children and children[0][0] is not None:
        return nn.Sequential(OrderedDict(children))  # type: ignore[arg-type]
    return nn.Sequential(*(module for _, module in children))


def build_model(plan: ModelPlan, classes: dict[_ClassKey, type[nn.Module]]) -> nn.Module:
    key = (plan.name, plan.forward, id(plan.decl))
    if key not in classes:
        classes[key] = type(plan.name, (GeneratedModule,), {
            **plan.namespace(), "__module__": "netdsl.generated", "__qualname__": plan.name,
            # Init rules select a block's instances by the declaration that made them.
            "_netdsl_decl": plan.decl,
        })
    module = classes[key]()
    for index, (name, child) in enumerate(plan.children):
        _declared_before(module, plan, index)
        setattr(module, name, build(child, classes))
    _declared_before(module, plan, len(plan.children))
    for name in plan.absent:  # a plain attribute, not a submodule: no state, no parameters
        setattr(module, name, None)
    apply_rules(module, plan.rules)
    return module



def _declared_before(module: nn.Module, plan: ModelPlan, position: int) -> None:
    """The params, buffers and ties declared before child number ``position``, in order."""
    for tensor in plan.tensors:
        if tensor.position == position:
            add_tensor(module, tensor)
    for tie in plan.ties:
        if tie.position == position:
            apply_tie(module, tie)


def add_tensor(module: nn.Module, plan: TensorPlan) -> None:
    value = make_tensor(plan)
    if plan.what == "param":
        module.register_parameter(plan.name, nn.Parameter(value, plan.requires_grad))
    else:
        module.register_buffer(plan.name, value, persistent=plan.persistent)


def apply_tie(module: nn.Module, plan: TiePlan) -> None:
    """``self.a.weight = self.b.weight``: the target's parameter is replaced by the source's."""
    source = module.get_parameter(".".join(plan.source))
    owner = module.get_submodule(".".join(plan.target[:-1]))
    current = owner.get_parameter(plan.target[-1])
    if current.shape != source.shape:
        fail(f"cannot tie {'.'.join(plan.target)} {list(current.shape)} to "
             f"{'.'.join(plan.source)} {list(source.shape)}: the shapes differ",
             plan.span, codes.SHAPE)
    setattr(owner, plan.target[-1], source)


def _tied_numel(plan: ModelPlan, tie: TiePlan) -> int:
    """The size of the parameter a tie replaces (built on meta: a layer's own parameter)."""
    target: Plan = plan
    for part in tie.target[:-1]:
        target = dict(children_of(target))[part]
    if isinstance(target, ModelPlan):
        return next(t.numel for t in target.tensors if t.name == tie.target[-1])
    assert isinstance(target, LayerPlan)
    return build_layer(target).get_parameter(tie.target[-1]).numel()


def has_rules(plan: Plan) -> bool:
    """Whether any model or block in the plan has init rules."""
    return any(isinstance(p, ModelPlan) and p.rules for p in walk_plans(plan))


def count_parameters(plan: Plan) -> tuple[int, int]:
    """The parameters and buffer elements the plan builds, counted on the meta device without
    building it whole.

    Every distinct layer call is constructed once on meta (so torch's constructor checks still
    run and are located), then counted as often as it occurs: a 10,000-layer stack of one layer
    costs one construction. Containers and blocks hold no parameters of their own. The modules a
    torch layer builds inside itself (a Transformer's layers) count against the module budget.
    """
    sizes: dict[tuple[type, str], tuple[int, int, int]] = {}
    # The module's own params and buffers: their sizes are known from the check.
    tensors = [t for p in walk_plans(plan) if isinstance(p, ModelPlan) for t in p.tensors]
    params = sum(t.numel for t in tensors if t.what == "param")
    buffers = sum(t.numel for t in tensors if t.what != "param")
    with torch.device("meta"):
        # A tied parameter is one tensor: the target's own is replaced, so it is not counted.
        params -= sum(_tied_numel(p, tie) for p in walk_plans(plan) if isinstance(p, ModelPlan)
                      for tie in p.ties)
        for layer in layers_of(plan):
            key = (layer.cls, layer.call_text())
            if key not in sizes:
                sizes[key] = _sizes(build_layer(layer))
            inner, layer_params, layer_buffers = sizes[key]
            work.count_modules(inner, layer.span)
            params, buffers = params + layer_params, buffers + layer_buffers
    return params, buffers


def _sizes(module: nn.Module) -> tuple[int, int, int]:
    """Submodules, parameter elements and buffer elements of one built layer."""
    return (sum(1 for _ in module.modules()) - 1, sum(p.numel() for p in module.parameters()),
            sum(b.numel() for b in module.buffers()))
