"""Line counts: each ``examples/zoo`` spec against torchvision's own code for that family.

Spec lines are the lines of the ``.net`` file that are not blank and do not start (after
indentation) with ``#``. Torchvision lines are counted with ``ast`` over the family's module:
its top-level classes (except the ``*_Weights`` enums), its top-level functions (helpers,
``_vgg``-style builders and the public builders) and its module-level assignments (except
``__all__`` and the ``_COMMON_META``-style weight metadata), keeping the lines of each node's
source that are not blank, not comments and not part of a docstring. Decorators count as code.

Usage::

    .venv/bin/python benchmarks/zoo_lines.py
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "examples" / "zoo"


@dataclass(frozen=True)
class Family:
    """Where torchvision keeps a family's code: modules under ``torchvision/models``, plus
    single definitions borrowed from other modules, minus definitions that do not count."""

    module: str
    borrowed: tuple[tuple[str, str], ...] = ()  # (module, top-level name)
    excluded: frozenset[str] = field(default_factory=frozenset)


# spec file (in examples/zoo) -> torchvision code for that family
FAMILIES: dict[str, Family] = {
    "vgg.net": Family("vgg"),
    "resnet.net": Family("resnet"),
    "mobilenet_v2.net": Family("mobilenetv2", borrowed=(("_utils", "_make_divisible"),)),
    "squeezenet.net": Family("squeezenet"),
    # _load_state_dict only remaps the keys of pretrained checkpoints.
    "densenet.net": Family("densenet", excluded=frozenset({"_load_state_dict"})),
    "googlenet.net": Family("googlenet"),
    "efficientnet.net": Family("efficientnet", borrowed=(("_utils", "_make_divisible"),)),
    "shufflenet.net": Family("shufflenetv2"),
    # interpolate_embeddings only resizes the position embedding of pretrained checkpoints.
    "vit.net": Family("vision_transformer", excluded=frozenset({"interpolate_embeddings"})),
    "convnext.net": Family("convnext"),
}


def spec_lines(path: Path) -> int:
    """Lines that are not blank and whose first non-space character is not ``#``."""
    return sum(1 for line in path.read_text().splitlines()
               if line.strip() and not line.lstrip().startswith("#"))


def torchvision_source(module: str) -> Path:
    spec = importlib.util.find_spec(f"torchvision.models.{module}")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"torchvision.models.{module} not found")
    return Path(spec.origin)


def _is_docstring(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str))


def _docstring_lines(node: ast.AST) -> set[int]:
    """Line numbers of the docstrings of ``node`` and of every function/class inside it."""
    lines: set[int] = set()
    for inner in ast.walk(node):
        if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = inner.body
            if body and _is_docstring(body[0]) and body[0].end_lineno is not None:
                lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def _targets(node: ast.Assign | ast.AnnAssign) -> list[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [ast.unparse(target) for target in targets]


def _counted(node: ast.stmt, excluded: frozenset[str]) -> bool:
    if isinstance(node, ast.ClassDef):
        return not node.name.endswith("_Weights") and node.name not in excluded
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return node.name not in excluded
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        names = _targets(node)
        return not any(name == "__all__" or name.startswith("_COMMON_META") or name in excluded
                       for name in names)
    return False


def _node_lines(node: ast.stmt, source_lines: list[str]) -> int:
    """Code lines of one top-level node: decorators included, docstrings, comments and blank
    lines left out."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    last = node.end_lineno if node.end_lineno is not None else node.lineno
    skip = _docstring_lines(node)
    count = 0
    for number in range(first, last + 1):
        text = source_lines[number - 1].strip()
        if number not in skip and text and not text.startswith("#"):
            count += 1
    return count


def code_lines(path: Path, *, names: set[str] | None = None,
               excluded: frozenset[str] = frozenset()) -> int:
    """Counted lines of a torchvision module, or only of its top-level ``names`` if given."""
    source = path.read_text()
    source_lines = source.splitlines()
    total = 0
    for node in ast.parse(source).body:
        if names is not None:
            if getattr(node, "name", None) in names:
                total += _node_lines(node, source_lines)
        elif _counted(node, excluded):
            total += _node_lines(node, source_lines)
    return total


def torchvision_lines(spec_file: str) -> int:
    family = FAMILIES[spec_file]
    total = code_lines(torchvision_source(family.module), excluded=family.excluded)
    for module, name in family.borrowed:
        found = code_lines(torchvision_source(module), names={name})
        if found == 0:
            raise LookupError(f"{name} not found in torchvision.models.{module}")
        total += found
    return total


def family_counts(spec_file: str) -> tuple[str, int, int]:
    """(spec file, spec lines, torchvision lines); FileNotFoundError if the spec is missing."""
    path = ZOO / spec_file
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return spec_file, spec_lines(path), torchvision_lines(spec_file)


def counts() -> list[tuple[str, int, int]]:
    """(spec file, spec lines, torchvision lines) for every family whose spec exists."""
    return [family_counts(name) for name in FAMILIES if (ZOO / name).is_file()]


def main() -> None:
    rows = counts()
    width = max([len("spec"), *(len(name) for name in FAMILIES)])
    print(f"{'spec':<{width}}  {'spec lines':>10}  {'torchvision':>11}  {'ratio':>5}")
    for name, spec, reference in rows:
        print(f"{name:<{width}}  {spec:>10}  {reference:>11}  {spec / reference:>5.2f}")
    for name in FAMILIES:
        if not (ZOO / name).is_file():
            print(f"{name:<{width}}  {'missing':>10}  {torchvision_lines(name):>11}")


if __name__ == "__main__":
    main()
