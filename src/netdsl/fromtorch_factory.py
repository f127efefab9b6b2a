"""Import, the command line: ``MODULE:FACTORY`` and ``--arg NAME=VALUE`` -> the built module.

``netdsl import torchvision.models:resnet18 --arg num_classes=10`` imports the Python module the
user names on their own command line (as ``--modules`` does, see netdsl.config) and calls the
factory with the arguments given; each value is a Python literal (``ast.literal_eval``) or JSON,
never evaluated as code. Light at import time: ``netdsl --help`` parses ``--arg`` without torch.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class FactoryError(Exception):
    """A mistake in the factory or its arguments: a usage error (exit code 2)."""


def parse_arg(text: str) -> tuple[str, Any]:
    """``NAME=VALUE``, the value a Python literal or JSON: ``10``, ``'a'``, ``true``, ``[1, 2]``."""
    name, sep, raw = text.partition("=")
    if not sep or not name.isidentifier():
        raise ValueError(f"bad argument {text!r}: use NAME=VALUE")
    try:
        return name, ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pass
    try:
        return name, json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError(f"bad argument {text!r}: the value is a Python literal or JSON "
                         f"(a string is quoted: {name}='\"{raw}\"')") from None


def build(factory: str, args: Sequence[tuple[str, Any]]) -> Any:
    """The module ``MODULE:FACTORY(**args)`` returns, with the current directory importable."""
    from torch import nn

    from .config import ConfigError, import_user_module, on_path

    module_name, sep, attribute = factory.partition(":")
    if not sep or not _dotted(module_name) or not _dotted(attribute):
        raise FactoryError(f"'{factory}' is not MODULE:FACTORY (e.g. torchvision.models:resnet18)")
    with on_path(Path.cwd()):
        try:  # as --modules imports the user's modules: named by the user, never by a spec
            found: Any = import_user_module(module_name)
        except ConfigError as err:
            raise FactoryError(str(err)) from None
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise FactoryError(f"module '{module_name}' has no '{attribute}'")
        found = getattr(found, part)
    if not callable(found):
        raise FactoryError(f"'{factory}' is not callable")
    try:
        built = found(**dict(args))
    except Exception as err:
        raise FactoryError(f"{factory}() failed: {type(err).__name__}: {err}") from None
    if not isinstance(built, nn.Module):
        raise FactoryError(f"{factory}() returned {type(built).__name__}, not an nn.Module")
    return built


def _dotted(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


__all__ = ["FactoryError", "build", "parse_arg"]
