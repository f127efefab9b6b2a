"""The ``netdsl`` command: thin argument handling over :mod:`netdsl.api`.

Exit codes: 0 every spec is valid, 1 some spec is invalid, 2 usage error (bad flag, missing
file). Diagnostics go to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from . import __version__
from .api import diagnose, init_report, probe, summary
from .config import ConfigError, custom_layers
from .errors import Diagnostic, NetDSLError, inert
from .gain import NONLINEARITIES, measure
from .limits import DEFAULT_LIMITS, Limits
from .models import MAX_ELEMENTS
from .plot import PlotUnavailable, plot_stds
from .probe import render as render_probe
from .provenance import Report as InitReport
from .report import FORMATS, Record, as_json, emit, record, usage
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netdsl", description="netdsl: PyTorch models as specs")
    parser.add_argument("--version", action="version", version=f"netdsl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check_cmd = commands.add_parser(
        "check", help="parse, check and build specs on the meta device; report every error")
    check_cmd.add_argument("files", nargs="+", metavar="FILE", type=Path,
                           help="spec files; - reads one spec from stdin")
    check_cmd.add_argument("--model", help="check this model fully (with -p values)")
    _add_params(check_cmd)
    check_cmd.add_argument("--strict", action="store_true",
                           help="warnings and notes (skipped models, empty files, models "
                                "without input declarations) fail the check")
    _add_format(check_cmd)
    _add_limits(check_cmd)
    _add_modules(check_cmd)
    summary_cmd = commands.add_parser(
        "summary", help="a table of layers, output shapes and parameter counts (on meta)")
    summary_cmd.add_argument("file", metavar="FILE", type=Path)
    summary_cmd.add_argument("--model", help="the model to summarise, when the file has several")
    summary_cmd.add_argument("--input", action="append", type=_shape, metavar="SHAPE",
                             help="a tensor input's shape, e.g. N,3,224,224 (once per tensor "
                                  "argument; replaces the spec's input declarations)")
    _add_params(summary_cmd)
    _add_format(summary_cmd)
    _add_limits(summary_cmd)
    _add_modules(summary_cmd)
    _add_lab_commands(commands)
    return parser


def _add_lab_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    probe_cmd = commands.add_parser(
        "probe", help="per-layer activation statistics for a standard-normal input")
    probe_cmd.add_argument("files", nargs="+", metavar="FILE", type=Path)
    probe_cmd.add_argument("--input", required=True, type=_int_shape, metavar="SHAPE",
                           help="the input's shape, e.g. 16,256")
    probe_cmd.add_argument("--seed", type=int, help="seed torch before building the model")
    probe_cmd.add_argument("--model")
    _add_params(probe_cmd)
    probe_cmd.add_argument("--backward", action="store_true",
                           help="also report gradient statistics of output.sum()")
    _add_format(probe_cmd)
    probe_cmd.add_argument("--json", action="store_const", const="json", dest="format",
                           help=argparse.SUPPRESS)  # before --format json: kept for scripts
    probe_cmd.add_argument("--plot", type=Path, metavar="PNG",
                           help="write the std per layer, one curve per file, to a PNG")
    _add_limits(probe_cmd)
    _add_modules(probe_cmd)
    gain_cmd = commands.add_parser(
        "gain", help="calculate_gain next to the gain measured on standard-normal samples")
    gain_cmd.add_argument("nonlinearity", choices=sorted(NONLINEARITIES))
    gain_cmd.add_argument("--param", type=float, help="the negative slope of leaky_relu")
    gain_cmd.add_argument("--samples", type=_samples, default=10_000)
    gain_cmd.add_argument("--seed", type=int)
    report_cmd = commands.add_parser(
        "init-report", help="which init rule (or torch default) set each parameter")
    report_cmd.add_argument("file", metavar="FILE", type=Path)
    report_cmd.add_argument("--model")
    _add_params(report_cmd)
    _add_format(report_cmd)
    _add_modules(report_cmd)


_LIMIT_FLAGS = {"max_bytes": "spec size in bytes", "max_depth": "nesting depth",
                "max_tokens": "tokens in one spec file",
                "max_modules": "modules built", "max_params": "parameters on a real device",
                "max_meta_params": "parameters described, on the meta device",
                "max_steps": "steps of work (evaluation, forward ops on sizes, init rules)",
                "max_activation_bytes": "bytes of activations a probe may make",
                "max_errors": "errors reported per file before the check stops",
                "max_seconds": "seconds of one check or load"}
MAX_SAMPLES = 10**8  # gain's samples: 400 MB of float32
# Flags and shapes past this are typing mistakes, not settings; refused as usage errors.
_MAX_FLAG = 2**62


def _add_limits(command: argparse.ArgumentParser) -> None:
    group = command.add_argument_group("limits (see docs/security.md)")
    for name, what in _LIMIT_FLAGS.items():
        default = getattr(DEFAULT_LIMITS, name)
        kind = _seconds if isinstance(default, float) else _positive
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind,
                           default=default, metavar="N", help=f"{what} (default {default:,})")


def _add_params(command: argparse.ArgumentParser) -> None:
    command.add_argument("-p", "--param", action="append", type=_param, default=[],
                         metavar="NAME=VALUE", help="a model parameter's value (repeatable)")


def _add_format(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--format", choices=FORMATS, default="text",
        help="text (stderr), json (one object on stdout), github (workflow annotations) or "
             "sarif (a SARIF 2.1.0 log on stdout); see docs/ci.md")


def _add_modules(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--modules", action="append", default=[], metavar="MODULE",
        help="a Python module whose nn.Module classes the specs may use as layers (repeatable; "
             "also read from [tool.netdsl] modules in pyproject.toml)")


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    if value > _MAX_FLAG:
        raise argparse.ArgumentTypeError(f"must be at most 2**62: {text!r}")
    return value


def _samples(text: str) -> int:
    value = _positive(text)
    if value > MAX_SAMPLES:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SAMPLES:,}: {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < _MAX_FLAG:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(**{name: getattr(args, name) for name in _LIMIT_FLAGS})


def _int_shape(text: str) -> list[int]:
    try:
        dims = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: use e.g. 16,256") from None
    if any(d < 0 for d in dims):
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: sizes are not negative")
    for d in dims:
        _size(d, text)
    return dims


def _size(dim: int, text: str) -> int:
    if dim > MAX_ELEMENTS:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: sizes are at most 2**48")
    return dim


def _shape(text: str) -> list[int | str]:
    dims: list[int | str] = []
    for part in text.split(","):
        part = part.strip()
        if part.isdigit():
            dims.append(_size(int(part), text))
        elif part.isidentifier():
            dims.append(part)
        else:
            raise argparse.ArgumentTypeError(f"bad shape {text!r}: use e.g. N,3,224,224")
    return dims


def _param(text: str) -> tuple[str, object]:
    name, sep, raw = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"bad parameter {text!r}: use NAME=VALUE")
    value: object = raw
    for convert in (int, float):
        try:
            value = convert(raw)
            break
        except ValueError:
            continue
    if raw in ("true", "false"):
        value = raw == "true"
    return name, value


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
        args.file, model=args.model, inputs=args.input, limits=_limits(args),
        modules=args.layers, **dict(args.param)))
    if result is not None and args.format in ("text", "github"):  # json and sarif: one log
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
        found = diagnose(shown, model=args.model, limits=_limits(args), modules=args.layers,
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
            limits=_limits(args), modules=args.layers, **dict(args.param)))
        if found is None:
            return report.emit()
        results.append((path, found))
    if args.format == "json":
        return report.emit({"results": [{"file": str(p), **r.as_dict()} for p, r in results]})
    if args.format != "sarif":
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
    if args.format != "sarif":
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.layers = custom_layers(args.modules) if hasattr(args, "modules") else {}
    except ConfigError as err:
        report = Report(getattr(args, "format", "text"))
        report.add_usage(str(err))
        return report.emit()
    try:
        commands = {"summary": run_summary, "probe": run_probe, "gain": run_gain,
                    "init-report": run_init_report}
        if args.command in commands:
            return commands[args.command](args)
        return run_check(args).exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `netdsl init-report ... | head`: the reader has gone
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK
