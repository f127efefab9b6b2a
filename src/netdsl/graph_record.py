"""Recording: a traced plan -> its forward's data flow as a Graph (see netdsl.graph).

The plan's probe tree (netdsl.shapes) runs on meta once per choice of dict keys, and once more
with the second set of symbolic sizes, with hooks on its modules and a tracer on its call sites:
a layer call is a node, a block or sequential call a cluster, an op a node, a method call a
cluster of what it does. A tensor's producer is looked up by identity, so each edge joins the
node that made a tensor to each node that takes it; its label is the tensor's shape, symbolic
dimensions by name.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from . import nodes as n
from . import shaperules
from .evaluate import evaluate
from .forward import TRACER, Site
from .graph_model import Edge, Graph, Group, GroupKind, Node, NodeKind
from .plan import DictPlan, InputPlan, LayerPlan, ModelPlan, Plan, SequentialPlan, children_of
from .shapes import Probe, Trace, argument_runs, probe_tree
from .values import Env

# Operators by the name torch gives them (`x += y` is located as "+" too).
_OP_NAMES = {"+": "add", "-": "sub", "*": "mul", "/": "div", "//": "floordiv", "%": "mod",
             "**": "pow", "@": "matmul", "[]": "index", "unary -": "neg", "unary +": "pos"}
# How a call site names a dict indexed by a forward value: `choices[choice]` (a constant key is
# written quoted: `heads['a']`).
_KEYED = re.compile(r"[A-Za-z_]\w*\[[A-Za-z_]\w*\]")


def record(plan: ModelPlan, inputs: list[InputPlan], trace: Trace) -> Graph:
    """The forward's graph; ``trace`` is the finished shape pass (inferred arguments filled in,
    the symbols' sizes chosen)."""
    runs = argument_runs(plan, inputs)
    recordings = [_Recorder(plan, trace, trace.first_symbols).run(inputs, values)
                  for values in runs]
    second = None
    if trace.first_symbols:
        second = _Recorder(plan, trace, trace.second_symbols).run(inputs, runs[0])
    first = recordings[0]
    alike = all(_layout(r) == _layout(first) for r in recordings) and \
        (second is None or _layout(second) == _layout(first))
    if not alike:  # a dict choice that changes the data flow after it: the first run is drawn
        recordings, second = recordings[:1], None
    for index, edge in enumerate(first.graph.edges):
        texts = [trace.dims_text(first.shapes[index],
                                 second.shapes[index] if second is not None else None)]
        texts += [trace.shape_text(r.shapes[index]) for r in recordings[1:]]
        edge.shape = " or ".join(dict.fromkeys(texts))
        edge.dims = tuple(texts[0].strip("[]").split(", ")) if first.shapes[index] else ()
    return first.graph


def _layout(recorded: _Recorder) -> list[tuple[str, str]]:
    return [(e.source, e.target) for e in recorded.graph.edges]


@dataclass
class _Frame:
    group: Group
    module_depth: int
    scope: str  # the innermost block's or sequential's path


@dataclass
class _Recorder:
    plan: ModelPlan
    shape_trace: Trace
    symbols: dict[int, str]  # the sizes the symbols run as, this run
    graph: Graph = field(init=False)
    shapes: list[tuple[int, ...]] = field(default_factory=list)  # per edge, in edge order
    _frames: list[_Frame] = field(default_factory=list)
    _sites: list[tuple[Site, Group]] = field(default_factory=list)
    # id(tensor) -> (node id, tensor): the tensor is held so that its id is not reused.
    _producers: dict[int, tuple[str, torch.Tensor]] = field(default_factory=dict)
    _tensor_names: dict[int, str] = field(default_factory=dict)
    _paths: dict[int, str] = field(default_factory=dict)  # id(module) -> its path
    _plans: dict[str, Plan] = field(default_factory=dict)  # path -> plan
    _choices: int = 0  # inside a dict choice: what the chosen module does is not drawn
    _count: int = 0

    def __post_init__(self) -> None:
        root = Group("g0", "model", self.plan.name)
        self.graph = Graph(self.plan.name, root, [])
        self._frames.append(_Frame(root, 0, ""))

    # ------------------------------------------------------------ running
    def run(self, inputs: list[InputPlan], values: dict[str, Any]) -> _Recorder:
        trace = Trace(symbols=dict(self.symbols))
        model = probe_tree(self.plan, trace)
        self._tensor_names = {id(t): name for name, t in
                              [*model.named_parameters(), *model.named_buffers()]}
        self._paths = {id(m): path for path, m in model.named_modules()}
        self._plans = dict(_plans_with_paths(self.plan))
        sizes = {name: size for size, name in self.symbols.items()}
        with self._hooks(model), self._tracer(), torch.device("meta"):
            tensors = [torch.empty([sizes.get(d, d) for d in i.shape], dtype=i.dtype)
                       if i.shape is not None else values[i.name]
                       for i in inputs]  # type: ignore[misc]
            for item, tensor in zip(inputs, tensors, strict=True):
                if isinstance(tensor, torch.Tensor):
                    self._add("input", item.name, [], tensor, detail=_declared(item))
            output = model(*tensors)
        self._add("output", "output", [output], None)
        return self

    @contextlib.contextmanager
    def _hooks(self, model: nn.Module) -> Iterator[None]:
        handles: list[RemovableHandle] = []
        for path, module in model.named_modules():
            if isinstance(module, Probe):
                handles.append(module.register_forward_hook(
                    self._layer_hook(path, module.plan), with_kwargs=True))
            elif path and (isinstance(module, nn.Sequential) or
                           isinstance(self._plans.get(path), ModelPlan)):
                handles.append(module.register_forward_pre_hook(
                    self._enter_hook(path, self._plans[path])))
                handles.append(module.register_forward_hook(self._leave_hook))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @contextlib.contextmanager
    def _tracer(self) -> Iterator[None]:
        token = TRACER.set(self._at)
        try:
            yield
        finally:
            TRACER.reset(token)

    # ------------------------------------------------------------ events
    def _layer_hook(self, path: str, plan: LayerPlan) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                 output: Any) -> None:
            if not self._choices:
                self._add("layer", path, [args, kwargs], output, detail=plan.call_text(),
                          paths=[path])
        return hook

    def _enter_hook(self, path: str, plan: Plan) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if self._choices:
                return
            if isinstance(plan, ModelPlan):
                group = self._open("block", path, _block_call(plan))
            else:
                group = self._open("sequential", path, "sequential")
            group.path, group.paths = path, [path]
        return hook

    def _leave_hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not self._choices:
            self._frames.pop()

    def _at(self, site: Site, func: Callable[..., Any], args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> Any:
        """Every call and operator of an instrumented forward comes through here."""
        self._sites.append((site, self._frames[-1].group))
        try:
            chosen = self._chosen_dict(func, site)
            if chosen is not None:
                return self._choice(site, func, chosen, args, kwargs)
            if isinstance(func, nn.Module):  # the module's hooks draw it
                return func(*args, **kwargs)
            return self._op(site, func, args, kwargs)
        finally:
            self._sites.pop()

    def _op(self, site: Site, func: Callable[..., Any], args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> Any:
        """An op is a node; a method (or checkpoint of one) is a cluster of what it does."""
        group = self._open("call", _call_name(site, args), "")
        try:
            out = shaperules.op_output(func, args, kwargs)
            if out is None:
                out = func(*args, **kwargs)
        finally:
            self._frames.pop()
        if group.items:
            return out
        self._frames[-1].group.items.remove(group)
        if _tensors(out) and not self._choices:
            self._add("op", _OP_NAMES.get(site.label, site.label), [args, kwargs], out)
        return out

    def _choice(self, site: Site, func: nn.Module, dict_plan: DictPlan,
                args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A dict indexed by a forward argument: one node listing the keys."""
        keys = "\n".join(f"{key}: {_short_call(p)}" for key, p in dict_plan.items)
        self._choices += 1
        try:
            out = func(*args, **kwargs)
        finally:
            self._choices -= 1
        self._add("choice", site.label, [args, kwargs], out, detail=keys)
        return out

    def _chosen_dict(self, func: Callable[..., Any], site: Site) -> DictPlan | None:
        """The dict behind a call of ``d[key]`` whose key is a forward value (not a constant)."""
        written = _KEYED.fullmatch(site.label)
        if written is None or not isinstance(func, nn.Module):
            return None
        owner = self._plans.get(self._paths.get(id(func), "").rpartition(".")[0])
        return owner if isinstance(owner, DictPlan) else None

    # ------------------------------------------------------------ the graph
    def _open(self, kind: GroupKind, name: str, detail: str) -> Group:
        parent = self._frames[-1]
        module = kind in ("block", "sequential")
        depth = parent.module_depth + module
        group = Group(self._new_id("g"), kind, name, detail, depth=depth, scope=parent.scope,
                      site=self._site(parent.group))
        parent.group.items.append(group)
        self._frames.append(_Frame(group, depth, name if module else parent.scope))
        return group

    def _add(self, kind: NodeKind, name: str, inputs: list[Any], output: Any, *, detail: str = "",
             paths: list[str] | None = None) -> None:
        taken = _tensors(inputs)
        sources = [self._producer(tensor) for tensor in taken]
        group = self._frames[-1].group
        node = Node(self._new_id("n"), kind, name, detail, paths or [],
                    scope=self._frames[-1].scope, site=self._site(group))
        group.items.append(node)
        self.graph.edges += [Edge(source, node.id, "") for source in sources]
        self.shapes += [tuple(tensor.shape) for tensor in taken]
        for tensor in _tensors(output):
            self._producers[id(tensor)] = (node.id, tensor)

    def _producer(self, tensor: torch.Tensor) -> str:
        """The node that made a tensor; a parameter or buffer of the model is a node itself,
        drawn first, at the model's level (not inside the loop iteration that reads it first,
        which would then differ from the others)."""
        found = self._producers.get(id(tensor))
        if found is not None:
            return found[0]
        name = self._tensor_names.get(id(tensor), "tensor")
        node = Node(self._new_id("n"), "tensor", name, self.shape_trace.shape_text(tensor.shape))
        self.graph.root.items.insert(0, node)
        self._producers[id(tensor)] = (node.id, tensor)
        return node.id

    def _site(self, group: Group) -> Site | None:
        """The site being called, if it was called from ``group`` itself."""
        if self._sites and self._sites[-1][1] is group:
            return self._sites[-1][0]
        return None

    def _new_id(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in a value (args, kwargs, an output), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


def _declared(item: InputPlan) -> str:
    """``[B, T] long``: an input as declared (its dtype where it is not float32)."""
    dtype = "" if item.dtype == torch.float32 else f" {str(item.dtype).removeprefix('torch.')}"
    return f"[{', '.join(map(str, item.shape or []))}]{dtype}"


def _call_name(site: Site, args: tuple[Any, ...]) -> str:
    """``bn_function()``, or ``checkpoint(bn_function)`` for an op handed a method to run."""
    handed = args[0] if args and callable(args[0]) and not isinstance(args[0], nn.Module) \
        else None
    return f"{site.label}({getattr(handed, '__name__', '')})"


def _plans_with_paths(plan: Plan, prefix: str = "") -> Iterator[tuple[str, Plan]]:
    """Every plan with its module path (as ``named_modules`` gives them), the root first."""
    yield prefix, plan
    for key, child in children_of(plan):
        yield from _plans_with_paths(child, f"{prefix}.{key}" if prefix else key)


def _block_call(plan: ModelPlan) -> str:
    """``BasicBlock(64, 128, 2)``: the block and the values of its parameters, but for the
    trailing ones that hold their declared defaults (as the call most likely wrote it)."""
    params = plan.decl.params if plan.decl is not None and plan.decl.params else []
    values = [plan.env.get(p.name.name) for p in params]
    while params and _is_default(params[-1], values[-1], plan.env, params[:-1], values[:-1]):
        params, values = params[:-1], values[:-1]
    return f"{plan.name}({', '.join(map(repr, values))})"


def _is_default(param: n.Param, value: Any, env: Env, before: list[n.Param],
                earlier: list[Any]) -> bool:
    """Whether a parameter holds its default, evaluated as binding the call evaluates it: over
    the parameters before it (a default may name them) and the file's constants."""
    if param.varargs:
        return value == ()
    if param.default is None:
        return False
    scope = Env(dict(zip((p.name.name for p in before), earlier, strict=True)),
                globals=env.globals if isinstance(env, Env) else None)
    default = evaluate(param.default, scope)
    return type(default) is type(value) and default == value


def _short_call(plan: Plan) -> str:
    if isinstance(plan, LayerPlan):
        return plan.call_text()
    if isinstance(plan, ModelPlan):
        return _block_call(plan)
    return "sequential" if isinstance(plan, SequentialPlan) else type(plan).__name__


__all__ = ["record"]
