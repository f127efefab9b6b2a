"""Transform: lark tree -> nodes (:mod:`netdsl.nodes`), with a span on every node.

The grammar already shapes the tree, so each method is a line or two. Methods never raise
(lark would wrap the exception in ``VisitError``): anything worth rejecting is left to
:mod:`netdsl.check`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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
    return unescape(token[1:-1])


def unescape(body: str) -> str:
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
        super().__init__(visit_tokens=False)  # no method takes a token alone
        self.path = path
        self._methods: dict[str, Callable[[Meta, list[Any]], Any]] = {}

    def _call_userfunc(self, tree: Tree[Token], new_children: list[Any] | None = None) -> Any:
        # lark looks each method up through its v_args wrapper, which makes a new wrapper (and
        # copies the function's attributes onto it) for every tree: a fifth of the transform.
        method = self._methods.get(tree.data)
        if method is None:
            func = getattr(getattr(type(self), tree.data, None), "base_func", None)
            if func is None:
                return super()._call_userfunc(tree, new_children)
            method = self._methods[tree.data] = func.__get__(self)
        return method(tree.meta, new_children if new_children is not None else tree.children)

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
        return n.new(n.Ident, name=str(tok), span=self._tok_span(tok))

    def _key(self, key: Any) -> n.Ident | n.FString:
        """A child's or key's name: a name, a string (its text) or an f-string."""
        if isinstance(key, n.FString):
            return key
        text = unquote(key) if key.type == "STRING" else str(key)
        return n.new(n.Ident, name=text, span=self._tok_span(key))

    @staticmethod
    def _split_args(arguments: tuple[list[Any], list[n.Keyword]] | None) -> dict[str, Any]:
        args, kwargs = arguments or ([], [])
        return {"args": args, "kwargs": kwargs}

    # ------------------------------------------------------------ declarations
    def start(self, meta: Meta, items: list[Any]) -> n.Spec:
        def of(kind: type) -> list[Any]:
            return [i for i in items if isinstance(i, kind)]

        return n.new(n.Spec, path=self.path, imports=of(n.Import), models=of(n.ModelDecl),
                     defs=of(n.DefDecl), lets=of(n.Let))

    def import_decl(self, meta: Meta, items: list[Token]) -> n.Import:
        path_tok, *names = items
        return n.new(n.Import, span=self._span(meta), path=unquote(path_tok),
                     path_span=self._tok_span(path_tok),
                     names=[self._ident(t) for t in names])

    def model_decl(self, meta: Meta, items: list[Any]) -> n.ModelDecl:
        kind, name, params, value = items
        if isinstance(value, list):  # a body
            return n.new(n.ModelDecl, span=self._span(meta), kind=str(kind), name=self._ident(name),
                         params=params or [], body=value)
        return n.new(n.ModelDecl, span=self._span(meta), kind=str(kind), name=self._ident(name),
                     params=params, value=value)

    def params(self, meta: Meta, items: list[n.Param | None]) -> list[n.Param]:
        return [p for p in items if p is not None]

    def plain_param(self, meta: Meta, items: list[Any]) -> n.Param:
        name, typ, default = items
        return n.new(n.Param, span=self._span(meta), name=self._ident(name),
                     type=self._ident(typ) if typ is not None else None, default=default)

    def varargs_param(self, meta: Meta, items: list[Token]) -> n.Param:
        return n.new(n.Param, span=self._span(meta), name=self._ident(items[0]), varargs=True)

    def def_decl(self, meta: Meta, items: list[Any]) -> n.DefDecl:
        name, params, returns, body = items
        if not isinstance(body, list):  # def f(x) = expr
            body = [n.new(n.Return, span=body.span, value=body)]
        return n.new(n.DefDecl, span=self._span(meta), name=self._ident(name), params=params,
                     returns=self._ident(returns) if returns is not None else None,
                     body=body)

    # ------------------------------------------------------------ items
    def body(self, meta: Meta, items: list[Any]) -> list[Any]:
        return [i for i in items if i is not None]

    def child(self, meta: Meta, items: list[Any]) -> n.Child:
        return n.new(n.Child, span=self._span(meta), name=self._key(items[0]), module=items[1])

    def named(self, meta: Meta, items: list[Any]) -> n.Named:
        return n.new(n.Named, span=self._span(meta), name=self._key(items[0]), module=items[1])

    def let_decl(self, meta: Meta, items: list[Any]) -> n.Let:
        return n.new(n.Let, span=self._span(meta), target=items[1], value=items[2])

    def input_decl(self, meta: Meta, items: list[Any]) -> n.InputDecl:
        dtype = self._ident(items[3]) if items[3] is not None else None
        return n.new(n.InputDecl, span=self._span(meta), name=self._ident(items[1]), type=items[2],
                     dtype=dtype)

    def tensor_decl(self, meta: Meta, items: list[Any]) -> n.TensorDecl:
        what, options, name, value = items
        args, kwargs = options if options is not None else ([], [])
        return n.new(n.TensorDecl, span=self._span(meta), what=str(what), name=self._ident(name),
                     args=args, options=kwargs, value=value)

    def tie_decl(self, meta: Meta, items: list[Any]) -> n.TieDecl:
        return n.new(n.TieDecl, span=self._span(meta), target=items[1], source=items[2])

    def dotted(self, meta: Meta, items: list[Token]) -> list[n.Ident]:
        return [self._ident(t) for t in items]

    def expect_decl(self, meta: Meta, items: list[Any]) -> n.Expect:
        return n.new(n.Expect, span=self._span(meta), what=self._ident(items[1]), value=items[2])

    def _if(self, meta: Meta, items: list[Any], branch: type, node: type) -> Any:
        """``if`` items and statements: the first branch, the elif branches, the else body."""
        _, test, body, *rest = items
        orelse = rest.pop()
        branches = [branch(span=self._span(meta), test=test, body=body), *rest]
        return node(span=self._span(meta), branches=branches, orelse=orelse)

    def if_item(self, meta: Meta, items: list[Any]) -> n.IfItem:
        return self._if(meta, items, n.ItemBranch, n.IfItem)  # type: ignore[no-any-return]

    def elif_item(self, meta: Meta, items: list[Any]) -> n.ItemBranch:
        return n.new(n.ItemBranch, span=self._span(meta), test=items[0], body=items[1])

    def else_item(self, meta: Meta, items: list[Any]) -> list[Any]:
        return list(items[0])

    def for_item(self, meta: Meta, items: list[Any]) -> n.ForItem:
        _, target, iterable, body = items
        return n.new(n.ForItem, span=self._span(meta), target=target, iter=iterable, body=body)

    def assert_stmt(self, meta: Meta, items: list[Any]) -> n.Assert:
        return n.new(n.Assert, span=self._span(meta), test=items[0], msg=items[1])

    # ------------------------------------------------------------ modules
    def layer(self, meta: Meta, items: list[Any]) -> n.Layer:
        return n.new(n.Layer, span=self._span(meta), name=self._ident(items[0]),
                     **self._split_args(items[1]))

    def sequential(self, meta: Meta, items: list[Any]) -> n.Sequential:
        return n.new(n.Sequential, span=self._span(meta), items=items[1])

    def list_block(self, meta: Meta, items: list[Any]) -> n.ListBlock:
        return n.new(n.ListBlock, span=self._span(meta),
                     items=[i for i in items[1:] if i is not None])

    def dict_block(self, meta: Meta, items: list[Any]) -> n.DictBlock:
        return n.new(n.DictBlock, span=self._span(meta), items=items[1])

    def repeat(self, meta: Meta, items: list[Any]) -> n.Repeat:
        module, _, target, iterable = items
        return n.new(n.Repeat, span=self._span(meta), module=module, target=target, iter=iterable)

    # ------------------------------------------------------------ forward and functions
    def forward(self, meta: Meta, items: list[Any]) -> n.Forward:
        args = [self._ident(t) for t in items[1:] if isinstance(t, Token)]
        body = next((s for s in items[1:] if isinstance(s, list)), None)
        if body is None:
            body = [s for s in items[1:] if isinstance(s, n.Return)]
        return n.new(n.Forward, span=self._span(meta), args=args, body=body)

    def return_expr(self, meta: Meta, items: list[Any]) -> n.Return:
        return n.new(n.Return, span=self._span(meta), value=items[0])

    def stmt_body(self, meta: Meta, items: list[Any]) -> list[Any]:
        return list(items)

    def return_stmt(self, meta: Meta, items: list[Any]) -> n.Return:
        if len(items) == 1:
            return n.new(n.Return, span=self._span(meta), value=items[0])
        start, end = items[0].span, items[-1].span
        span = Span(path=self.path, line=start.line, column=start.column,
                    end_line=end.end_line, end_column=end.end_column)
        return n.new(n.Return, span=self._span(meta),
                     value=n.new(n.TupleExpr, span=span, items=items))

    def assign(self, meta: Meta, items: list[Any]) -> n.Assign:
        return n.new(n.Assign, span=self._span(meta), target=items[0], value=items[1])

    def aug_assign(self, meta: Meta, items: list[Any]) -> n.AugAssign:
        target, op, value = items
        return n.new(n.AugAssign, span=self._span(meta), target=self._ident(target),
                     op=str(op)[:-1], value=value)

    def call_stmt(self, meta: Meta, items: list[Any]) -> n.CallStmt:
        obj, method, arguments = items
        span = self._span(meta)
        value = n.new(n.Name, span=self._tok_span(obj), id=str(obj))
        func = n.new(n.Attr, span=span, value=value, attr=self._ident(method))
        call = n.new(n.Call, span=span, func=func, **self._split_args(arguments))
        return n.new(n.CallStmt, span=span, call=call)

    def for_stmt(self, meta: Meta, items: list[Any]) -> n.For:
        _, target, iterable, body = items
        return n.new(n.For, span=self._span(meta), target=target, iter=iterable, body=body)

    def if_stmt(self, meta: Meta, items: list[Any]) -> n.IfStmt:
        return self._if(meta, items, n.StmtBranch, n.IfStmt)  # type: ignore[no-any-return]

    def elif_stmt(self, meta: Meta, items: list[Any]) -> n.StmtBranch:
        return n.new(n.StmtBranch, span=self._span(meta), test=items[0], body=items[1])

    def else_stmt(self, meta: Meta, items: list[Any]) -> list[Any]:
        return list(items[0])

    def target_name(self, meta: Meta, items: list[Token]) -> n.Ident:
        return self._ident(items[0])

    def target_tuple(self, meta: Meta, items: list[Any]) -> n.TupleTarget:
        targets = [self._ident(i) if isinstance(i, Token) else i for i in items]
        return n.new(n.TupleTarget, span=self._span(meta), items=targets)

    # ------------------------------------------------------------ init rules
    def init_block(self, meta: Meta, items: list[Any]) -> n.Init:
        return n.new(n.Init, span=self._span(meta), items=items[1])

    def init_rule(self, meta: Meta, items: list[Any]) -> n.InitRule:
        (target_kind, target, target_span, subpath, param), func, arguments = items
        return n.new(n.InitRule, span=self._span(meta), target_kind=target_kind, target=target,
                     target_span=target_span, subpath=subpath, param=str(param),
                     func=self._ident(func), **self._split_args(arguments))

    def type_target(self, meta: Meta, items: list[Token]) -> tuple[Any, ...]:
        first, *subpath, param = items
        # `Module` selects every module (everything is an nn.Module): the least specific target.
        kind = "any" if first == "Module" and not subpath else "type"
        return (kind, str(first), self._tok_span(first), [str(s) for s in subpath], param)

    def path_target(self, meta: Meta, items: list[Token]) -> tuple[Any, ...]:
        return ("path", unquote(items[0]), self._tok_span(items[0]), [], items[1])

    def any_param(self, meta: Meta, items: list[Token]) -> str:
        return "*"

    # ------------------------------------------------------------ expressions
    def __default__(self, data: str, children: list[Any], meta: Meta) -> Any:
        if data in _BINARY:  # the grammar names each binary operator's rule
            return n.new(n.BinOp, span=self._span(meta), op=_BINARY[data], left=children[0],
                         right=children[1])
        return super().__default__(data, children, meta)

    def arguments(self, meta: Meta, items: list[Any]) -> tuple[list[Any], list[n.Keyword]]:
        args = [i for i in items if not isinstance(i, n.Keyword)]
        return args, [i for i in items if isinstance(i, n.Keyword)]

    def kwarg(self, meta: Meta, items: list[Any]) -> n.Keyword:
        return n.new(n.Keyword, span=self._span(meta), name=self._ident(items[0]), value=items[1])

    def starred(self, meta: Meta, items: list[Any]) -> n.Starred:
        return n.new(n.Starred, span=self._span(meta), value=items[0])

    def pipeline(self, meta: Meta, items: list[Any]) -> n.Pipeline:
        return n.new(n.Pipeline, span=self._span(meta), source=items[0], stage=items[1])

    def ifexp(self, meta: Meta, items: list[Any]) -> n.IfExp:
        body, _, test, orelse = items
        return n.new(n.IfExp, span=self._span(meta), test=test, body=body, orelse=orelse)

    def or_(self, meta: Meta, items: list[Any]) -> n.BoolOp:
        return n.new(n.BoolOp, span=self._span(meta), op="or", left=items[0], right=items[1])

    def and_(self, meta: Meta, items: list[Any]) -> n.BoolOp:
        return n.new(n.BoolOp, span=self._span(meta), op="and", left=items[0], right=items[1])

    def not_(self, meta: Meta, items: list[Any]) -> n.UnaryOp:
        return n.new(n.UnaryOp, span=self._span(meta), op="not", operand=items[0])

    def compare(self, meta: Meta, items: list[Any]) -> n.Compare:
        return n.new(n.Compare, span=self._span(meta), operands=items[0::2], ops=items[1::2])

    def comp_op(self, meta: Meta, items: list[Token]) -> str:
        return " ".join(str(t) for t in items)

    def call(self, meta: Meta, items: list[Any]) -> n.Call:
        return n.new(n.Call, span=self._span(meta), func=items[0], **self._split_args(items[1]))

    def index(self, meta: Meta, items: list[Any]) -> n.Index:
        return n.new(n.Index, span=self._span(meta), value=items[0], index=items[1])

    def subscripts(self, meta: Meta, items: list[Any]) -> Any:
        items = [i for i in items if i is not None]
        if len(items) == 1:  # `x[0,]` is taken as `x[0]`
            return items[0]
        return n.new(n.TupleExpr, span=self._span(meta), items=items)

    def slice(self, meta: Meta, items: list[Any]) -> n.Slice:
        lower, upper, *step = items
        return n.new(n.Slice, span=self._span(meta), lower=lower, upper=upper,
                     step=step[0] if step else None)

    def attr(self, meta: Meta, items: list[Any]) -> n.Attr:
        return n.new(n.Attr, span=self._span(meta), value=items[0], attr=self._ident(items[1]))

    def neg(self, meta: Meta, items: list[Any]) -> n.UnaryOp:
        return n.new(n.UnaryOp, span=self._span(meta), op="-", operand=items[0])

    def pos(self, meta: Meta, items: list[Any]) -> n.UnaryOp:
        return n.new(n.UnaryOp, span=self._span(meta), op="+", operand=items[0])

    def name(self, meta: Meta, items: list[Token]) -> n.Name:
        return n.new(n.Name, span=self._span(meta), id=str(items[0]))

    def int(self, meta: Meta, items: list[Token]) -> n.Constant:
        digits = items[0].replace("_", "")
        # Python refuses to convert over ~4300 digits; such a literal is "too large" (an
        # infinite float, which evaluation reports) rather than an exception in a transformer.
        value = int(digits) if len(digits) < 4000 else float("inf")
        return n.new(n.Constant, span=self._span(meta), value=value)

    def float(self, meta: Meta, items: list[Token]) -> n.Constant:
        text = items[0].replace("_", "")
        value = float(text)
        mantissa = re.split("[eE]", text)[0]
        return n.new(n.Constant, span=self._span(meta), value=value,
                     underflow=value == 0.0 and any(c in "123456789" for c in mantissa))

    def string(self, meta: Meta, items: list[Token]) -> n.Constant:
        return n.new(n.Constant, span=self._span(meta), value=unquote(items[0]))

    def fstring(self, meta: Meta, items: list[Any]) -> n.FString:
        parts = [unescape(str(i)) if isinstance(i, Token) else i for i in items]
        return n.new(n.FString, span=self._span(meta), parts=[p for p in parts if p != ""])

    def true(self, meta: Meta, items: list[Token]) -> n.Constant:
        return n.new(n.Constant, span=self._span(meta), value=True)

    def false(self, meta: Meta, items: list[Token]) -> n.Constant:
        return n.new(n.Constant, span=self._span(meta), value=False)

    def none(self, meta: Meta, items: list[Token]) -> n.Constant:
        return n.new(n.Constant, span=self._span(meta), value=None)

    def ellipsis(self, meta: Meta, items: list[Token]) -> n.EllipsisExpr:
        return n.new(n.EllipsisExpr, span=self._span(meta))

    def tuple(self, meta: Meta, items: list[Any]) -> n.TupleExpr:
        return n.new(n.TupleExpr, span=self._span(meta), items=items)

    def list(self, meta: Meta, items: list[Any]) -> n.ListExpr:
        return n.new(n.ListExpr, span=self._span(meta), items=[i for i in items if i is not None])

    def listcomp(self, meta: Meta, items: list[Any]) -> n.ListComp:
        element, _, target, iterable, *rest = items
        cond = rest[1] if len(rest) == 2 else None
        return n.new(n.ListComp, span=self._span(meta), element=element, target=target,
                     iter=iterable, cond=cond)


def to_nodes(tree: Tree[Token], path: str) -> n.Spec:
    result = ToNodes(path).transform(tree)
    assert isinstance(result, n.Spec)
    return result


def expr_to_node(tree: Tree[Token] | Token, path: str) -> Any:
    """An expression subtree (an f-string's part) as a node."""
    return ToNodes(path).transform(tree)
