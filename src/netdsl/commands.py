"""The commands behind ``netdsl`` that build models: each runs the API on its files and
reports, in the format asked for, what it found (see netdsl.outcome and netdsl.report).
Imported once the arguments are parsed, so that ``netdsl --help``, ``--version`` and ``fmt``
do not import torch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .api import diagnose, init_report, probe, summary
from .errors import UsageTypeError, UsageValueError, inert
from .exporter import export
from .fromtorch import ImportFailure, from_module
from .fromtorch_factory import FactoryError, build
from .gain import measure
from .graph import graph
from .graph_render import RenderError, format_for
from .graph_render import render as render_graph
from .outcome import EXIT_INVALID, EXIT_OK, EXIT_USAGE, Report, attempt, present, write_output
from .plot import PlotUnavailable, plot_stds
from .probe import render as render_probe
from .provenance import Report as InitReport
from .summary import render


def run_summary(args: argparse.Namespace) -> int:
    report = Report(args.format)
    if not present(report, [args.file]):
        return report.emit()
    result = attempt(report, args.file, lambda: summary(
        args.file, model=args.model, inputs=args.input, limits=args.limits,
        modules=args.layers, depth=args.depth, **dict(args.param)))
    if result is not None and report.tables:
        print(render(result))
    return report.emit(result.as_dict() if result is not None else None)


def run_check(args: argparse.Namespace) -> Report:
    report = Report(args.format, args.strict)
    present(report, args.files)
    for path in args.files:
        if str(path) != "-" and not path.exists():
            continue
        report.checked += 1
        source = sys.stdin.read() if str(path) == "-" else None
        shown = Path("<stdin>") if source is not None else path
        found = diagnose(shown, model=args.model, limits=args.limits, modules=args.layers,
                         source=source, **dict(args.param))
        report.invalid += report.add(found, str(shown))
    report.emit({"checked": report.checked, "valid": report.checked - report.invalid,
                 "invalid": report.invalid})
    if args.format == "text":
        print(f"netdsl: {report.counts()}", file=sys.stderr)
    return report


def run_graph(args: argparse.Namespace) -> int:
    """Draw the forward to a file, or to stdout; graphviz missing or failing is a usage error."""
    report = Report()
    if not present(report, [args.file]):
        return report.emit()
    try:
        fmt = format_for(args.output, args.picture)
    except RenderError as err:
        report.add_usage(str(err))
        return report.emit()
    drawn = attempt(report, args.file, lambda: graph(
        args.file, model=args.model, inputs=args.input, depth=args.depth, limits=args.limits,
        modules=args.layers, params=dict(args.param)))
    if drawn is None:
        return report.emit()
    try:
        write_output(args.output, render_graph(drawn, fmt))
    except (RenderError, OSError) as err:
        report.add_usage(str(err) if isinstance(err, RenderError) else
                         f"cannot write {args.output}: {err.strerror or err}")
        return report.emit()
    if args.output != "-":
        print(f"netdsl: wrote {args.output}", file=sys.stderr)
    return report.emit()


def run_export(args: argparse.Namespace) -> int:
    """Write the model's PyTorch file (or print it); a spec error is reported, exit 1."""
    report = Report()
    if not present(report, [args.file]):
        return report.emit()
    source = attempt(report, args.file, lambda: export(
        args.file, model=args.model, limits=args.limits, modules=args.layers,
        **dict(args.param)))
    if source is None:
        return report.emit()
    try:
        write_output(args.output, source.encode("utf-8"))
    except OSError as err:
        report.add_usage(f"cannot write {args.output}: {err.strerror or err}")
        return report.emit()
    if args.output != "-":
        print(f"netdsl: wrote {args.output}", file=sys.stderr)
    return report.emit()


def run_probe(args: argparse.Namespace) -> int:
    report = Report(args.format)
    if not present(report, args.files):
        return report.emit()
    results = []
    for path in args.files:
        found = attempt(report, path, lambda p=path: probe(
            p, args.input, seed=args.seed, backward=args.backward, model=args.model,
            limits=args.limits, modules=args.layers, **dict(args.param)))
        if found is None:
            return report.emit()
        results.append((path, found))
    if args.format == "json":
        return report.emit({"results": [{"file": str(p), **r.as_dict()} for p, r in results]})
    if report.tables:
        print("\n\n".join(f"{p}\n{render_probe(r)}" for p, r in results))
    if args.plot is not None:
        try:
            plot_stds([(p.stem, r) for p, r in results], args.plot)
        except PlotUnavailable as err:
            report.add_usage(str(err))
            return report.emit()
        print(f"netdsl: wrote {args.plot}", file=sys.stderr)
    return report.emit()


def run_gain(args: argparse.Namespace) -> int:
    result = measure(args.nonlinearity, args.param, samples=args.samples, seed=args.seed)
    label = args.nonlinearity + (f"({args.param})" if args.param is not None else "")
    print(f"nonlinearity     {label}")
    print(f"calculate_gain   {result.calculate_gain:.6f}")
    print(f"empirical        {result.empirical:.6f}   std(x) / std(f(x)), "
          f"{result.samples:,} standard-normal samples")
    return EXIT_OK


def run_init_report(args: argparse.Namespace) -> int:
    report = Report(args.format)
    if not present(report, [args.file]):
        return report.emit()
    found = attempt(report, args.file, lambda: init_report(
        args.file, model=args.model, modules=args.layers, **dict(args.param)))
    if found is None:
        return report.emit()
    report.add(found.warnings, str(args.file))
    entries = [{"parameter": e.parameter, "shape": list(e.shape), "set_by": e.set_by,
                "shared_with": e.shared_with} for e in found.entries]
    if args.format == "json":
        return report.emit({"entries": entries})
    if report.tables:
        print(_report_table(found))
    return report.emit()


def run_import(args: argparse.Namespace) -> int:
    """``netdsl import MODULE:FACTORY``: 2 for a factory that cannot be called, 1 for a module
    that cannot be written as a spec (the reason names the module and what is missing)."""
    try:
        text = from_module(build(args.factory, args.arg), name=args.name, inputs=args.input)
    except FactoryError as err:
        print(f"netdsl: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ImportFailure as err:
        print(f"netdsl: error: cannot import {args.factory}: {err}", file=sys.stderr)
        return EXIT_INVALID
    except (UsageTypeError, UsageValueError) as err:  # --name is not a name; too many --input
        print(f"netdsl: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.output is None:
        print(text, end="")
        return EXIT_OK
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as err:
        print(f"netdsl: error: {args.output}: cannot write: {err.strerror}", file=sys.stderr)
        return EXIT_USAGE
    print(f"netdsl: wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def _report_table(found: InitReport) -> str:
    names = [inert(e.parameter) for e in found.entries]
    width = max((len(name) for name in names), default=9)
    shapes = [str(list(e.shape)) for e in found.entries]
    shape_width = max((len(s) for s in shapes), default=5)
    rows = [f"{'parameter':<{width}}  {'shape':<{shape_width}}  set by"]
    for entry, name, shape in zip(found.entries, names, shapes, strict=True):
        shared = f" (tied: also {', '.join(entry.shared_with)})" if entry.shared_with else ""
        rows.append(f"{name:<{width}}  {shape:<{shape_width}}  {inert(entry.set_by + shared)}")
    return "\n".join(rows)
