"""The commands behind ``netdsl``: each runs the API on its files and reports, in the format
asked for, what it found (see netdsl.report). Imported once the arguments are parsed, so that
``netdsl --help`` and ``--version`` do not import torch."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .api import diagnose, init_report, probe, summary
from .errors import Diagnostic, NetDSLError, inert
from .gain import measure
from .plot import PlotUnavailable, plot_stds
from .probe import render as render_probe
from .provenance import Report as InitReport
from .report import Record, as_json, emit, record, usage
from .summary import render

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
T = TypeVar("T")


@dataclass
class Report:
    """What a run found, in every format; owns the exit code."""

    fmt: str = "text"
    strict: bool = False
    checked: int = 0
    invalid: int = 0  # files with errors (a file that cannot be read has errors without a span)
    missing: int = 0
    records: list[Record] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # rendered, for the text format
    usage_errors: list[str] = field(default_factory=list)

    def add(self, found: Sequence[Diagnostic], path: str | None) -> bool:
        """Diagnostics of one file; whether any is an error (all are, under --strict)."""
        for item in found:
            self.records.append(record(item, path, self.strict))
            self.texts.append(item.render("error" if self.strict else item.severity))
        return any(self.strict or isinstance(item, NetDSLError) for item in found)

    def add_usage(self, message: str, path: str | None = None) -> None:
        self.usage_errors.append(message)
        self.records.append(usage(message, path))
        self.texts.append(f"netdsl: error: {message}")

    @property
    def tables(self) -> bool:
        """Whether a command prints its table: json and sarif are one log on stdout."""
        return self.fmt in ("text", "github")

    @property
    def exit_code(self) -> int:
        if self.usage_errors:
            return EXIT_USAGE
        return EXIT_INVALID if any(r.severity == "error" for r in self.records) else EXIT_OK

    def emit(self, result: dict[str, object] | None = None) -> int:
        """Print the diagnostics (and a command's result, for JSON) in the chosen format."""
        if self.fmt == "json":
            body = {**(result or {}), "diagnostics": as_json(self.records)}
            print(json.dumps(_strict_json(body), indent=2, allow_nan=False))
        else:
            emit(self.records, self.fmt, self.texts)
        return self.exit_code

    def counts(self) -> str:
        valid = self.checked - self.invalid
        parts = [f"{valid} valid"] + [f"{n} {what}" for n, what in (
            (self.invalid, "invalid"), (self.missing, "missing")) if n]
        notes = [f"{n} {what}{'s' if n != 1 else ''}" for n, what in (
            (self._severity("warning"), "warning"), (self._severity("note"), "note")) if n]
        return ", ".join(parts) + (f" ({', '.join(notes)})" if notes else "")

    def _severity(self, level: str) -> int:
        return sum(r.severity == level for r in self.records)


def _present(report: Report, files: Sequence[Path]) -> bool:
    """Whether every file exists; each missing one is a usage error of the report."""
    for path in files:
        if str(path) != "-" and not path.exists():
            report.add_usage(f"{path}: no such file", str(path))
            report.missing += 1
    return not report.missing


def _attempt(report: Report, path: Path, call: Callable[[], T]) -> T | None:
    """Run one command on a file; its spec errors go to the report."""
    try:
        return call()
    except NetDSLError as err:
        report.add(err.errors, str(path))
        return None


def run_summary(args: argparse.Namespace) -> int:
    report = Report(args.format)
    if not _present(report, [args.file]):
        return report.emit()
    result = _attempt(report, args.file, lambda: summary(
        args.file, model=args.model, inputs=args.input, limits=args.limits,
        modules=args.layers, **dict(args.param)))
    if result is not None and report.tables:
        print(render(result))
    return report.emit(result.as_dict() if result is not None else None)


def run_check(args: argparse.Namespace) -> Report:
    report = Report(args.format, args.strict)
    _present(report, args.files)
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


def run_probe(args: argparse.Namespace) -> int:
    report = Report(args.format)
    if not _present(report, args.files):
        return report.emit()
    results = []
    for path in args.files:
        found = _attempt(report, path, lambda p=path: probe(
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
    if not _present(report, [args.file]):
        return report.emit()
    found = _attempt(report, args.file, lambda: init_report(
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


def _strict_json(value: object) -> object:
    """NaN and infinities as strings ("nan", "inf"): strict JSON has no literal for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict_json(v) for v in value]
    return value
