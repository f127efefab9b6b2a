"""Export of a forward: netdsl's generated function -> the same function, laid out for a file.

The code is netdsl's own (:mod:`netdsl.forward` generates it, :mod:`netdsl.export_code` renames
it); only its layout changes, through Python's ``ast``: parentheses Python does not need are
dropped, an assert message's ``'...{}'.format(t)`` becomes the f-string a person writes, a
name unpacked but never read becomes ``_`` (``_, t = idx.size()``), and a statement longer than
100 columns puts one argument per line.
"""

from __future__ import annotations

import ast

from .export_code import INDENT, Call, Code, Prefixed, layout


def function_text(source: str) -> str:
    """The function in ``source`` (one ``def``), laid out as a method: indented one level."""
    tree = ast.parse(source)
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    _Readable(_read_names(function)).visit(function)
    ast.fix_missing_locations(function)
    head = f"{INDENT}def {function.name}({ast.unparse(function.args)}):"
    return "\n".join([head, *_block(function.body, 2)]) + "\n"


def tidy(code: str) -> str:
    """An expression without the parentheses Python does not need."""
    return ast.unparse(ast.parse(code, mode="eval"))


def _read_names(function: ast.FunctionDef) -> set[str]:
    return {node.id for node in ast.walk(function)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


class _Readable(ast.NodeTransformer):
    def __init__(self, read: set[str]):
        self.read = read

    def visit_Assign(self, node: ast.Assign) -> ast.Assign:
        self.generic_visit(node)
        for target in node.targets:
            if isinstance(target, ast.Tuple):
                for item in target.elts:
                    if isinstance(item, ast.Name) and item.id not in self.read:
                        item.id = "_"
        return node

    def visit_For(self, node: ast.For) -> ast.For:
        self.generic_visit(node)
        for item in ast.walk(node.target):
            if isinstance(item, ast.Name) and item.id not in self.read:
                item.id = "_"
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "format" and \
                isinstance(func.value, ast.Constant) and isinstance(func.value.value, str) \
                and not node.keywords and all(not isinstance(a, ast.Starred) for a in node.args):
            return _fstring(func.value.value, node.args) or node
        return node


def _fstring(template: str, args: list[ast.expr]) -> ast.JoinedStr | None:
    """``'a {} b'.format(t)`` as ``f'a {t} b'`` (netdsl writes only ``{}`` and ``{{ }}``)."""
    parts: list[ast.expr] = []
    pieces = template.replace("{{", "\x00").replace("}}", "\x01").split("{}")
    if len(pieces) != len(args) + 1 or any("{" in p or "}" in p for p in pieces):
        return None
    for index, piece in enumerate(pieces):
        text = piece.replace("\x00", "{").replace("\x01", "}")
        if text:
            parts.append(ast.Constant(text))
        if index < len(args):
            parts.append(ast.FormattedValue(args[index], -1, None))
    return ast.JoinedStr(parts)


def _block(body: list[ast.stmt], depth: int) -> list[str]:
    lines: list[str] = []
    for stmt in body:
        lines += _statement(stmt, depth)
    return lines


def _statement(stmt: ast.stmt, depth: int) -> list[str]:
    indent = INDENT * depth
    if isinstance(stmt, ast.For):
        return [f"{indent}for {_target(stmt.target)} in {ast.unparse(stmt.iter)}:",
                *_block(stmt.body, depth + 1)]
    if isinstance(stmt, ast.If):
        return _if(stmt, depth, "if")
    return [indent + layout(_code(stmt), len(indent), len(indent))]


def _if(stmt: ast.If, depth: int, word: str) -> list[str]:
    indent = INDENT * depth
    lines = [f"{indent}{word} {ast.unparse(stmt.test)}:", *_block(stmt.body, depth + 1)]
    if len(stmt.orelse) == 1 and isinstance(stmt.orelse[0], ast.If):
        return lines + _if(stmt.orelse[0], depth, "elif")
    if stmt.orelse:
        lines += [f"{indent}else:", *_block(stmt.orelse, depth + 1)]
    return lines


def _target(node: ast.expr) -> str:
    """``B, T, C`` rather than ``ast.unparse``'s ``(B, T, C)``."""
    if isinstance(node, ast.Tuple) and node.elts:
        return ", ".join(ast.unparse(item) for item in node.elts)
    return ast.unparse(node)


def _code(node: ast.AST) -> Code:
    """A statement or expression as a layout tree: calls and lists may break their items."""
    if isinstance(node, ast.Assign):
        targets = " = ".join(_target(t) for t in node.targets)
        return Prefixed(f"{targets} = ", _code(node.value))
    if isinstance(node, ast.Return) and node.value is not None:
        return Prefixed("return ", _code(node.value))
    if isinstance(node, ast.Expr):
        return _code(node.value)
    if isinstance(node, ast.Call) and not isinstance(node.func, ast.Call):
        items = [_code(a) for a in node.args] + [
            Prefixed(f"{k.arg}=", _code(k.value)) if k.arg else f"**{ast.unparse(k.value)}"
            for k in node.keywords]
        return Call(f"{ast.unparse(node.func)}(", tuple(items), ")")
    if isinstance(node, ast.List):
        return Call("[", tuple(_code(e) for e in node.elts), "]")
    return ast.unparse(node)


__all__ = ["function_text", "tidy"]
