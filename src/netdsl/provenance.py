"""Provenance: which init rule set each parameter, and re-running a spec's initialisation.

Both walk the plan and the built module together, in construction order: a layer's own default
initialisation, then, once a model's or block's children exist, that model's rules (so an outer
model's rule overrides a block's own). :func:`reinitialize` replays exactly that on an existing
module: a model built on the meta device, materialised with ``to_empty()`` and reinitialised
under the same seed equals a normal build, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import NetDSLWarning, Span
from .initialize import apply_rules, matches, passes, winning_rule
from .plan import (
    LayerPlan,
    ModelPlan,
    Plan,
    RulePlan,
    TensorPlan,
    children_of,
    models_with_paths,
    walk_plans,
)
from .tensors import make_tensor


@dataclass
class Entry:
    parameter: str
    shape: tuple[int, ...]
    # "path:line: Linear.weight: normal(...)" or "torch default (...)"; every rule that set
    # it, in the order they ran, joined by "; then ".
    set_by: str
    rule: RulePlan | None = None  # the last one
    rules: list[RulePlan] = field(default_factory=list)
    shared_with: list[str] = field(default_factory=list)  # other names of a tied parameter


@dataclass
class Report:
    entries: list[Entry] = field(default_factory=list)
    unmatched: list[RulePlan] = field(default_factory=list)  # rules that set nothing
    warnings: list[NetDSLWarning] = field(default_factory=list)  # the same, as diagnostics


LayerVisit = Callable[[LayerPlan, nn.Module, str], None]
RulesVisit = Callable[[ModelPlan, nn.Module, str], None]
TensorVisit = Callable[[TensorPlan, nn.Module], None]


def walk(plan: Plan, module: nn.Module, path: str, on_layer: LayerVisit,
         on_rules: RulesVisit, on_tensor: TensorVisit | None = None) -> None:
    """Visit layers, a model's own params and buffers, and models' rules in the order the build
    creates and initialises them."""
    if isinstance(plan, LayerPlan):
        on_layer(plan, module, path)
        return
    tensors = plan.tensors if isinstance(plan, ModelPlan) else []
    children = children_of(plan)
    for index, (key, child) in enumerate([*children, ("", None)]):
        for tensor in tensors:
            if tensor.position == index and on_tensor is not None:
                on_tensor(tensor, module)
        if child is not None:
            walk(child, module.get_submodule(key), f"{path}.{key}" if path else key, on_layer,
                 on_rules, on_tensor)
    if isinstance(plan, ModelPlan):
        on_rules(plan, module, path)


def init_report(plan: ModelPlan, model: nn.Module,
                sources: Mapping[str, str] | None = None) -> Report:
    setters: dict[int, list[RulePlan]] = {}  # by parameter: a tied one has several names
    used: set[int] = set()

    def on_rules(sub: ModelPlan, module: nn.Module, path: str) -> None:
        modules = dict(module.named_modules())
        for rules in passes(sub.rules):
            for name, owner, pname in _own_parameters(module):
                rule = winning_rule(rules, name, owner, pname, modules)
                if rule is not None:
                    setters.setdefault(id(owner.get_parameter(pname)), []).append(rule)
                    used.add(id(rule.rule))

    walk(plan, model, "", lambda *_: None, on_rules)
    names = _names_by_parameter(model)
    declared = _declared(plan, model, sources or {})
    report = Report()
    for name, param in model.named_parameters():
        rules = setters.get(id(param), [])
        made = declared.get(id(param)) or torch_default(model, name)
        text = "; then ".join(rule_text(r, sources or {}) for r in rules)
        # A declared param's own expression made it (and may have drawn it): always shown.
        if id(param) in declared:
            text = "; then ".join(filter(None, [made, text]))
        report.entries.append(Entry(name, tuple(param.shape), text or made,
                                    rules[-1] if rules else None, rules,
                                    [other for other in names[id(param)] if other != name]))
    report.unmatched = [r for r in _all_rules(plan) if id(r.rule) not in used]
    return report


def _declared(plan: ModelPlan, model: nn.Module, sources: Mapping[str, str]
              ) -> dict[int, str]:
    """What made each declared param: ``path:line: param pos = empty(...).normal_(...)``."""
    made = {}
    for path, sub in models_with_paths(plan):
        owner = model.get_submodule(path)
        for tensor in sub.tensors:
            if tensor.what == "param":
                line = tensor.span.model_copy(update={"column": 1})  # from `param name =`
                made[id(owner.get_parameter(tensor.name))] = _written(line, sources)
    return made


def _names_by_parameter(model: nn.Module) -> dict[int, list[str]]:
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    return names


def reinitialize(plan: ModelPlan, model: nn.Module) -> None:
    """Re-run default initialisation and init rules on ``model``, as the build ran them."""
    def on_layer(layer: LayerPlan, module: nn.Module, path: str) -> None:
        with torch.no_grad():
            reset_layer(module)

    def on_tensor(tensor: TensorPlan, module: nn.Module) -> None:
        held = getattr(module, tensor.name)
        with torch.no_grad():
            held.copy_(make_tensor(tensor, held.device))

    walk(plan, model, "", on_layer, lambda sub, module, path: apply_rules(module, sub.rules),
         on_tensor)


def reset_layer(module: nn.Module) -> None:
    """torch's own initialisation of one layer, in the order its constructor ran it.

    A layer's submodules are constructed (and initialised) before the layer's own reset runs at
    the end of its ``__init__`` (MultiheadAttention's out_proj, a TransformerEncoderLayer's
    linears and norms): so reset them first, in registration order, then the layer itself.
    """
    for child in module.children():
        reset_layer(child)
    reset = getattr(module, "reset_parameters", None) or \
        getattr(module, "_reset_parameters", None)
    if callable(reset):
        reset()


def _own_parameters(root: nn.Module) -> list[tuple[str, nn.Module, str]]:
    return [(name, module, pname) for name, module in root.named_modules()
            for pname, _ in module.named_parameters(recurse=False)]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _all_rules(plan: Plan) -> list[RulePlan]:
    """Every rule in the tree once per written rule (a block used twice has its rules twice)."""
    found: dict[int, RulePlan] = {}
    for item in walk_plans(plan):
        if isinstance(item, ModelPlan):
            for rule in item.rules:
                found.setdefault(id(rule.rule), rule)
    return sorted(found.values(), key=lambda r: (r.rule.span.path, r.rule.span.line))


def rule_text(rule: RulePlan, sources: Mapping[str, str]) -> str:
    """``path:line: Linear.weight: normal(0, 1)``, the rule as written."""
    return _written(rule.rule.span, sources,
                    f"{rule.rule.target}.{rule.rule.param}: {rule.rule.func.name}(...)")


def _written(span: Span, sources: Mapping[str, str], fallback: str = "...") -> str:
    """``path:line: <the line from the span's column>``."""
    lines = sources.get(span.path, "").split("\n")
    if 0 < span.line <= len(lines):
        written = lines[span.line - 1][span.column - 1:].split("#")[0].strip()
    else:
        written = fallback
    return f"{span.path}:{span.line}: {written}"


def torch_default(model: nn.Module, name: str) -> str:
    """What torch's own initialisation did to a parameter, in words."""
    owner_path, _, pname = name.rpartition(".")
    owner = model.get_submodule(owner_path) if owner_path else model
    for kinds, described in _DEFAULTS:
        if isinstance(owner, kinds) and pname in described:
            return f"torch default ({type(owner).__name__}: {described[pname]})"
    return f"torch default ({type(owner).__name__}.reset_parameters)"


_FAN = "uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))"
_DEFAULTS: list[tuple[type | tuple[type, ...], dict[str, str]]] = [
    ((nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd),
     {"weight": "kaiming_uniform(a=sqrt(5))", "bias": _FAN}),
    ((nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm),
     {"weight": "ones", "bias": "zeros"}),
    (nn.Embedding, {"weight": "normal(0, 1)"}),
    (nn.PReLU, {"weight": "constant(0.25)"}),
]


__all__ = ["Entry", "Report", "init_report", "matches", "reinitialize", "torch_default", "walk"]
