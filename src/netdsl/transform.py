"""Transform: lark tree -> nodes (:mod:`netdsl.nodes`), with a span on every node.

The grammar already shapes the tree, so each method is a line or two. Methods never raise
(lark would wrap the exception in ``VisitError``): anything worth rejecting is left to
:mod:`netdsl.check`.
"""

from __future__ import annotations

from typing import Any

from lark import Token, Tree, v_args
from lark.tree import Meta
from lark.visitors import Transformer_NonRecursive

from . import nodes as n
from .errors import Span

_BINARY = {"add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//", "mod": "%",
           "matmul": "@", "pow": "**"}


def unquote(token: str) -> str:
    """The value of a string literal; only simple escapes exist, nothing is evaluated."""
    body = token[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@v_args(meta=True)
class ToNodes(Transformer_NonRecursive):  # deep trees must not exhaust the stack
    def __init__(self, path: str):
        super().__init__()
        self.path = path

    # ------------------------------------------------------------ helpers
    def _span(self, meta: Meta) -> Span:
        if getattr(meta, "empty", True):
            return Span(path=self.path, line=1, column=1, end_line=1, end_column=2)
        return Span(path=self.path, line=meta.line, column=meta.column,
                    end_line=meta.end_line, end_column=meta.end_column)

    def _tok_span(self, tok: Token) -> Span:
        return Span(path=self.path, line=tok.line or 1, column=tok.column or 1,
                    end_line=tok.end_line or tok.line or 1,
                    end_column=tok.end_column or (tok.column or 1) + len(tok))

    def _ident(self, tok: Token) -> n.Ident:
        return n.Ident(name=str(tok), span=self._tok_span(tok))

    @staticmethod
    def _split_args(arguments: tuple[list[Any], list[n.Keyword]] | None) -> dict[str, Any]:
        args, kwargs = arguments or ([], [])
        return {"args": args, "kwargs": kwargs}

    # ------------------------------------------------------------ declarations
    def start(self, meta: Meta, items: list[Any]) -> n.Spec:
        imports = [i for i in items if isinstance(i, n.Import)]
        models = [i for i in items if isinstance(i, n.ModelDecl)]
        return n.Spec(path=self.path, imports=imports, models=models)

    def import_decl(self, meta: Meta, items: list[Token]) -> n.Import:
        path_tok, *names = items
        return n.Import(span=self._span(meta), path=unquote(path_tok),
                        path_span=self._tok_span(path_tok),
                        names=[self._ident(t) for t in names])

    def model_decl(self, meta: Meta, items: list[Any]) -> n.ModelDecl:
        kind, name, params, *body = items
        return n.ModelDecl(span=self._span(meta), kind=str(kind), name=self._ident(name),
                           params=params or [], body=body)

    def params(self, meta: Meta, items: list[n.Param | None]) -> list[n.Param]:
        return [p for p in items if p is not None]

    def param(self, meta: Meta, items: list[Any]) -> n.Param:
        name, typ, default = items
        return n.Param(span=self._span(meta), name=self._ident(name), type=self._ident(typ),
                       default=default)

    def child(self, meta: Meta, items: list[Any]) -> n.Child:
        return n.Child(span=self._span(meta), name=self._ident(items[0]), module=items[1])

    def let_decl(self, meta: Meta, items: list[Any]) -> n.Let:
        return n.Let(span=self._span(meta), name=self._ident(items[0]), value=items[1])

    def input_decl(self, meta: Meta, items: list[Any]) -> n.InputDecl:
        return n.InputDecl(span=self._span(meta), name=self._ident(items[0]), type=items[1])

    def expect_decl(self, meta: Meta, items: list[Any]) -> n.Expect:
        return n.Expect(span=self._span(meta), what=self._ident(items[0]), value=items[1])

    # ------------------------------------------------------------ modules
    def layer(self, meta: Meta, items: list[Any]) -> n.Layer:
        return n.Layer(span=self._span(meta), name=self._ident(items[0]),
                       **self._split_args(items[1]))

    def sequential(self, meta: Meta, items: list[Any]) -> n.Sequential:
        return n.Sequential(span=self._span(meta), items=[i for i in items if i is not None])

    def list_block(self, meta: Meta, items: list[Any]) -> n.ListBlock:
        return n.ListBlock(span=self._span(meta), items=[i for i in items if i is not None])

    def dict_block(self, meta: Meta, items: list[Any]) -> n.DictBlock:
        return n.DictBlock(span=self._span(meta), items=[i for i in items if i is not None])

    def named(self, meta: Meta, items: list[Any]) -> n.Named:
        return n.Named(span=self._span(meta), name=self._ident(items[0]), module=items[1])

    def repeat(self, meta: Meta, items: list[Any]) -> n.Repeat:
        module, var, (args, kwargs) = items
        return n.Repeat(span=self._span(meta), module=module, var=self._ident(var),
                        range_args=args, range_kwargs=kwargs)

    def dict_item(self, meta: Meta, items: list[Any]) -> n.DictItem:
        key, module = items
        text = unquote(key) if key.type == "STRING" else str(key)
        return n.DictItem(span=self._span(meta), key=n.Ident(name=text, span=self._tok_span(key)),
                          module=module)

    # ------------------------------------------------------------ forward
    def forward(self, meta: Meta, items: list[Any]) -> n.Forward:
        args = [self._ident(t) for t in items if isinstance(t, Token)]
        body = [s for s in items if not isinstance(s, Token) and s is not None]
        return n.Forward(span=self._span(meta), args=args, body=body)

    def return_expr(self, meta: Meta, items: list[Any]) -> n.Return:
        return n.Return(span=self._span(meta), value=items[0])

    def return_stmt(self, meta: Meta, items: list[Any]) -> n.Return:
        return n.Return(span=self._span(meta), value=items[0])

    def assign(self, meta: Meta, items: list[Any]) -> n.Assign:
        return n.Assign(span=self._span(meta), target=self._ident(items[0]), value=items[1])

    def for_stmt(self, meta: Meta, items: list[Any]) -> n.For:
        var, iterable, *body = items
        return n.For(span=self._span(meta), var=self._ident(var), iter=iterable, body=body)

    # ------------------------------------------------------------ init rules
    def init_block(self, meta: Meta, items: list[n.InitRule | n.Let]) -> n.Init:
        return n.Init(span=self._span(meta), items=items)

    def init_rule(self, meta: Meta, items: list[Any]) -> n.InitRule:
        (target_kind, target, target_span), param, func, arguments = items
        return n.InitRule(span=self._span(meta), target_kind=target_kind, target=target,
                          target_span=target_span, param=str(param), func=self._ident(func),
                          **self._split_args(arguments))

    def type_target(self, meta: Meta, items: list[Token]) -> tuple[str, str, Span]:
        # `Module` selects every module (everything is an nn.Module): the least specific target.
        kind = "any" if items[0] == "Module" else "type"
        return (kind, str(items[0]), self._span(meta))

    def path_target(self, meta: Meta, items: list[Token]) -> tuple[str, str, Span]:
        return ("path", unquote(items[0]), self._span(meta))

    def any_param(self, meta: Meta, items: list[Token]) -> str:
        return "*"

    # ------------------------------------------------------------ expressions
    def __default__(self, data: str, children: list[Any], meta: Meta) -> Any:
        if data in _BINARY:  # the grammar names each binary operator's rule
            return n.BinOp(span=self._span(meta), op=_BINARY[data], left=children[0],
                           right=children[1])
        return super().__default__(data, children, meta)

    def arguments(self, meta: Meta, items: list[Any]) -> tuple[list[Any], list[n.Keyword]]:
        args = [i for i in items if not isinstance(i, n.Keyword)]
        return args, [i for i in items if isinstance(i, n.Keyword)]

    def kwarg(self, meta: Meta, items: list[Any]) -> n.Keyword:
        return n.Keyword(span=self._span(meta), name=self._ident(items[0]), value=items[1])

    def pipeline(self, meta: Meta, items: list[Any]) -> n.Pipeline:
        return n.Pipeline(span=self._span(meta), source=items[0], stage=items[1])

    def call(self, meta: Meta, items: list[Any]) -> n.Call:
        return n.Call(span=self._span(meta), func=items[0], **self._split_args(items[1]))

    def index(self, meta: Meta, items: list[Any]) -> n.Index:
        return n.Index(span=self._span(meta), value=items[0], index=items[1])

    def attr(self, meta: Meta, items: list[Any]) -> n.Attr:
        return n.Attr(span=self._span(meta), value=items[0], attr=self._ident(items[1]))

    def neg(self, meta: Meta, items: list[Any]) -> n.UnaryOp:
        return n.UnaryOp(span=self._span(meta), op="-", operand=items[0])

    def pos(self, meta: Meta, items: list[Any]) -> n.UnaryOp:
        return n.UnaryOp(span=self._span(meta), op="+", operand=items[0])

    def name(self, meta: Meta, items: list[Token]) -> n.Name:
        return n.Name(span=self._span(meta), id=str(items[0]))

    def int(self, meta: Meta, items: list[Token]) -> n.Constant:
        digits = items[0].replace("_", "")
        # Python refuses to convert over ~4300 digits; such a literal is "too large" (an
        # infinite float, which evaluation reports) rather than an exception in a transformer.
        value = int(digits) if len(digits) < 4000 else float("inf")
        return n.Constant(span=self._span(meta), value=value)

    def float(self, meta: Meta, items: list[Token]) -> n.Constant:
        return n.Constant(span=self._span(meta), value=float(items[0].replace("_", "")))

    def string(self, meta: Meta, items: list[Token]) -> n.Constant:
        return n.Constant(span=self._span(meta), value=unquote(items[0]))

    def true(self, meta: Meta, items: list[Token]) -> n.Constant:
        return n.Constant(span=self._span(meta), value=True)

    def false(self, meta: Meta, items: list[Token]) -> n.Constant:
        return n.Constant(span=self._span(meta), value=False)

    def none(self, meta: Meta, items: list[Token]) -> n.Constant:
        return n.Constant(span=self._span(meta), value=None)

    def tuple(self, meta: Meta, items: list[Any]) -> n.TupleExpr:
        return n.TupleExpr(span=self._span(meta), items=items)

    def list(self, meta: Meta, items: list[Any]) -> n.ListExpr:
        return n.ListExpr(span=self._span(meta), items=[i for i in items if i is not None])


def to_nodes(tree: Tree[Token], path: str) -> n.Spec:
    result = ToNodes(path).transform(tree)
    assert isinstance(result, n.Spec)
    return result
