"""The ``netdsl`` command: its arguments; the commands themselves are in netdsl.commands.

Exit codes: 0 every spec is valid, 1 some spec is invalid, 2 usage error (bad flag, missing
file). Diagnostics go to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .gain import NONLINEARITIES
from .limits import DEFAULT_LIMITS, MAX_ELEMENTS, Limits

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
FORMATS = ("text", "json", "github", "sarif")  # see netdsl.report


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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if hasattr(args, "max_bytes"):
        args.limits = _limits(args)
    from . import commands  # only now: --help and --version stay without torch
    from .config import ConfigError, custom_layers

    try:
        args.layers = custom_layers(args.modules) if hasattr(args, "modules") else {}
    except ConfigError as err:
        report = commands.Report(getattr(args, "format", "text"))
        report.add_usage(str(err))
        return report.emit()
    try:
        runs = {"summary": commands.run_summary, "probe": commands.run_probe,
                "gain": commands.run_gain, "init-report": commands.run_init_report}
        if args.command in runs:
            return runs[args.command](args)
        return commands.run_check(args).exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `netdsl init-report ... | head`: the reader has gone
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK
