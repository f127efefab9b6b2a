"""Lint: warnings for specs that build, but probably not as meant, and notes on what a check
could not cover (see netdsl.codes for the codes, docs/errors.md for examples).

The unused-name warnings read the nodes (a name is used when any expression of its declaration
mentions it); the others read the plan and the shape trace of a checked model. None of them
changes what is built: ``--strict`` is how a project makes them fail.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from . import codes
from . import nodes as n
from .errors import NetDSLWarning, Span
from .plan import InputPlan, ModelPlan
from .shapes import Trace

# Layers whose inferred last-dimension size on an image-like tensor is a forgotten flatten.
_FLATTEN_LAYERS = ("Linear", "LayerNorm")
# Channel counts of pictures: an input ending in one of these after two spatial sizes looks
# channels-last (N, H, W, C), which torch's convolutions do not take.
_PICTURE_CHANNELS = (1, 3, 4)


def _nodes(root: BaseModel) -> Iterator[BaseModel]:
    """Every node under ``root`` (itself included), iteratively: specs can nest deeply."""
    stack: list[object] = [root]
    while stack:
        value = stack.pop()
        if isinstance(value, BaseModel):
            yield value
            stack += [child for name in _child_fields(type(value))
                      if isinstance(child := getattr(value, name), (BaseModel, list, tuple))]
        elif isinstance(value, (list, tuple)):
            stack += [v for v in value if isinstance(v, (BaseModel, list, tuple))]


@functools.cache
def _child_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    """The fields of a node class that can hold nodes: not its spans (a tenth of the walk)."""
    return tuple(name for name in cls.model_fields
                 if name != "span" and not name.endswith("_span"))


def mentioned(root: BaseModel) -> set[str]:
    """The names an expression or a layer call anywhere under ``root`` mentions (also in
    pipelines and ties)."""
    found: set[str] = set()
    for node in _nodes(root):
        if isinstance(node, n.Name):
            found.add(node.id)
        elif isinstance(node, n.Layer):
            found.add(node.name.name)
        elif isinstance(node, n.TieDecl):
            found.update(ident.name for ident in [*node.target[:1], *node.source[:1]])
    return found


def unused(decl: n.ModelDecl, mentions: Mentions | None = None) -> list[NetDSLWarning]:
    """Parameters, lets and (where the model has its own forward) children nothing mentions."""
    used = mentions.by_item[id(decl)] if mentions is not None else mentioned(decl)
    found = [_warn(f"parameter '{p.name.name}' of {decl.name.name} is never used",
                   p.name.span, codes.UNUSED)
             for p in decl.params or [] if p.name.name not in used]
    for item in n.walk_items(decl.body):
        if isinstance(item, n.Let):
            found += [_warn(f"let '{ident.name}' is never used", ident.span, codes.UNUSED)
                      for ident in n.target_names(item.target) if ident.name not in used]
    if decl.forwards:  # without one, the children run in order: every one is used
        found += [_warn(f"child '{c.name.name}' is never used by the forward of "
                        f"{decl.name.name} (it is still built, and in the state_dict)",
                        c.name.span, codes.UNUSED)
                  for c in decl.children
                  if isinstance(c.name, n.Ident) and c.name.name not in used]
    return found


def forgotten_flatten(trace: Trace) -> list[NetDSLWarning]:
    """A Linear or LayerNorm whose size was inferred from the last of two equal spatial
    dimensions: ``Linear(128)`` on ``[N, 64, 7, 7]`` is ``Linear(7, 128)``."""
    found = []
    for call in trace.calls.values():
        plan = call.plan
        if plan.infer is None or plan.name not in _FLATTEN_LAYERS or not call.inputs:
            continue
        shape = call.inputs[0]
        if len(shape) >= 4 and shape[-1] == shape[-2]:
            flat = math.prod(shape[1:])
            found.append(_warn(
                f"{plan.written_text()} was inferred on an input of shape "
                f"{trace.shape_text(shape)}, so it sees only the last dimension "
                f"({shape[-1]}): did you forget flatten? (x -> flatten(1) gives it "
                f"{trace.shape_text((shape[0], flat))})", plan.span, codes.FLATTEN))
    return found


def channels_last(inputs: Sequence[InputPlan]) -> list[NetDSLWarning]:
    """Image inputs declared ``[N, H, W, C]``: torch's Conv2d and BatchNorm2d read dim 1."""
    found = []
    for declared in inputs:
        shape = declared.shape
        if shape is None or len(shape) != 4 or shape[3] not in _PICTURE_CHANNELS:
            continue
        if isinstance(shape[1], int) and shape[1] <= max(_PICTURE_CHANNELS):
            continue
        fixed = ", ".join(str(d) for d in (shape[0], shape[3], shape[1], shape[2]))
        found.append(_warn(
            f"input '{declared.name}' looks channels-last (N, H, W, C): torch's convolutions "
            f"take channels first; declare [{fixed}] and permute the data "
            f"(x.permute(0, 3, 1, 2))", declared.span, codes.CHANNELS_LAST))
    return found


def no_input(decl: n.ModelDecl, plan: ModelPlan) -> list[NetDSLWarning]:
    """A model whose forward takes tensors but declares none: its shapes were not run."""
    if decl.kind != "model" or plan.inputs or not plan.arg_names:
        return []
    args = ", ".join(plan.arg_names)
    return [_warn(f"{decl.name.name} declares no input, so its forward and shapes are not "
                  f"checked: declare its forward's arguments ({args}), e.g. "
                  f"'input {plan.arg_names[0]}: [N, 3, 224, 224]'", decl.name.span,
                  codes.NO_INPUT)]


def skipped(decl: n.ModelDecl, required: Sequence[str]) -> NetDSLWarning:
    flags = " ".join(f"-p {name}=..." for name in required)
    option = "" if decl.kind == "block" else f"--model {decl.name.name} "
    return _warn(f"skipped: {decl.name.name} is checked for names only; its layers and shapes "
                 f"need values: check {option}{flags}", decl.name.span, codes.SKIPPED)


def unshaped(decl: n.ModelDecl) -> NetDSLWarning:
    """A block whose input sizes are inferred, used by nothing: its shapes were not run."""
    return _warn(f"skipped: the shapes of {decl.name.name} are checked where a model uses it, "
                 f"and nothing in this file does", decl.name.span, codes.SKIPPED)


def empty(spec: n.Spec) -> list[NetDSLWarning]:
    if spec.models:
        return []
    where = Span(path=spec.path, line=1, column=1, end_line=1, end_column=1)
    return [_warn("declares no model or block: nothing to check", where, codes.EMPTY)]


@dataclass
class Mentions:
    """What the declarations, lets and functions of a file mention, read once per file, so a
    file of many blocks stays linear: by item (its ``id``) and, for each name, who."""

    by_item: dict[int, set[str]] = field(default_factory=dict)
    by_name: dict[str, set[int]] = field(default_factory=dict)


def mentioners(spec: n.Spec) -> Mentions:
    found = Mentions()
    for item in [*spec.models, *spec.lets, *spec.defs]:
        names = found.by_item[id(item)] = mentioned(item)
        for name in names:
            found.by_name.setdefault(name, set()).add(id(item))
    return found


def uses_elsewhere(mentions: Mentions, decl: n.ModelDecl) -> bool:
    """Whether another part of the file mentions ``decl`` (and so checks it there)."""
    return bool(mentions.by_name.get(decl.name.name, set()) - {id(decl)})


def unmatched_rules(model: str, spans: Sequence[Span]) -> list[NetDSLWarning]:
    return [_warn(f"init rule matched no parameter of {model}", span, codes.UNMATCHED_INIT)
            for span in spans]


def _warn(message: str, span: Span, code: str) -> NetDSLWarning:
    return NetDSLWarning(message, span, code=code)
