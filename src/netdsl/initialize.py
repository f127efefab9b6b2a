"""Initialize: apply a model's init rules to its parameters, pass by pass, in module order.

Each ``init { ... }`` block is a pass, run in the order written. A pass walks ``named_modules()``
and each module's own parameters in registration order (weight before bias), exactly like the
hand-written ``for m in self.modules(): if isinstance(m, nn.Linear): ...`` loops, so the random
draws happen in the same order. A parameter shared by two modules (``tie``) is visited at both,
as ``self.apply(fn)`` visits it. In one pass each parameter is set by at most one rule: the most
specific match (see :meth:`netdsl.plan.RulePlan.rank`).
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

import torch
from torch import nn

from . import codes, work
from .errors import fail, first_line
from .plan import RulePlan
from .rules import rule_arguments

Modules = Mapping[str, nn.Module]


def apply_rules(root: nn.Module, rules: list[RulePlan]) -> None:
    if not rules:
        return
    modules = dict(root.named_modules())
    for rules_of_pass in passes(rules):
        for path, module in modules.items():
            for name, param in module.named_parameters(recurse=False):
                rule = winning_rule(rules_of_pass, path, module, name, modules)
                if rule is not None:
                    apply_rule(rule, param, f"{path}.{name}" if path else name)


class RulesOfPass:
    """One init block's rules, indexed: a rule naming an exact path is looked up by it, so that
    30,000 per-layer rules over 30,000 layers do not cost 30,000 squared matches."""

    def __init__(self, rules: list[RulePlan]):
        self.exact: dict[str, list[tuple[int, RulePlan]]] = {}
        self.general: list[tuple[int, RulePlan]] = []
        for i, rule in enumerate(rules):
            target = rule.rule.target
            if rule.rule.target_kind == "path" and not any(c in target for c in "*?["):
                self.exact.setdefault(target, []).append((i, rule))
            else:
                self.general.append((i, rule))

    def candidates(self, path: str) -> list[tuple[int, RulePlan]]:
        return self.exact.get(path, []) + self.general


def passes(rules: list[RulePlan]) -> list[RulesOfPass]:
    """The rules of each init block, in order."""
    grouped: dict[int, list[RulePlan]] = {}
    for rule in rules:
        grouped.setdefault(rule.pass_index, []).append(rule)
    return [RulesOfPass(grouped[index]) for index in sorted(grouped)]


def winning_rule(rules: RulesOfPass, path: str, module: nn.Module, param: str,
                 modules: Modules) -> RulePlan | None:
    candidates = rules.candidates(path)
    work.spend(len(candidates), None)
    matching = [(rule.rank(i), rule) for i, rule in candidates
                if matches(rule, path, module, param, modules)]
    return max(matching, key=lambda m: m[0])[1] if matching else None


def matches(rule: RulePlan, path: str, module: nn.Module, param: str,
            modules: Modules) -> bool:
    if rule.rule.param not in ("*", param):
        return False
    if rule.rule.target_kind == "path":
        return fnmatchcase(path, rule.rule.target)
    if rule.rule.target_kind == "type":
        owner = _owner(path, module, rule.rule.subpath, modules)
        return owner is not None and is_instance(owner, rule.target_cls)
    return True


def _owner(path: str, module: nn.Module, subpath: list[str], modules: Modules
           ) -> nn.Module | None:
    """For ``Bottleneck.bn3.weight``: the module whose child ``bn3`` this module is."""
    if not subpath:
        return module
    parts = path.split(".") if path else []
    if parts[len(parts) - len(subpath):] != subpath:
        return None
    return modules.get(".".join(parts[:len(parts) - len(subpath)]))


def is_instance(module: nn.Module, target: object) -> bool:
    """A torch class by isinstance; a spec block by the declaration its class was made from."""
    if isinstance(target, type):
        return isinstance(module, target)
    return target is not None and getattr(type(module), "_netdsl_decl", None) is target


def apply_rule(rule: RulePlan, param: nn.Parameter, where: str) -> None:
    fans = _fans(rule, param, where) if rule.uses_fan else {}
    args, kwargs = rule_arguments(rule, fans)
    work.spend(_python_iterations(rule, param), rule.rule.span)
    try:
        with torch.no_grad():
            rule.func(param, *args, **kwargs)
    except Exception as err:  # torch's own checks of the arguments, whatever their type
        fail(f"{rule.rule.func.name}() failed on '{where}': {first_line(err)}",
             rule.rule.span, codes.INIT)


def _python_iterations(rule: RulePlan, param: nn.Parameter) -> int:
    """sparse_ draws one permutation per column and dirac_ writes one entry per channel, in
    Python loops (Linear(10**6, 1) with sparse is 10**6 draws): a step each. Other init
    functions are one kernel: one step."""
    if rule.func is nn.init.sparse_ and param.dim() == 2:
        return param.shape[1]
    if rule.func is nn.init.dirac_ and param.dim() >= 2:
        return min(param.shape[0], param.shape[1])
    return 1


def _fans(rule: RulePlan, param: nn.Parameter, where: str) -> dict[str, int]:
    if param.dim() < 2:
        fail(f"fan_in and fan_out are undefined for '{where}' (shape {tuple(param.shape)}); "
             f"select it with a rule that does not use them", rule.rule.span, codes.INIT)
    # torch's own computation, so fan_in matches what kaiming_* and xavier_* use internally.
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(param)
    return {"fan_in": fan_in, "fan_out": fan_out}

