"""Export of init rules: one model's or block's rules -> the loops a person writes in ``__init__``.

``for m in self.modules(): if isinstance(m, nn.Conv2d): nn.init.kaiming_normal_(m.weight, ...)``,
as torchvision writes it. The loops are derived from the instance's module tree (built on the
meta device, without rules): modules are grouped by the rule targets they match, each group is
one ``if``/``elif`` branch (the most specific first), and conditions that this tree does not need
are dropped. The loops are then simulated on the same tree and compared with what
:mod:`netdsl.initialize` does: same final rule for every parameter, same random draws in the
same order. Where they differ, the rules are written out one parameter at a time instead, in
netdsl's order, which is always right.
"""

from __future__ import annotations

import itertools
import keyword
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

from torch import nn

from . import nodes as n
from .export_code import INDENT
from .export_forward import tidy
from .forward_expr import VALUE, Compiled, ExprCompiler
from .initialize import RulesOfPass, is_instance, passes, winning_rule
from .plan import DictPlan, ListPlan, ModelPlan, Plan, RulePlan, SequentialPlan
from .rules import let_name, rule_arguments

# torch.nn.init functions that draw no random numbers: an extra application of one of them (a
# later loop overriding an earlier one, as torchvision's zero_init_residual loop does) leaves the
# random stream as it was.
_NOT_RANDOM = frozenset({nn.init.constant_, nn.init.zeros_, nn.init.ones_, nn.init.eye_,
                         nn.init.dirac_})

# How the writer spells what rules refer to: a torch class or a spec block (``nn.Conv2d``,
# ``(Bottleneck, Bottleneck2)``), a literal value, and generated code (renamed for the file).
ClassText = Callable[[Any], str]
LiteralText = Callable[[Any], str]
Rename = Callable[[str], str]


@dataclass(frozen=True)
class _Target:
    """What a rule selects, apart from the parameter name: compared between rules."""

    kind: str  # "type", "path" or "any"
    text: str  # the type's name or the glob: one class in the scope of the rules
    cls: Any = field(compare=False)  # the torch class or spec block of a type rule

    def test(self, names: _Names, class_text: ClassText) -> str | None:
        if self.kind == "any":
            return None
        if self.kind == "type":
            return f"isinstance({names.module}, {class_text(self.cls)})"
        if any(c in self.text for c in "*?["):
            return f"fnmatchcase({names.path}, {self.text!r})"
        return f"{names.path} == {self.text!r}"


def _target(rule: RulePlan) -> _Target:
    return _Target(rule.rule.target_kind, rule.rule.target, rule.target_cls)


@dataclass
class _Names:
    """The loop's variable names, chosen so that no init ``let`` hides them."""

    module: str = "m"
    path: str = "name"
    param: str = "p"

    @classmethod
    def avoiding(cls, taken: set[str]) -> _Names:
        def free(*choices: str) -> str:
            return next(c for c in choices if c not in taken)

        return cls(free("m", "module", "mod"), free("name", "path", "module_name"),
                   free("p", "param", "parameter"))


@dataclass
class _Branch:
    """One ``if`` of a loop: the modules matching ``targets``, the rule of each parameter."""

    targets: list[_Target]
    params: list[tuple[str, RulePlan]]  # in registration order
    members: list[nn.Module] = field(default_factory=list)

    def test(self, module: nn.Module, path: str) -> bool:
        return all(_selects(t, module, path) for t in self.targets)


@dataclass
class InitCode:
    """The lines of a class's init loops, and the names they need imported."""

    lines: list[str]
    needs: set[str] = field(default_factory=set)  # "fnmatchcase", "math"


def init_code(rules: list[RulePlan], root: nn.Module, class_text: ClassText,
              literal: LiteralText, rename: Rename) -> InitCode:
    """The code that applies ``rules`` to ``root`` (built without them) as netdsl does."""
    if not rules:
        return InitCode([])
    taken = {let_name(let) for rule in rules for let in rule.lets}
    writer = _Writer(_Names.avoiding(taken), class_text, literal, rename)
    tree = dict(root.named_modules())
    loops = [loop for group in passes(rules) for loop in _loops(group, tree)]
    theirs = _netdsl_order(rules, tree)
    if _same_effect(_simulated(loops, tree), theirs):
        return writer.loops(loops)
    return writer.one_by_one(theirs)


# ---------------------------------------------------------------- what netdsl does

_Application = tuple[int, str, RulePlan]  # id of the parameter, its path, the rule


def _netdsl_order(rules: list[RulePlan], tree: dict[str, nn.Module]) -> list[_Application]:
    """Every rule application of :func:`netdsl.initialize.apply_rules`, in its order."""
    done: list[_Application] = []
    for group in passes(rules):
        for path, module in tree.items():
            for name, param in module.named_parameters(recurse=False):
                rule = winning_rule(group, path, module, name, tree)
                if rule is not None:
                    done.append((id(param), _dotted(path, name), rule))
    return done


def _same_effect(ours: list[_Application], theirs: list[_Application]) -> bool:
    """Bitwise the same result: every parameter ends with the same rule, and the random draws
    happen in the same order (applications that draw nothing may be repeated or reordered)."""
    def final(order: list[_Application]) -> dict[int, RulePlan]:
        return {param: rule for param, _, rule in order}

    def random(order: list[_Application]) -> list[tuple[int, int]]:
        return [(param, id(rule)) for param, _, rule in order if rule.func not in _NOT_RANDOM]

    last_ours, last_theirs = final(ours), final(theirs)
    return last_ours.keys() == last_theirs.keys() and all(
        last_ours[k] is last_theirs[k] for k in last_ours) and random(ours) == random(theirs)


# ---------------------------------------------------------------- the loops we write


@dataclass
class _Loop:
    branches: list[_Branch]
    # ``Bottleneck.bn3.weight``: rules reaching a child of each selected module, written in a
    # loop of their own after the main one (torchvision's zero_init_residual loop).
    subpath: bool = False


def _loops(group: RulesOfPass, tree: dict[str, nn.Module]) -> list[_Loop]:
    indexed = sorted(itertools.chain(*group.exact.values(), group.general), key=lambda p: p[0])
    rules = [rule for _, rule in indexed]  # in the order written: later wins among equals
    main = [r for r in rules if not r.rule.subpath]
    deep = [r for r in rules if r.rule.subpath]
    loops = [_Loop(_branches(main, tree)), _Loop(_subpath_branches(deep, tree), subpath=True)]
    return [loop for loop in loops if loop.branches]  # a rule matching nothing writes nothing


def _branches(rules: list[RulePlan], tree: dict[str, nn.Module]) -> list[_Branch]:
    """One branch per set of targets some module matches, the most specific first; then each
    branch's conditions that no module of this tree needs are dropped."""
    targets = list(dict.fromkeys(_target(r) for r in rules))
    ranked = {id(r): r.rank(i) for i, r in enumerate(rules)}
    by_targets: dict[tuple[_Target, ...], _Branch] = {}
    for path, module in tree.items():
        matched = tuple(t for t in targets if _selects(t, module, path))
        params = _winners(rules, ranked, matched, module)
        if not params:
            continue
        branch = by_targets.setdefault(matched, _Branch(list(matched), []))
        for name, rule in params:
            if name not in dict(branch.params):
                branch.params.append((name, rule))
    branches = sorted(by_targets.values(), key=lambda b: -len(b.targets))
    for branch in branches:
        _drop_unneeded(branch, branches, tree)
    for branch in branches:  # what each branch's statements meet, for their None guards
        branch.members = [tree[path] for path in _takes(branch, branches, branch, tree)]
    return branches


def _winners(rules: list[RulePlan], ranked: dict[int, tuple[int, int, int]],
             matched: tuple[_Target, ...], module: nn.Module) -> list[tuple[str, RulePlan]]:
    found = []
    for name, _ in module.named_parameters(recurse=False):
        candidates = [r for r in rules if _target(r) in matched and r.rule.param in ("*", name)]
        if candidates:
            found.append((name, max(candidates, key=lambda r: ranked[id(r)])))
    return found


def _drop_unneeded(branch: _Branch, branches: list[_Branch], tree: dict[str, nn.Module]
                   ) -> None:
    """Drop a condition when the branch then still takes exactly the modules it took."""
    for target in list(branch.targets):
        if len(branch.targets) == 1 and target.kind != "any":
            return
        kept = [t for t in branch.targets if t != target]
        trial = _Branch(kept, branch.params)
        if _takes(trial, branches, branch, tree) == _takes(branch, branches, branch, tree):
            branch.targets = kept


def _takes(branch: _Branch, branches: list[_Branch], replacing: _Branch,
           tree: dict[str, nn.Module]) -> list[str]:
    """The paths of the modules that reach ``branch`` in the if/elif chain."""
    chain = [branch if b is replacing else b for b in branches]
    taken = []
    for path, module in tree.items():
        first = next((b for b in chain if b.test(module, path)), None)
        if first is branch:
            taken.append(path)
    return taken


def _subpath_branches(rules: list[RulePlan], tree: dict[str, nn.Module]) -> list[_Branch]:
    """``Bottleneck.bn3.weight``: a branch per selecting type that this tree holds (a
    resnet18 has no Bottleneck), with statements on its children."""
    by_type: dict[_Target, _Branch] = {}
    for rule in rules:
        target = _target(rule)
        if any(_selects(target, module, path) for path, module in tree.items()):
            branch = by_type.setdefault(target, _Branch([target], []))
            branch.params.append((".".join([*rule.rule.subpath, rule.rule.param]), rule))
    return list(by_type.values())


def _selects(target: _Target, module: nn.Module, path: str) -> bool:
    """As :func:`netdsl.initialize.matches`, for the target alone (no subpath here)."""
    if target.kind == "type":
        return is_instance(module, target.cls)
    return target.kind == "any" or fnmatchcase(path, target.text)


def _simulated(loops: list[_Loop], tree: dict[str, nn.Module]) -> list[_Application]:
    """What the written loops do on ``tree``, application by application."""
    done: list[_Application] = []
    for loop in loops:
        for path, module in tree.items():
            branch = next((b for b in loop.branches if b.test(module, path)), None)
            for name, rule in branch.params if branch is not None else []:
                done += _applied(module, path, name, rule, loop.subpath)
    return done


def _applied(module: nn.Module, path: str, name: str, rule: RulePlan, subpath: bool
             ) -> list[_Application]:
    if subpath:
        try:
            param = module.get_parameter(name)
        except AttributeError:
            return []
        return [(id(param), _dotted(path, name), rule)]
    own = dict(module.named_parameters(recurse=False))
    return [(id(own[name]), _dotted(path, name), rule)] if name in own else []


def _dotted(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# ---------------------------------------------------------------- the text


@dataclass
class _Writer:
    """The text of the loops (or of the one-parameter-at-a-time form)."""

    names: _Names
    class_text: ClassText
    literal: LiteralText
    rename: Rename
    needs: set[str] = field(default_factory=set)

    def loops(self, loops: list[_Loop]) -> InitCode:
        lines: list[str] = []
        for loop in loops:
            lines += self._loop(loop)
        return InitCode(lines, self.needs)

    def _loop(self, loop: _Loop) -> list[str]:
        tests = [self._test(b) for b in loop.branches]
        by_path = any(t.kind == "path" for b in loop.branches for t in b.targets)
        m = self.names.module
        head = (f"for {self.names.path}, {m} in self.named_modules():" if by_path
                else f"for {m} in self.modules():")
        body: list[str] = []
        for index, (branch, test) in enumerate(zip(loop.branches, tests, strict=True)):
            statements = self._statements(branch, loop.subpath)
            if test is None:  # every module: the chain's last branch (those after it never run)
                body += [*statements] if not index else ["else:", *(INDENT + s for s in statements)]
                break
            body += [f"{'elif' if index else 'if'} {test}:", *(INDENT + s for s in statements)]
        return [head, *(INDENT + line for line in body)]

    def _test(self, branch: _Branch) -> str | None:
        tests = [t for t in (target.test(self.names, self.class_text)
                             for target in branch.targets) if t is not None]
        if any("fnmatchcase(" in t for t in tests):
            self.needs.add("fnmatchcase")
        return " and ".join(tests) if tests else None

    def _statements(self, branch: _Branch, subpath: bool) -> list[str]:
        m = self.names.module
        if not subpath and len({id(r) for _, r in branch.params}) == 1 and \
                branch.params[0][1].rule.param == "*":
            rule = branch.params[0][1]
            p = self.names.param
            return [f"for {p} in {m}.parameters(recurse=False):",
                    *(INDENT + s for s in self._apply(rule, p))]
        lines: list[str] = []
        for name, rule in branch.params:
            target = f"{m}.{name}" if all(part.isidentifier() and not keyword.iskeyword(part)
                                          for part in name.split(".")) \
                else f"{m}.get_parameter({name!r})"
            applied = self._apply(rule, target)
            if not subpath and not all(_has(member, name) for member in branch.members):
                present = target if all(hasattr(member, name) for member in branch.members) \
                    else f"getattr({m}, {name!r}, None)"
                applied = [f"if {present} is not None:", *(INDENT + s for s in applied)]
            lines += applied
        return lines

    def one_by_one(self, order: list[_Application]) -> InitCode:
        lines: list[str] = []
        for _, path, rule in order:
            lines += self._apply(rule, f"self.get_parameter({path!r})")
        return InitCode(lines, self.needs)

    def _apply(self, rule: RulePlan, target: str) -> list[str]:
        """``nn.init.normal_(m.weight, 0, 0.01)``, with the fans and lets it needs first."""
        func = f"nn.init.{rule.func.__name__}"
        if not rule.uses_fan:
            args, kwargs = rule_arguments(rule, {})
            parts = [self.literal(a) for a in args] + [f"{k}={self.literal(v)}"
                                                       for k, v in kwargs.items()]
            return [f"{func}({', '.join([target, *parts])})"]
        compiler = self._compiler(rule)
        lines = [self._fans(rule, target)]
        for let in rule.lets:
            lines.append(f"{let_name(let)} = {self._expr(compiler, let.value)}")
            compiler.scope[let_name(let)] = Compiled(let_name(let), VALUE)
        parts = [self._expr(compiler, a) for a in rule.rule.args] + [
            f"{k.name.name}={self._expr(compiler, k.value)}" for k in rule.rule.kwargs]
        return [*lines, f"{func}({', '.join([target, *parts])})"]

    def _fans(self, rule: RulePlan, target: str) -> str:
        """torch's fans of the parameter, as netdsl computes them (only the ones used)."""
        used = n.names_in([*rule.lets, rule.rule]) & {"fan_in", "fan_out"}
        fans = f"nn.init._calculate_fan_in_and_fan_out({target})"
        if used == {"fan_in", "fan_out"}:
            return f"fan_in, fan_out = {fans}"
        return f"fan_in = {fans}[0]" if "fan_in" in used else f"fan_out = {fans}[1]"

    def _compiler(self, rule: RulePlan) -> ExprCompiler:
        """The forward's expression compiler, with the fans as values known per parameter."""
        compiler = ExprCompiler("init", {}, rule.env, where="in init")
        for fan in ("fan_in", "fan_out"):
            compiler.scope[fan] = Compiled(fan, VALUE)
        return compiler

    def _expr(self, compiler: ExprCompiler, node: n.Expr) -> str:
        code = tidy(self.rename(compiler.value(node)))
        if "math." in code:
            self.needs.add("math")
        return code


def _has(module: nn.Module, name: str) -> bool:
    return dict(module.named_parameters(recurse=False)).get(name) is not None


def without_rules(plan: Plan) -> Plan:
    """The plan with no init rules: built on meta, the tree the rules are written for."""
    if isinstance(plan, ModelPlan):
        return replace(plan, rules=[], children=[
            (name, without_rules(p)) for name, p in plan.children])
    if isinstance(plan, SequentialPlan):
        return SequentialPlan([(k, without_rules(p)) for k, p in plan.items], plan.span)
    if isinstance(plan, ListPlan):
        return ListPlan([without_rules(p) for p in plan.items], plan.span)
    if isinstance(plan, DictPlan):
        return DictPlan([(k, without_rules(p)) for k, p in plan.items], plan.span)
    return plan


__all__ = ["InitCode", "init_code", "without_rules"]
