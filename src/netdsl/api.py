"""The public API: chains the stages, nothing more.

``text -> parse (nodes) -> check (plan) -> build (modules, init rules)``; the forward is compiled
during the check. Every NetDSLError leaving here carries the source line it points at.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import codes, lint, pickling, plancache, provenance, work
from . import nodes as n
from .build import build, count_parameters, has_rules
from .check import Checker
from .errors import (
    Diagnostic,
    InternalError,
    LimitError,
    NetDSLError,
    Span,
    Usage,
    UsageTypeError,
    UsageValueError,
    did_you_mean,
    fail,
    first_line,
)
from .expectations import check_expectations
from .imports import Loader, Unit, read_spec
from .imports import parse as parse_text
from .library import MAX_INT_BITS
from .limits import DEFAULT_LIMITS, MAX_ELEMENTS, Limits
from .plan import InputPlan, ModelPlan
from .probe import ProbeResult
from .probe import probe as run_probe
from .provenance import Report
from .registry import Registry
from .resolve import resolve
from .shapes import needs_shapes, trace_shapes
from .signatures import Arg
from .summary import DEFAULT_DEPTH, Summary, summarize
from .values import LayerRef

PathLike = str | os.PathLike[str]


def parse(text: str, *, path: str = "<string>", limits: Limits = DEFAULT_LIMITS) -> n.Spec:
    """Parse spec text into nodes (``Spec``, a pydantic model: ``.model_dump_json()``)."""
    with _sources({path: text}):
        return parse_text(text, path, limits)


def parse_file(path: PathLike, *, limits: Limits = DEFAULT_LIMITS) -> n.Spec:
    """Parse a ``.net`` file into nodes."""
    with _sources({}):
        text = read_spec(Path(path), limits)
    return parse(text, path=str(path), limits=limits)


def load(path: PathLike, *, model: str | None = None, device: str | torch.device | None = None,
         modules: Mapping[str, type[nn.Module]] | None = None,
         limits: Limits = DEFAULT_LIMITS, **params: Any) -> nn.Module:
    """Compile the model in a ``.net`` file into an ``nn.Module``.

    ``model`` picks a model when the file declares several; ``device`` builds there (``"meta"``
    allocates nothing); ``modules`` adds custom layers by name; ``limits`` bounds what the spec
    may ask for; ``params`` override the model's parameters.
    """
    with open_unit(path, limits) as (loader, unit):
        made = pickling.recipe(loader.sources, str(path), "", model, params, modules, limits)
        return _compile(unit, model, device, modules, limits, params, made)


def loads(text: str, *, path: str = "<string>", model: str | None = None,
          device: str | torch.device | None = None,
          modules: Mapping[str, type[nn.Module]] | None = None,
          limits: Limits = DEFAULT_LIMITS, **params: Any) -> nn.Module:
    """Like :func:`load`, from text; imports resolve against the current directory."""
    with open_unit(None, limits, text=text, name=path) as (loader, unit):
        made = pickling.recipe(loader.sources, None, path, model, params, modules, limits)
        return _compile(unit, model, device, modules, limits, params, made)


@contextlib.contextmanager
def open_unit(path: PathLike | None, limits: Limits, *, text: str = "", name: str = ""
              ) -> Iterator[tuple[Loader, Unit]]:
    """A spec file (or text) and its imports, loaded; errors inside get their source lines."""
    _check_usage(path, limits, text)
    loader = Loader(Path(path).parent if path is not None else Path.cwd(), limits)
    with _sources(loader.sources), work.session(limits):
        unit = loader.load_file(Path(path)) if path is not None else loader.load_text(text, name)
        yield loader, unit


def open_spec(path: PathLike, limits: Limits, source: str | None = None
              ) -> contextlib.AbstractContextManager[tuple[Loader, Unit]]:
    """:func:`open_unit` on a spec file, or on ``source``, the text of one that is not on disk
    (stdin, an editor's buffer), named ``path``; its imports then resolve against the current
    directory."""
    if source is None:
        return open_unit(path, limits)
    return open_unit(None, limits, text=source, name=os.fspath(path))


def _check_usage(path: PathLike | None, limits: Limits, text: str) -> None:
    """Mistakes in the call itself (not the spec) are Python's usage errors: TypeError."""
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise UsageTypeError(f"a spec path is a str or os.PathLike, got {type(path).__name__}")
    if path is not None and not isinstance(os.fspath(path), str):
        raise UsageTypeError("a spec path is a str (decode a bytes path first)")
    if not isinstance(text, str):
        raise UsageTypeError(f"spec text is a str, got {type(text).__name__}"
                        + (" (decode it first)" if isinstance(text, bytes) else ""))
    if not isinstance(limits, Limits):
        raise UsageTypeError(f"limits= takes a netdsl.Limits, got {type(limits).__name__}")


def _device(device: str | torch.device | None) -> torch.device | None:
    """The device to build on, refused at once (ValueError) if torch cannot make tensors there."""
    if device is None:
        return None
    try:
        chosen = torch.device(device)
        torch.empty(0, device=chosen)
    except (RuntimeError, TypeError, AssertionError) as err:
        raise UsageValueError(f"device={device!r}: {first_line(err)}") from None
    return chosen


def _compile(unit: Unit, model: str | None, device: str | torch.device | None,
             modules: Mapping[str, type[nn.Module]] | None, limits: Limits,
             params: Mapping[str, Any], made: pickling.Recipe) -> nn.Module:
    device = _device(device)
    kept = plancache.checked(made, lambda: ready_plan(unit, model, modules, limits, params))
    plan = kept.plan
    if device is None or device.type != "meta":
        if kept.counts is None:
            kept.counts = count_parameters(plan)
        _check_params(plan, limits.max_params, "Limits.max_params", kept.counts)
    classes: dict[Any, type[nn.Module]] = {}
    budget = work.current()
    if budget is not None and (device is None or device.type != "meta"):
        budget.stop_clock()
    with torch.device(device) if device is not None else contextlib.nullcontext():
        module = build(plan, classes)
    pickling.register(made, list(classes.values()))
    return module


def rebuild_classes(made: pickling.Recipe) -> list[type[nn.Module]]:
    """The classes of a recipe's compile, made again from its texts on meta (for a pickle)."""
    texts = dict(made.sources)
    with _sources(texts), work.session(made.limits):
        loader = Loader(Path.cwd(), made.limits, texts=texts)
        if made.path is not None:
            unit = loader.load_file(Path(made.path))
        else:
            unit = loader.load_text(texts[made.name], made.name)
        plan = plancache.checked(made, lambda: ready_plan(
            unit, made.model, dict(made.modules), made.limits, dict(made.params))).plan
        classes: dict[Any, type[nn.Module]] = {}
        with torch.device("meta"):
            build(plan, classes)
    return list(classes.values())


def _check_params(plan: ModelPlan, budget: int, setting: str,
                  counts: tuple[int, int] | None = None) -> int:
    """Count parameters and buffers on the meta device (unless counted already); refuse before a
    real build allocates them. Returns the parameter count."""
    params, buffers = counts if counts is not None else count_parameters(plan)
    if params + buffers > budget:
        what = f"{params:,} parameters" + (f" and {buffers:,} buffer elements" if buffers else "")
        fail(f"{plan.name} has {what}, over the limit of {budget:,} ({setting}; "
             f"build on device=\"meta\" to inspect it)", plan.span, codes.LIMIT)
    return params


def ready_plan(unit: Unit, model: str | None, modules: Mapping[str, type[nn.Module]] | None,
               limits: Limits, params: Mapping[str, Any]) -> ModelPlan:
    """The checked plan with inferred arguments filled in: everything short of building."""
    decl = choose_model(unit, model)
    plan = plan_model(unit, decl, Checker(Registry.with_modules(modules), limits), params)
    if needs_shapes(plan):
        raise_first(trace_shapes(plan).errors)
    return plan


def load_plan(path: PathLike, *, model: str | None = None,
              modules: Mapping[str, type[nn.Module]] | None = None,
              limits: Limits = DEFAULT_LIMITS, **params: Any) -> ModelPlan:
    """The checked plan of a spec's model (what :func:`load` builds), for tools built on it."""
    with open_unit(path, limits) as (_, unit):
        return ready_plan(unit, model, modules, limits, params)


def raise_first(errors: list[NetDSLError]) -> None:
    if errors:
        errors[0].errors = list(errors)
        raise errors[0]


def choose_model(unit: Unit, name: str | None) -> n.ModelDecl:
    """The model to compile: the one named, or the file's only ``model``."""
    if name is not None and not isinstance(name, str):
        raise UsageTypeError(f"model= takes a model's name (a str), got {type(name).__name__}")
    models = [m for m in unit.spec.models if m.kind == "model"]
    names = ", ".join(m.name.name for m in models)
    if name is not None:
        found = unit.scope.get(name)
        if found is None:
            raise NetDSLError(f"{unit.spec.path}: no model '{name}'"
                              f"{did_you_mean(name, unit.scope) or f'; models: {names}'}",
                              code=codes.MODEL)
        return found[0]
    if len(models) == 1:
        return models[0]
    if not models:
        raise NetDSLError(f"{unit.spec.path}: declares no model", code=codes.MODEL)
    raise NetDSLError(f"{unit.spec.path}: declares several models ({names}); choose one with "
                      f"model= (--model on the command line)", code=codes.MODEL)


def plan_model(unit: Unit, decl: n.ModelDecl, checker: Checker, params: Mapping[str, Any]
               ) -> ModelPlan:
    """Check a model with the given parameter values; raise its first error (all are on
    ``.errors``)."""
    plan = None
    with checker.collect():
        given = bind_overrides(checker, decl, unit, params)
        plan = checker.declaration(decl, unit, [], given, decl.name.span)
        if plan is not None and not isinstance(plan, ModelPlan):
            fail(f"'{decl.name.name}' is a {_kind_of(plan)}, not a model: a model to load has a "
                 f"body with its children, or is a call of a model or block (declare the "
                 f"{_kind_of(plan)} as a block and use it in a model)", decl.name.span,
                 codes.MODEL)
    raise_first(checker.errors)
    assert isinstance(plan, ModelPlan)
    return plan


def _kind_of(plan: object) -> str:
    return type(plan).__name__.removesuffix("Plan").lower()


def bind_overrides(checker: Checker, decl: n.ModelDecl, unit: Unit, params: Mapping[str, Any]
                   ) -> list[Arg]:
    """Parameter values from Python: unknown names and wrong types are located at the model."""
    known = [p.name for p in checker.signature(decl, unit).params]
    for key in params:
        if key not in known:
            fail(f"{decl.name.name} has no parameter '{key}'"
                 f"{did_you_mean(key, known) or _list_params(known)}", decl.name.span,
                 codes.PARAMETER)
    for key, value in params.items():
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            fail(f"parameter '{key}' is too large ({value.bit_length():,} bits)", decl.name.span,
                 codes.PARAMETER)
        if isinstance(value, float) and not math.isfinite(value):  # the spec cannot write one
            fail(f"parameter '{key}' is {value!r}: parameters are finite numbers",
                 decl.name.span, codes.PARAMETER)
    return [Arg(_from_python(value), decl.name.span, key, decl.name.span)
            for key, value in params.items()]


def _from_python(value: Any) -> Any:
    """A layer class given from Python (``block=nn.Linear``) is a layer value of the spec."""
    if isinstance(value, type) and issubclass(value, nn.Module):
        return LayerRef(value.__name__, value)
    return value


def _list_params(known: list[str]) -> str:
    return f"; parameters: {', '.join(known)}" if known else "; it takes no parameters"


@contextlib.contextmanager
def _sources(texts: Mapping[str, str]) -> Iterator[None]:
    """Attach source lines to any NetDSLError escaping the block; nothing else escapes it."""
    try:
        yield
    except NetDSLError as err:
        err.with_source(texts)
        for other in err.errors:
            other.with_source(texts)
        raise
    except RecursionError:
        where = next(iter(texts), "<string>")  # the spec that was loaded first
        raise NetDSLError("spec is nested too deeply to compile (an expression or a chain of "
                          "blocks thousands of levels deep)",
                          Span(path=where, line=1, column=1, end_line=1, end_column=2),
                          code=codes.LIMIT) from None
    except Usage:
        raise
    except Exception as err:  # a bug in netdsl: still no traceback for the user's spec
        raise InternalError(f"internal error ({type(err).__name__}: {err}); please report it "
                            f"with the spec") from err


def check(path: PathLike, *, model: str | None = None,
          modules: Mapping[str, type[nn.Module]] | None = None,
          limits: Limits = DEFAULT_LIMITS, **params: Any) -> list[NetDSLError]:
    """Every mistake in a spec file, located; ``[]`` when it is valid.

    Each declaration whose parameters all have defaults is checked and built on the meta device
    (nothing is allocated); one that needs parameter values is checked for names (and fully
    where another declaration uses it). With ``model`` or ``params``, that one model is checked
    fully with those values. :func:`diagnose` also gives the warnings and notes.
    """
    return [d for d in diagnose(path, model=model, modules=modules, limits=limits, **params)
            if isinstance(d, NetDSLError)]


def diagnose(path: PathLike, *, model: str | None = None,
             modules: Mapping[str, type[nn.Module]] | None = None,
             limits: Limits = DEFAULT_LIMITS, source: str | None = None,
             **params: Any) -> list[Diagnostic]:
    """Errors, warnings and notes for a spec file (see netdsl.codes), each once, located.

    ``source`` is the file's text when it is not on disk (stdin, an editor's buffer); its
    imports then resolve against the current directory.
    """
    found: list[Diagnostic] = []
    sources: Mapping[str, str] = {}
    try:
        with open_spec(path, limits, source) as (loader, unit):
            sources = loader.sources
            found += _diagnose_unit(unit, model, modules, limits, params)
    except NetDSLError as err:
        found.append(err)
    unique = {(e.message, e.span): e for e in found}
    return [e.with_source(sources) for e in unique.values()]


def _diagnose_unit(unit: Unit, model: str | None,
                   modules: Mapping[str, type[nn.Module]] | None, limits: Limits,
                   params: Mapping[str, Any]) -> list[Diagnostic]:
    registry = Registry.with_modules(modules)
    budget = work.current()  # one for the file: its declarations share it
    found: list[Diagnostic] = [*_check_lets(unit, Checker(registry, limits, budget=budget)),
                               *lint.empty(unit.spec)]
    chosen = [choose_model(unit, model)] if model is not None or params else unit.spec.models
    mentions = lint.mentioners(unit.spec)
    for decl in chosen:
        if any(isinstance(e, LimitError) for e in found):
            break  # a limit ends the file's check: the rest would only repeat it
        found += _check_decl(unit, decl, Checker(registry, limits, budget=budget), mentions,
                             params)
        found += lint.unused(decl, mentions)
    return found


def _check_lets(unit: Unit, checker: Checker) -> list[NetDSLError]:
    """File-level lets, each evaluated once: one that no model uses is checked too."""
    globs = checker.world.globals(unit)
    for let in unit.spec.lets:
        for ident in n.target_names(let.target):
            with checker.collect():
                globs.lookup(ident.name)
    return checker.errors


def _check_decl(unit: Unit, decl: n.ModelDecl, checker: Checker,
                mentions: lint.Mentions, params: Mapping[str, Any] | None = None
                ) -> list[Diagnostic]:
    try:
        required = [] if params else _required(checker, decl, unit)
        if required:  # no values to run it with: its names are resolved statically
            skipped = [] if lint.uses_elsewhere(mentions, decl) else \
                [lint.skipped(decl, required)]
            return [*resolve(unit, decl, checker.registry), *skipped]
        given = bind_overrides(checker, decl, unit, params) if params else []
        plan = checker.declaration(decl, unit, [], given, decl.name.span)
        raise_first(checker.errors)
        if not isinstance(plan, ModelPlan):
            return []  # a container or layer: nothing more to run on its own
        if decl.kind == "block" and needs_shapes(plan):
            # Its input dimensions come from where it is used, and are checked there.
            return [] if lint.uses_elsewhere(mentions, decl) else [lint.unshaped(decl)]
        return _check_plan(decl, plan, checker)
    except LimitError as err:  # the check stops here; what it found so far is reported too
        return [*checker.errors, err]
    except NetDSLError as err:
        return list(err.errors)


def _check_plan(decl: n.ModelDecl, plan: ModelPlan, checker: Checker) -> list[Diagnostic]:
    """A checked model's shapes, sizes, init rules and expectations, with their warnings."""
    found: list[Diagnostic] = [*lint.channels_last(plan.inputs), *lint.no_input(decl, plan)]
    trace = trace_shapes(plan)
    if trace.errors:
        return [*trace.errors, *found]
    count = _check_params(plan, checker.limits.max_meta_params, "Limits.max_meta_params")
    found += lint.forgotten_flatten(trace)
    if has_rules(plan):  # init rules are checked by applying them, on meta
        with torch.device("meta"):
            built = build(plan)
        unmatched = provenance.init_report(plan, built).unmatched
        found += lint.unmatched_rules(plan.name, [r.rule.span for r in unmatched])
    return [*check_expectations(plan, trace, count), *found]


def _required(checker: Checker, decl: n.ModelDecl, unit: Unit) -> list[str]:
    """The parameters a declaration needs values for."""
    return [p.name for p in checker.signature(decl, unit).params
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def summary(path: PathLike, *, model: str | None = None,
            inputs: Sequence[Sequence[int | str]] | None = None,
            modules: Mapping[str, type[nn.Module]] | None = None,
            limits: Limits = DEFAULT_LIMITS, depth: int | None = DEFAULT_DEPTH,
            source: str | None = None, **params: Any) -> Summary:
    """A table of the model's blocks and layers (output shapes, parameters, MACs and FLOPs)
    with its totals and memory estimates, built and run on meta.

    ``inputs`` gives the shapes of the forward's tensor arguments (ints or symbol names), in
    place of the spec's ``input`` declarations. ``depth`` is how many levels of blocks and
    containers get rows (torchinfo's 3 by default, ``None`` for all); deeper ones are counted
    in their ancestor's row. ``source`` is the file's text when it is not on disk, as for
    :func:`diagnose`.
    """
    if inputs is not None:
        check_shapes(inputs, "inputs")
    _check_depth(depth)
    with open_spec(path, limits, source) as (_, unit):
        decl = choose_model(unit, model)
        plan = plan_model(unit, decl, Checker(Registry.with_modules(modules), limits), params)
        declared = plan.inputs if inputs is None else given_inputs(plan, inputs, decl)
        trace = trace_shapes(plan, declared)
        raise_first(trace.errors)
        _check_params(plan, limits.max_meta_params, "Limits.max_meta_params")
        with torch.device("meta"):
            built = build(plan)
        return summarize(plan, trace, built, declared, depth)


def _check_depth(depth: object) -> None:
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int)):
        raise UsageTypeError(f"depth is an int or None, got {type(depth).__name__}")
    if depth is not None and depth < 0:
        raise UsageValueError(f"depth is at least 0, got {depth}")


def check_shapes(inputs: object, argument: str) -> None:
    """Shapes from Python: a sequence of shapes, each a sequence of sizes (ints >= 0, or
    symbol names where symbols are allowed)."""
    if isinstance(inputs, (str, bytes, Mapping)) or not isinstance(inputs, Sequence):
        raise UsageTypeError(f"{argument} takes a list of shapes, one per tensor argument of the "
                             f"forward (e.g. [(1, 3, 224, 224)]), got {type(inputs).__name__}")
    for shape in inputs:
        _check_shape(shape, argument, symbols=True)


def _check_shape(shape: object, argument: str, symbols: bool = False) -> None:
    if isinstance(shape, (str, bytes, Mapping)) or not isinstance(shape, Sequence):
        raise UsageTypeError(f"{argument}: a shape is a tuple of sizes, e.g. (1, 3, 224, 224), "
                             f"got {type(shape).__name__}")
    for size in shape:
        if symbols and isinstance(size, str) and size.isidentifier():
            continue
        if isinstance(size, bool) or not isinstance(size, int):
            allowed = "ints or symbol names" if symbols else "ints"
            raise UsageTypeError(f"{argument}: sizes are {allowed}, got {size!r} in {shape!r}")
        if not 0 <= size <= MAX_ELEMENTS:
            raise UsageValueError(f"{argument}: sizes are between 0 and 2**48, got {size} in "
                                  f"{shape!r}")


def given_inputs(plan: ModelPlan, shapes: Sequence[Sequence[int | str]],
                decl: n.ModelDecl) -> list[InputPlan]:
    declared = plan.inputs or [InputPlan(a, [], "tensor", decl.span) for a in plan.arg_names]
    tensors = [i for i in declared if i.shape is not None]
    if len(shapes) != len(tensors):
        names = ", ".join(i.name for i in tensors)
        raise NetDSLError(f"{plan.name} takes {len(tensors)} tensor input(s) ({names}), "
                          f"{len(shapes)} shape(s) given", code=codes.ARGUMENTS)
    given = iter(shapes)
    return [replace(i, shape=list(next(given))) if i.shape is not None else i for i in declared]


def probe(path: PathLike, input_shape: Sequence[int], *, seed: int | None = None,
          backward: bool = False, model: str | None = None,
          modules: Mapping[str, type[nn.Module]] | None = None,
          limits: Limits = DEFAULT_LIMITS, **params: Any) -> ProbeResult:
    """Per-layer activation statistics for a standard-normal input (see :mod:`netdsl.probe`).

    With ``seed``: seed, build (construction and init rules), draw the input, run — the order of
    a hand-written experiment, so the numbers reproduce it exactly.
    """
    _check_shape(input_shape, "input_shape")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise UsageTypeError(f"seed takes an int or None, got {type(seed).__name__}")
    with open_unit(path, limits) as (_, unit):
        plan = ready_plan(unit, model, modules, limits, params)
        _check_params(plan, limits.max_params, "Limits.max_params")
        _check_activations(plan, choose_model(unit, model), input_shape, limits)
        return run_probe(plan, input_shape, seed=seed, backward=backward)


def _check_activations(plan: ModelPlan, decl: n.ModelDecl, input_shape: Sequence[int],
                       limits: Limits) -> None:
    """The probe's forward first runs on meta: what it would hold is known before it runs."""
    trace = trace_shapes(plan, given_inputs(plan, [input_shape], decl))
    raise_first(trace.errors)
    if trace.activation_bytes > limits.max_activation_bytes:
        fail(f"probing {plan.name} on {list(input_shape)} makes "
             f"{trace.activation_bytes:,} bytes of activations, over the limit of "
             f"{limits.max_activation_bytes:,} (Limits.max_activation_bytes, "
             f"--max-activation-bytes)", plan.span, codes.LIMIT)


def init_report(path: PathLike, *, model: str | None = None,
                modules: Mapping[str, type[nn.Module]] | None = None,
                limits: Limits = DEFAULT_LIMITS, **params: Any) -> Report:
    """Which rule (``file:line``) or torch default set each parameter; rules that set nothing."""
    with open_unit(path, limits) as (loader, unit):
        plan = ready_plan(unit, model, modules, limits, params)
        with torch.device("meta"):
            built = build(plan)
        report = provenance.init_report(plan, built, loader.sources)
        spans = [rule.rule.span for rule in report.unmatched]
        report.warnings = [w.with_source(loader.sources)
                           for w in lint.unmatched_rules(plan.name, spans)]
        return report


def reinitialize(module: nn.Module, path: PathLike, *, model: str | None = None,
                 modules: Mapping[str, type[nn.Module]] | None = None,
                 limits: Limits = DEFAULT_LIMITS, **params: Any) -> nn.Module:
    """Re-run a spec's initialisation (torch defaults, then init rules) on a built model.

    For a model built with ``device="meta"`` and materialised with ``to_empty()``: under the same
    seed, the result equals a normal :func:`load`, bit for bit. Returns ``module``.
    """
    if not isinstance(module, nn.Module):
        raise UsageTypeError(f"module takes an nn.Module, got {type(module).__name__}")
    plan = load_plan(path, model=model, modules=modules, limits=limits, **params)
    with torch.device("meta"):
        expected = build(plan)
    _same_tensors(module, expected, plan.name, path)
    provenance.reinitialize(plan, module)
    return module


def _same_tensors(module: nn.Module, expected: nn.Module, name: str, path: PathLike) -> None:
    """``module`` must be the spec's model: the same parameters and buffers, by name and
    shape (a ValueError naming the first difference, before anything is written)."""
    have = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    want = {k: tuple(v.shape) for k, v in expected.state_dict().items()}
    if have == want:
        return
    missing = [k for k in want if k not in have]
    extra = [k for k in have if k not in want]
    if missing or extra:
        what = f"it has no '{missing[0]}'" if missing else \
            f"it has '{extra[0]}', which {name} has not"
    else:
        key = next(k for k in want if have[k] != want[k])
        what = f"its '{key}' is {list(have[key])}, not {list(want[key])}"
    raise UsageValueError(f"module is not {name} of {os.fspath(path)}: {what}")
