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

from .initialize import apply_rules, matches, winning_rule
from .plan import LayerPlan, ModelPlan, Plan, RulePlan, children_of, walk_plans


@dataclass
class Entry:
    parameter: str
    shape: tuple[int, ...]
    set_by: str  # "path:line: Linear.weight: normal(...)" or "torch default (...)"
    rule: RulePlan | None = None


@dataclass
class Report:
    entries: list[Entry] = field(default_factory=list)
    unmatched: list[RulePlan] = field(default_factory=list)  # rules that set nothing


LayerVisit = Callable[[LayerPlan, nn.Module, str], None]
RulesVisit = Callable[[ModelPlan, nn.Module, str], None]


def walk(plan: Plan, module: nn.Module, path: str, on_layer: LayerVisit,
         on_rules: RulesVisit) -> None:
    """Visit layers and models' rules in the order the build creates and initialises them."""
    if isinstance(plan, LayerPlan):
        on_layer(plan, module, path)
        return
    for key, child in children_of(plan):
        walk(child, module.get_submodule(key), f"{path}.{key}" if path else key, on_layer,
             on_rules)
    if isinstance(plan, ModelPlan):
        on_rules(plan, module, path)


def init_report(plan: ModelPlan, model: nn.Module,
                sources: Mapping[str, str] | None = None) -> Report:
    setters: dict[str, RulePlan] = {}
    used: set[int] = set()

    def on_rules(sub: ModelPlan, module: nn.Module, path: str) -> None:
        modules = dict(module.named_modules())
        for name, owner, pname in _own_parameters(module):
            rule = winning_rule(sub.rules, name, owner, pname, modules)
            if rule is not None:
                full = _join(path, f"{name}.{pname}" if name else pname)
                setters[full] = rule  # later (outer) rules override
                used.add(id(rule.rule))

    walk(plan, model, "", lambda *_: None, on_rules)
    report = Report()
    for name, param in model.named_parameters():
        rule = setters.get(name)
        report.entries.append(Entry(name, tuple(param.shape),
                                    rule_text(rule, sources or {}) if rule
                                    else torch_default(model, name),
                                    rule))
    report.unmatched = [r for r in _all_rules(plan) if id(r.rule) not in used]
    return report


def reinitialize(plan: ModelPlan, model: nn.Module) -> None:
    """Re-run default initialisation and init rules on ``model``, as the build ran them."""
    def on_layer(layer: LayerPlan, module: nn.Module, path: str) -> None:
        with torch.no_grad():
            reset_layer(module)

    walk(plan, model, "", on_layer, lambda sub, module, path: apply_rules(module, sub.rules))


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
    span = rule.rule.span
    lines = sources.get(span.path, "").split("\n")
    if 0 < span.line <= len(lines):
        written = lines[span.line - 1][span.column - 1:].split("#")[0].strip()
    else:
        written = f"{rule.rule.target}.{rule.rule.param}: {rule.rule.func.name}(...)"
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
