"""Config: the user's own settings -> the custom layers a command line run may use.

Custom modules reach a spec only through code or configuration the user controls, never through
the spec: ``netdsl check --modules mypkg.layers`` or, found from the current directory upwards,
a ``pyproject.toml`` with

    [tool.netdsl]
    modules = ["mypkg.layers"]

Each named Python module is imported (with the project's directory on ``sys.path``) and its
public ``nn.Module`` classes become layers under their class names.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from .registry import module_layers

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class ConfigError(Exception):
    """A mistake in the user's configuration (not in a spec): a usage error."""


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml with a [tool.netdsl] table, from ``start`` upwards."""
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file() and "netdsl" in _table(candidate).get("tool", {}):
            return candidate
    return None


def _table(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None


def configured_modules(start: Path) -> tuple[list[str], Path | None]:
    """The module names in [tool.netdsl] modules, and the directory they are relative to."""
    pyproject = find_pyproject(start)
    if pyproject is None:
        return [], None
    names = _table(pyproject)["tool"]["netdsl"].get("modules", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{pyproject}: [tool.netdsl] modules must be a list of module names")
    return names, pyproject.parent


def custom_layers(names: Sequence[str], start: Path | None = None) -> dict[str, type[nn.Module]]:
    """The layers of the modules named on the command line and in pyproject.toml."""
    start = start or Path.cwd()
    configured, root = configured_modules(start)
    found: dict[str, type[nn.Module]] = {}
    with on_path(root or start):
        for name in [*configured, *names]:
            found.update(module_layers(import_user_module(name)))
    return found


def import_user_module(name: str) -> Any:
    """The one place netdsl imports a module by name: ``--modules``, ``[tool.netdsl]`` and
    ``netdsl import MODULE:FACTORY``."""
    # Names come from the command line or pyproject.toml only, never from a spec: the user's
    # own Python code, as `netdsl.load(..., modules=...)` is. Not generated code.
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise ConfigError(f"'{name}' is not a module name (a.b.c)")
    try:
        return importlib.import_module(name)
    except Exception as err:  # any error of the user's module is theirs to see
        raise ConfigError(f"cannot import module '{name}': {type(err).__name__}: {err}") from None


@contextmanager
def on_path(directory: Path) -> Iterator[None]:
    entry = str(directory.resolve())
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added:
            sys.path.remove(entry)


__all__ = ["ConfigError", "configured_modules", "custom_layers", "find_pyproject"]
