"""The commands behind ``netdsl`` that build models: each runs the API on its files and
reports, in the format asked for, what it found (see netdsl.outcome and netdsl.report).
Imported once the arguments are parsed, so that ``netdsl --help``, ``--version`` and ``fmt``
do not import torch."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

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
from .summary import Summary, render

T = TypeVar("T")


# How errors name a spec read from stdin (``-``), as compilers and linters do.
STDIN = Path("<stdin>")


class CommandUsageError(Exception):
    """A usage mistake a command finds in its own work (an output it cannot tell the format
    of, or cannot write; graphviz missing): reported as ``netdsl: error: ...``, exit 2."""


def run_model_command(report: Report, file: Path, make: Callable[[Path, str | None], T],
                      show: Callable[[T], dict[str, object] | None]) -> int:
    """What the commands that build one model do: the file must be there (``-`` reads stdin,
    named ``<stdin>``); ``make`` turns the spec into the command's result, its spec errors
    reported; ``show`` prints or writes it, and gives the JSON format its fields. The exit
    code."""
    if not present(report, [file]):
        return report.emit()
    path, source = (STDIN, sys.stdin.read()) if str(file) == "-" else (file, None)
    try:
        result = attempt(report, path, lambda: make(path, source))
        return report.emit(None if result is None else show(result))
    except CommandUsageError as err:
        report.add_usage(str(err))
        return report.emit()


def _params(args: argparse.Namespace, api: Callable[..., object]) -> dict[str, object]:
    """The ``-p`` values, as keyword arguments of ``api``; one named as its own keyword
    (``depth``, ``source``) would be taken for that, and is refused."""
    keywords = {name for name, parameter in inspect.signature(api).parameters.items()
                if parameter.kind is not parameter.VAR_KEYWORD}
    own = [name for name, _ in args.param if name in keywords]
    if own:
        raise CommandUsageError(f"-p {own[0]}: netdsl {args.command} cannot take a model "
                                f"parameter of that name")
    return dict(args.param)


def run_summary(args: argparse.Namespace) -> int:
    report = Report(args.format)
    return run_model_command(report, args.file, lambda path, source: summary(
        path, model=args.model, inputs=args.input, limits=args.limits, modules=args.layers,
        depth=args.depth, source=source, **_params(args, summary)),
        lambda found: _print_summary(report, found))


def _print_summary(report: Report, found: Summary) -> dict[str, object]:
    if report.tables:
        print(render(found))
    return found.as_dict()


def run_check(args: argparse.Namespace) -> Report:
    report = Report(args.format, args.strict)
    try:
        params = _params(args, diagnose)
    except CommandUsageError as err:
        report.add_usage(str(err))
        report.emit()
        return report
    present(report, args.files)
    for path in args.files:
        if str(path) != "-" and not path.exists():
            continue
        report.checked += 1
        source = sys.stdin.read() if str(path) == "-" else None
        shown = STDIN if source is not None else path
        found = diagnose(shown, model=args.model, limits=args.limits, modules=args.layers,
                         source=source, **params)
        report.invalid += report.add(found, str(shown))
    report.emit({"checked": report.checked, "valid": report.checked - report.invalid,
                 "invalid": report.invalid})
    if args.format == "text":
        print(f"netdsl: {report.counts()}", file=sys.stderr)
    return report


def run_graph(args: argparse.Namespace) -> int:
    """Draw the forward to a file, or to stdout; graphviz missing or failing is a usage error."""
    return run_model_command(Report(), args.file, lambda path, source: _picture(args, path, source),
                             lambda data: _write(args.output, data))


def _picture(args: argparse.Namespace, path: Path, source: str | None) -> bytes:
    """The graph in the format asked for, which is known before the model is drawn."""
    try:
        fmt = format_for(args.output, args.picture)
    except RenderError as err:
        raise CommandUsageError(str(err)) from None
    drawn = graph(path, model=args.model, inputs=args.input, depth=args.depth,
                  limits=args.limits, modules=args.layers, params=dict(args.param),
                  source=source)
    try:
        return render_graph(drawn, fmt)
    except RenderError as err:
        raise CommandUsageError(str(err)) from None


def run_export(args: argparse.Namespace) -> int:
    """Write the model's PyTorch file (or print it); a spec error is reported, exit 1."""
    return run_model_command(Report(), args.file, lambda path, source: export(
        path, model=args.model, limits=args.limits, modules=args.layers, source=source,
        **_params(args, export)).encode("utf-8"), lambda data: _write(args.output, data))


def _write(output: str, data: bytes) -> None:
    """The command's output to its file (named on stderr), or to stdout for ``-``."""
    try:
        write_output(output, data)
    except OSError as err:
        raise CommandUsageError(f"cannot write {output}: {err.strerror or err}") from None
    if output != "-":
        print(f"netdsl: wrote {output}", file=sys.stderr)


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
