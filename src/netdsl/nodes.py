"""Nodes: the parsed spec (the AST), pydantic models that carry a source span each.

Produced by :mod:`netdsl.transform` from lark's tree; everything after parsing works on these and
never sees lark. ``Spec.model_dump_json()`` serialises a whole file; the ``kind`` field of each
node tells the node types apart in JSON.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from .errors import Span


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

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
    underflow: bool = False  # a float literal too small for a float (1e-400): refused


class EllipsisExpr(Node):
    """``...``: all remaining dimensions, when indexing a tensor in a forward."""

    kind: Literal["ellipsis"] = "ellipsis"


class FString(Node):
    """``f"layer{i + 1}"``: text parts and expressions, joined as Python's str() shows them."""

    kind: Literal["fstring"] = "fstring"
    parts: list[str | Expr]


class TupleExpr(Node):
    kind: Literal["tuple"] = "tuple"
    items: list[Expr]


class ListExpr(Node):
    kind: Literal["list"] = "list"
    items: list[Expr]


class ListComp(Node):
    """``[element for target in iter if cond]``."""

    kind: Literal["listcomp"] = "listcomp"
    element: Expr
    target: Target
    iter: Expr
    cond: Expr | None = None


BinaryOp = Literal["+", "-", "*", "/", "//", "%", "**", "@"]
CompareOp = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in"]


class BinOp(Node):
    kind: Literal["binop"] = "binop"
    op: BinaryOp
    left: Expr
    right: Expr


class UnaryOp(Node):
    kind: Literal["unaryop"] = "unaryop"
    op: Literal["-", "+", "not"]
    operand: Expr


class BoolOp(Node):
    """``left and right`` / ``left or right``: Python's short-circuit semantics."""

    kind: Literal["boolop"] = "boolop"
    op: Literal["and", "or"]
    left: Expr
    right: Expr


class Compare(Node):
    """``a < b <= c``: chained as in Python (each operand evaluated once)."""

    kind: Literal["compare"] = "compare"
    operands: list[Expr]
    ops: list[CompareOp]


class IfExp(Node):
    """``body if test else orelse``."""

    kind: Literal["ifexp"] = "ifexp"
    test: Expr
    body: Expr
    orelse: Expr


class Keyword(Node):
    kind: Literal["keyword"] = "keyword"
    name: Ident
    value: Expr


class Starred(Node):
    """``*values`` in a call's arguments: the items become positional arguments."""

    kind: Literal["starred"] = "starred"
    value: Expr


class Call(Node):
    kind: Literal["call"] = "call"
    func: Expr
    args: list[Expr] = []
    kwargs: list[Keyword] = []


class Slice(Node):
    """``lower:upper:step`` inside an index; each part may be left out."""

    kind: Literal["slice"] = "slice"
    lower: Expr | None = None
    upper: Expr | None = None
    step: Expr | None = None


class Index(Node):
    """``value[index]``; ``x[:, 0]`` has a tuple index (of a slice and a constant)."""

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
    Name | Constant | EllipsisExpr | FString | TupleExpr | ListExpr | ListComp | BinOp | UnaryOp
    | BoolOp | Compare | IfExp | Starred | Call | Slice | Index | Attr | Pipeline,
    Field(discriminator="kind"),
]


class TupleTarget(Node):
    """``a, (b, c)`` on the left of ``=`` or after ``for``: values unpacked as in Python."""

    kind: Literal["target_tuple"] = "target_tuple"
    items: list[Target]


Target = Annotated[Ident | TupleTarget, Field(discriminator="kind")]


def target_names(target: Ident | TupleTarget) -> list[Ident]:
    """The names a target binds, in order."""
    if isinstance(target, Ident):
        return [target]
    return [name for item in target.items for name in target_names(item)]


# ---------------------------------------------------------------- modules


class Layer(Node):
    """A call of a layer, a block or a value that names one: ``Conv2d(3, 6, 5)``."""

    kind: Literal["layer"] = "layer"
    name: Ident
    args: list[Expr] = []
    kwargs: list[Keyword] = []


class Repeat(Node):
    """``module for target in iter``: one distinct module per value (a comprehension)."""

    kind: Literal["repeat"] = "repeat"
    module: Module
    target: Target
    iter: Expr


class Sequential(Node):
    kind: Literal["sequential"] = "sequential"
    items: list[Item]


class ListBlock(Node):
    kind: Literal["list"] = "list"
    items: list[Item]


class DictBlock(Node):
    kind: Literal["dict"] = "dict"
    items: list[Item]


Module = Annotated[Layer | Sequential | ListBlock | DictBlock, Field(discriminator="kind")]

# A child's or key's name: written (an Ident) or computed (an f-string).
Key = Annotated[Ident | FString, Field(discriminator="kind")]


# ---------------------------------------------------------------- forward and functions


class Assign(Node):
    kind: Literal["assign"] = "assign"
    target: Target
    value: Expr


class AugAssign(Node):
    """``x += value``: in place, as Python does it (a tensor is updated, a number rebound)."""

    kind: Literal["aug_assign"] = "aug_assign"
    target: Ident
    op: Literal["+", "-", "*", "/"]
    value: Expr


class CallStmt(Node):
    """``features.append(x)``: a method call whose result is not kept."""

    kind: Literal["call_stmt"] = "call_stmt"
    call: Call


class For(Node):
    kind: Literal["for"] = "for"
    target: Target
    iter: Expr
    body: list[Stmt]


class StmtBranch(Node):
    kind: Literal["stmt_branch"] = "stmt_branch"
    test: Expr
    body: list[Stmt]


class IfStmt(Node):
    """``if a { ... } elif b { ... } else { ... }`` in a forward or a function."""

    kind: Literal["if_stmt"] = "if_stmt"
    branches: list[StmtBranch]
    orelse: list[Stmt] | None = None


class Return(Node):
    kind: Literal["return"] = "return"
    value: Expr


class Assert(Node):
    """``assert test, message``: a located error with the message when the test is false."""

    kind: Literal["assert"] = "assert"
    test: Expr
    msg: Expr | None = None


Stmt = Annotated[Assign | AugAssign | CallStmt | For | IfStmt | Return | Assert,
                 Field(discriminator="kind")]


class Forward(Node):
    kind: Literal["forward"] = "forward"
    args: list[Ident]
    body: list[Stmt]


class Param(Node):
    """A parameter: ``name: type = default``; the type may be left out for methods."""

    kind: Literal["param"] = "param"
    name: Ident
    type: Ident | None = None
    default: Expr | None = None
    varargs: bool = False  # *name


class DefDecl(Node):
    """``def name(params) -> type { ... }`` (or ``= expr``).

    At file level a function on constants; inside a model or block a method of its module.
    """

    kind: Literal["def"] = "def"
    name: Ident
    params: list[Param] = []
    returns: Ident | None = None
    body: list[Stmt] = []


# ---------------------------------------------------------------- init rules


class InitRule(Node):
    """``target.param: function(args)``.

    ``target`` is a module type name (``Linear``, or a block's name), a path glob
    (``"features.*"``) or ``Module`` (every module, kind ``any``); ``subpath`` reaches a child of
    each module the type selects (``Bottleneck.bn3.weight``); ``param`` is a parameter name or
    ``*``.
    """

    kind: Literal["init_rule"] = "init_rule"
    target_kind: Literal["type", "path", "any"]
    target: str
    target_span: Span
    subpath: list[str] = []
    param: str
    func: Ident
    args: list[Expr] = []
    kwargs: list[Keyword] = []


class Init(Node):
    """Init rules, and ``let`` constants evaluated per parameter (they may use ``fan_in``)."""

    kind: Literal["init"] = "init"
    items: list[Item]


# ---------------------------------------------------------------- items


class Child(Node):
    """``name = module``: a submodule attribute, in declaration order."""

    kind: Literal["child"] = "child"
    name: Key
    module: Module


class Named(Node):
    """``name: module`` inside a sequential or dict: an ``OrderedDict`` key."""

    kind: Literal["named"] = "named"
    name: Key
    module: Module


class Let(Node):
    """``let name = expr``: a named constant; a later ``let`` of the name assigns it again."""

    kind: Literal["let"] = "let"
    target: Target
    value: Expr


class InputDecl(Node):
    """``input x: [N, 3, 32, 32]`` (a tensor, names are symbolic dims) or ``input key: str``;
    ``input idx: [B, T] long`` gives a tensor's dtype (float32 when none is written)."""

    kind: Literal["input"] = "input"
    name: Ident
    type: Expr
    dtype: Ident | None = None


class TensorDecl(Node):
    """``param name = expr`` / ``buffer name = expr``: a tensor the module itself holds, made
    when the module is built; ``options`` are nn.Parameter's / register_buffer's keywords."""

    kind: Literal["tensor"] = "tensor"
    what: Literal["param", "buffer"]
    name: Ident
    args: list[Expr] = []  # positional options: refused by the check, which says why
    options: list[Keyword] = []
    value: Expr


class TieDecl(Node):
    """``tie a.weight = b.weight``: ``self.a.weight = self.b.weight``, one shared parameter."""

    kind: Literal["tie"] = "tie"
    target: list[Ident]
    source: list[Ident]


class Expect(Node):
    """``expect output: [N, classes]`` or ``expect params: 62006``, checked by ``netdsl check``."""

    kind: Literal["expect"] = "expect"
    what: Ident
    value: Expr


class ItemBranch(Node):
    kind: Literal["item_branch"] = "item_branch"
    test: Expr
    body: list[Item]


class IfItem(Node):
    """``if a { items } elif b { items } else { items }``: items that exist under a condition."""

    kind: Literal["if_item"] = "if_item"
    branches: list[ItemBranch]
    orelse: list[Item] | None = None


class ForItem(Node):
    """``for target in iter { items }``: the items once per value, spliced in place."""

    kind: Literal["for_item"] = "for_item"
    target: Target
    iter: Expr
    body: list[Item]


Item = Annotated[
    Child | Named | Layer | Sequential | ListBlock | DictBlock | Repeat | Let | InputDecl
    | Expect | Forward | DefDecl | Init | InitRule | IfItem | ForItem | Assert | TensorDecl
    | TieDecl,
    Field(discriminator="kind"),
]


# ---------------------------------------------------------------- declarations


class ModelDecl(Node):
    """``model Name(params) { ... }``, ``block Name(params) { ... }`` or ``... = module``.

    A declaration written ``= module`` is that module (``value``). Without a parameter list
    (``params`` is None) it takes the parameters its call leaves open, like ``functools.partial``.
    """

    kind: Literal["model", "block"]
    name: Ident
    params: list[Param] | None = []
    body: list[Item] = []
    value: Module | None = None

    def _all(self, kind: type[Node]) -> list[Any]:
        """The body's items of a kind, also those under its ifs and fors."""
        return [item for item in walk_items(self.body) if isinstance(item, kind)]

    @property
    def children(self) -> list[Child]:
        return self._all(Child)

    @property
    def forwards(self) -> list[Forward]:
        return self._all(Forward)

    @property
    def inits(self) -> list[Init]:
        return self._all(Init)

    @property
    def inputs(self) -> list[InputDecl]:
        return self._all(InputDecl)

    @property
    def expects(self) -> list[Expect]:
        return self._all(Expect)


class Import(Node):
    """``from "other.net" import A, B``."""

    kind: Literal["import"] = "import"
    path: str
    path_span: Span
    names: list[Ident]


class Spec(BaseModel):
    """One parsed ``.net`` file."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    path: str
    imports: list[Import] = []
    models: list[ModelDecl] = []
    defs: list[DefDecl] = []
    lets: list[Let] = []

    def find(self, name: str) -> ModelDecl | None:
        return next((m for m in self.models if m.name.name == name), None)


NodeT = TypeVar("NodeT", bound=BaseModel)


def new(cls: type[NodeT], **fields: Any) -> NodeT:
    """A node from fields netdsl made itself, of the types they are declared with: not validated
    again. Every node is made so (the transform, and the checker's own nodes); a validator is
    built only when something validates (``Spec.model_validate`` of a JSON dump): building the
    validators was most of the time of importing this module, and the first check paid for
    whichever it used. tests/test_parser.py compares the two on every spec."""
    return cls.model_construct(**fields)


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


def walk_items(items: list[object]) -> list[object]:
    """Every item of a body and of the bodies nested in its ifs and fors (not in containers)."""
    found: list[object] = []
    stack = list(reversed(items))
    while stack:
        item = stack.pop()
        found.append(item)
        if isinstance(item, IfItem):
            bodies = [b.body for b in item.branches] + ([item.orelse] if item.orelse else [])
            for body in reversed(bodies):
                stack += reversed(body)
        elif isinstance(item, ForItem):
            stack += reversed(item.body)
    return found
