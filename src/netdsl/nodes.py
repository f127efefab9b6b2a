"""Nodes: the parsed spec (the AST), pydantic models that carry a source span each.

Produced by :mod:`netdsl.transform` from lark's tree; everything after parsing works on these and
never sees lark. ``Spec.model_dump_json()`` serialises a whole file; the ``kind`` field of each
node tells the node types apart in JSON.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import Span


class Node(BaseModel):
    model_config = ConfigDict(frozen=True)

    span: Span


class Ident(Node):
    """A name written in the spec, with its own span (for precise error carets)."""

    kind: Literal["ident"] = "ident"
    name: str


# ---------------------------------------------------------------- expressions


class Name(Node):
    kind: Literal["name"] = "name"
    id: str


class Constant(Node):
    """A literal: int, float, bool, string or none."""

    kind: Literal["constant"] = "constant"
    value: int | float | bool | str | None


class TupleExpr(Node):
    kind: Literal["tuple"] = "tuple"
    items: list[Expr]


class ListExpr(Node):
    kind: Literal["list"] = "list"
    items: list[Expr]


BinaryOp = Literal["+", "-", "*", "/", "//", "%", "**", "@"]


class BinOp(Node):
    kind: Literal["binop"] = "binop"
    op: BinaryOp
    left: Expr
    right: Expr


class UnaryOp(Node):
    kind: Literal["unaryop"] = "unaryop"
    op: Literal["-", "+"]
    operand: Expr


class Keyword(Node):
    kind: Literal["keyword"] = "keyword"
    name: Ident
    value: Expr


class Call(Node):
    kind: Literal["call"] = "call"
    func: Expr
    args: list[Expr] = []
    kwargs: list[Keyword] = []


class Index(Node):
    kind: Literal["index"] = "index"
    value: Expr
    index: Expr


class Attr(Node):
    kind: Literal["attr"] = "attr"
    value: Expr
    attr: Ident


class Pipeline(Node):
    """``source -> stage``: the stage is called with ``source`` as its first argument."""

    kind: Literal["pipeline"] = "pipeline"
    source: Expr
    stage: Expr


Expr = Annotated[
    Name | Constant | TupleExpr | ListExpr | BinOp | UnaryOp | Call | Index | Attr | Pipeline,
    Field(discriminator="kind"),
]


# ---------------------------------------------------------------- modules


class Layer(Node):
    """A call of a torch.nn layer, a registered custom module or a block: ``Conv2d(3, 6, 5)``."""

    kind: Literal["layer"] = "layer"
    name: Ident
    args: list[Expr] = []
    kwargs: list[Keyword] = []


class Named(Node):
    """``name: module`` inside a sequential: an ``OrderedDict`` key."""

    kind: Literal["named"] = "named"
    name: Ident
    module: Module


class Repeat(Node):
    """``module for var in range(...)``: one distinct module per value of ``var``."""

    kind: Literal["repeat"] = "repeat"
    module: Module
    var: Ident
    range_args: list[Expr]
    range_kwargs: list[Keyword] = []


class Sequential(Node):
    kind: Literal["sequential"] = "sequential"
    items: list[Annotated[Module | Named | Repeat, Field(discriminator="kind")]]


class ListBlock(Node):
    kind: Literal["list"] = "list"
    items: list[Annotated[Module | Repeat, Field(discriminator="kind")]]


class DictItem(Node):
    kind: Literal["dict_item"] = "dict_item"
    key: Ident
    module: Module


class DictBlock(Node):
    kind: Literal["dict"] = "dict"
    items: list[DictItem]


Module = Annotated[Layer | Sequential | ListBlock | DictBlock, Field(discriminator="kind")]


# ---------------------------------------------------------------- forward


class Assign(Node):
    kind: Literal["assign"] = "assign"
    target: Ident
    value: Expr


class For(Node):
    kind: Literal["for"] = "for"
    var: Ident
    iter: Expr
    body: list[Stmt]


class Return(Node):
    kind: Literal["return"] = "return"
    value: Expr


Stmt = Annotated[Assign | For | Return, Field(discriminator="kind")]


class Forward(Node):
    kind: Literal["forward"] = "forward"
    args: list[Ident]
    body: list[Stmt]


# ---------------------------------------------------------------- init rules


class InitRule(Node):
    """``target.param: function(args)``.

    ``target`` is a module type name (``Linear``), a path glob (``"features.*"``) or ``Module``
    (every module, kind ``any``); ``param`` is a parameter name or ``*``.
    """

    kind: Literal["init_rule"] = "init_rule"
    target_kind: Literal["type", "path", "any"]
    target: str
    target_span: Span
    param: str
    func: Ident
    args: list[Expr] = []
    kwargs: list[Keyword] = []


class Init(Node):
    """Init rules, and ``let`` constants evaluated per parameter (they may use ``fan_in``)."""

    kind: Literal["init"] = "init"
    items: list[Annotated[InitRule | Let, Field(discriminator="kind")]]


# ---------------------------------------------------------------- declarations


class Child(Node):
    """``name = module``: a submodule attribute, in declaration order."""

    kind: Literal["child"] = "child"
    name: Ident
    module: Module


class Let(Node):
    """``let name = expr``: a named constant for later arguments."""

    kind: Literal["let"] = "let"
    name: Ident
    value: Expr


class InputDecl(Node):
    """``input x: [N, 3, 32, 32]`` (a tensor, names are symbolic dims) or ``input key: str``."""

    kind: Literal["input"] = "input"
    name: Ident
    type: Expr


class Expect(Node):
    """``expect output: [N, classes]`` or ``expect params: 62006``, checked by ``netdsl check``."""

    kind: Literal["expect"] = "expect"
    what: Ident
    value: Expr


Member = Annotated[Child | Let | InputDecl | Expect | Forward | Init, Field(discriminator="kind")]


class Param(Node):
    kind: Literal["param"] = "param"
    name: Ident
    type: Ident
    default: Expr | None = None


class ModelDecl(Node):
    """``model Name(params) { ... }`` or ``block Name(params) { ... }``."""

    kind: Literal["model", "block"]
    name: Ident
    params: list[Param] = []
    body: list[Member] = []

    @property
    def children(self) -> list[Child]:
        return [m for m in self.body if isinstance(m, Child)]

    @property
    def forwards(self) -> list[Forward]:
        return [m for m in self.body if isinstance(m, Forward)]

    @property
    def inits(self) -> list[Init]:
        return [m for m in self.body if isinstance(m, Init)]

    @property
    def inputs(self) -> list[InputDecl]:
        return [m for m in self.body if isinstance(m, InputDecl)]

    @property
    def expects(self) -> list[Expect]:
        return [m for m in self.body if isinstance(m, Expect)]


class Import(Node):
    """``from "other.net" import A, B``."""

    kind: Literal["import"] = "import"
    path: str
    path_span: Span
    names: list[Ident]


class Spec(BaseModel):
    """One parsed ``.net`` file."""

    model_config = ConfigDict(frozen=True)

    path: str
    imports: list[Import] = []
    models: list[ModelDecl] = []

    def find(self, name: str) -> ModelDecl | None:
        return next((m for m in self.models if m.name.name == name), None)


def names_in(node: object) -> set[str]:
    """Every ``Name`` used anywhere under a node (or a list of nodes)."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Name):
            found.add(item.id)
        elif isinstance(item, Node):
            stack += [getattr(item, f) for f in type(item).model_fields]
        elif isinstance(item, list):
            stack += item
    return found


for _model in (TupleExpr, ListExpr, BinOp, UnaryOp, Keyword, Call, Index, Attr, Pipeline, Layer,
               Named, Repeat, Sequential, ListBlock, DictItem, DictBlock, Assign, For, Return,
               Forward, InitRule, Init, Child, Let, InputDecl, Expect, Param, ModelDecl, Import,
               Spec):
    _model.model_rebuild()
