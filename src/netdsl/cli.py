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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .api import check, init_report, probe, summary
from .config import ConfigError, custom_layers
from .errors import NetDSLError, inert
from .gain import NONLINEARITIES, measure
from .limits import DEFAULT_LIMITS, Limits
from .models import MAX_ELEMENTS
from .plot import PlotUnavailable, plot_stds
from .probe import render as render_probe
from .summary import render

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


@dataclass
class Report:
    """What a run found; owns the exit code."""

    checked: int = 0
    invalid: int = 0  # files with errors (a file that cannot be read has errors without a span)
    errors: list[NetDSLError] = field(default_factory=list)
    usage_errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.usage_errors:
            return EXIT_USAGE
        return EXIT_INVALID if self.errors else EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netdsl", description="netdsl: PyTorch models as specs")
    parser.add_argument("--version", action="version", version=f"netdsl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check_cmd = commands.add_parser(
        "check", help="parse, check and build specs on the meta device; report every error")
    check_cmd.add_argument("files", nargs="+", metavar="FILE", type=Path)
    check_cmd.add_argument("--format", choices=["text", "json"], default="text",
                           help="json prints one object with every diagnostic to stdout")
    _add_limits(check_cmd)
    _add_modules(check_cmd)
    summary_cmd = commands.add_parser(
        "summary", help="a table of layers, output shapes and parameter counts (on meta)")
    summary_cmd.add_argument("file", metavar="FILE", type=Path)
    summary_cmd.add_argument("--model", help="the model to summarise, when the file has several")
    summary_cmd.add_argument("--input", action="append", type=_shape, metavar="SHAPE",
                             help="a tensor input's shape, e.g. N,3,224,224 (once per tensor "
                                  "argument; replaces the spec's input declarations)")
    summary_cmd.add_argument("-p", "--param", action="append", type=_param, default=[],
                             metavar="NAME=VALUE", help="override a model parameter")
    summary_cmd.add_argument("--format", choices=["text", "json"], default="text")
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
    probe_cmd.add_argument("-p", "--param", action="append", type=_param, default=[],
                           metavar="NAME=VALUE")
    probe_cmd.add_argument("--backward", action="store_true",
                           help="also report gradient statistics of output.sum()")
    probe_cmd.add_argument("--json", action="store_true", help="print JSON instead of tables")
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
    report_cmd.add_argument("-p", "--param", action="append", type=_param, default=[],
                            metavar="NAME=VALUE")
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


def _missing(files: Sequence[Path]) -> bool:
    gone = [f for f in files if not f.exists()]
    for path in gone:
        print(_safe(f"netdsl: error: {path}: no such file"), file=sys.stderr)
    return bool(gone)


def _report(err: NetDSLError) -> int:
    for each in err.errors:
        print(_safe(each.render("error")), file=sys.stderr)
    return EXIT_INVALID


def run_summary(args: argparse.Namespace) -> int:
    if _missing([args.file]):
        return EXIT_USAGE
    try:
        result = summary(args.file, model=args.model, inputs=args.input, limits=_limits(args),
                         modules=args.layers, **dict(args.param))
    except NetDSLError as err:
        return _report(err)
    if args.format == "json":
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(render(result))
    return EXIT_OK


def run_check(files: Sequence[Path], fmt: str, limits: Limits = DEFAULT_LIMITS,
              modules: dict[str, type] | None = None) -> Report:
    report = Report()
    for path in files:
        if not path.exists():
            report.usage_errors.append(f"netdsl: error: {path}: no such file")
            continue
        report.checked += 1
        found = check(path, limits=limits, modules=modules)
        report.invalid += bool(found)
        report.errors += found
    for message in report.usage_errors:
        print(_safe(message), file=sys.stderr)
    if fmt == "json":
        print(json.dumps(_as_json(report), indent=2))
    else:
        for err in report.errors:
            print(_safe(err.render("error")), file=sys.stderr)
        if not report.usage_errors:
            bad = report.invalid
            summary = f"{report.checked - bad} valid, {bad} invalid" if bad else \
                f"{report.checked} valid"
            print(f"netdsl: {summary}", file=sys.stderr)
    return report


def run_probe(args: argparse.Namespace) -> int:
    if _missing(args.files):
        return EXIT_USAGE
    results = []
    try:
        for path in args.files:
            results.append((path, probe(path, args.input, seed=args.seed,
                                        backward=args.backward, model=args.model,
                                        limits=_limits(args), modules=args.layers,
                                        **dict(args.param))))
    except NetDSLError as err:
        return _report(err)
    if args.json:
        rows = [{"file": str(p), **r.as_dict()} for p, r in results]
        print(json.dumps(_strict_json(rows), indent=2, allow_nan=False))
    else:
        print("\n\n".join(f"{p}\n{render_probe(r)}" for p, r in results))
    if args.plot is not None:
        try:
            plot_stds([(p.stem, r) for p, r in results], args.plot)
        except PlotUnavailable as err:
            print(f"netdsl: error: {err}", file=sys.stderr)
            return EXIT_USAGE
        print(f"netdsl: wrote {args.plot}", file=sys.stderr)
    return EXIT_OK


def run_gain(args: argparse.Namespace) -> int:
    result = measure(args.nonlinearity, args.param, samples=args.samples, seed=args.seed)
    label = args.nonlinearity + (f"({args.param})" if args.param is not None else "")
    print(f"nonlinearity     {label}")
    print(f"calculate_gain   {result.calculate_gain:.6f}")
    print(f"empirical        {result.empirical:.6f}   std(x) / std(f(x)), "
          f"{result.samples:,} standard-normal samples")
    return EXIT_OK


def run_init_report(args: argparse.Namespace) -> int:
    if _missing([args.file]):
        return EXIT_USAGE
    try:
        report = init_report(args.file, model=args.model, modules=args.layers,
                             **dict(args.param))
    except NetDSLError as err:
        return _report(err)
    names = [inert(e.parameter) for e in report.entries]
    width = max((len(name) for name in names), default=9)
    shapes = [str(list(e.shape)) for e in report.entries]
    shape_width = max((len(s) for s in shapes), default=5)
    print(f"{'parameter':<{width}}  {'shape':<{shape_width}}  set by")
    for entry, name, shape in zip(report.entries, names, shapes, strict=True):
        shared = f" (tied: also {', '.join(entry.shared_with)})" if entry.shared_with else ""
        print(f"{name:<{width}}  {shape:<{shape_width}}  {inert(entry.set_by + shared)}")
    for rule in report.unmatched:
        span = rule.rule.span
        print(_safe(f"{span}: warning: init rule matched no parameter"), file=sys.stderr)
    return EXIT_OK


def _as_json(report: Report) -> dict[str, object]:
    return {
        "checked": report.checked,
        "errors": [{"path": e.path, "line": e.line, "column": e.column, "message": e.message}
                   for e in report.errors],
    }


def _strict_json(value: object) -> object:
    """NaN and infinities as strings ("nan", "inf"): strict JSON has no literal for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict_json(v) for v in value]
    return value


def _safe(text: str) -> str:
    """Spec text made inert for terminals and CI logs: control characters are escaped, and so
    is "::", which GitHub Actions would read as a workflow command."""
    printable = "".join(c if c == "\n" or c.isprintable() else repr(c)[1:-1] for c in text)
    return printable.replace("::", ":\\:")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.layers = custom_layers(args.modules) if hasattr(args, "modules") else {}
    except ConfigError as err:
        print(_safe(f"netdsl: error: {err}"), file=sys.stderr)
        return EXIT_USAGE
    try:
        commands = {"summary": run_summary, "probe": run_probe, "gain": run_gain,
                    "init-report": run_init_report}
        if args.command in commands:
            return commands[args.command](args)
        return run_check(args.files, args.format, _limits(args), args.layers).exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `netdsl init-report ... | head`: the reader has gone
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK
