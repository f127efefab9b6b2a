"""Hints for Python habits: the message that says what to write instead, at the offending token.

Users coming from PyTorch write Python: ``def forward(self, x):``, ``lambda``, ``nn.`` /
``torch.`` / ``F.`` prefixes, ``self.fc``, ``//`` and ``/* */`` comments; and anyone loses a
bracket or slips on a keyword. The parser (parser.py) asks here in two places:

* When a parse fails (:func:`hint_for_error`), from three things and no second parse: the
  failing token, lark's value stack (the tokens just shifted: ``nn . Linear``, or the word
  before the failing one), and one linear scan of the text up to the failure (:class:`_Scan`:
  strings, comments, words and brackets, for the brackets left open, the last ``//`` and the
  last ``lambda``). A few mistakes are known by the LALR state they stop the parser in, taken
  once from the examples of ``_KNOWN_MISTAKES`` (:func:`known_mistake`).
* When the Python spelling happens to parse (``y = self.fc(x)``, ``F.relu(x)``, ``def
  forward(self, x) { ... }``), from one walk over the tree (:func:`hint_for_tree`).

A hint is a message and the ``[start, end)`` positions in the text it is about; the parser
turns it into a located error. Nothing here imports the parser: the Lark object is passed in.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedEOF, UnexpectedInput, UnexpectedToken

# A message, and the start and end of the text it is about.
Hint = tuple[str, int, int]
# A hint from the tree, with the module prefix it is about (None for `self`).
_TreeHint = tuple[str, int, int, str | None]

# Module prefixes a PyTorch user writes; none of them is a name in a spec.
_PREFIXES = frozenset({"nn", "torch", "F"})
_CONTAINERS = {"Sequential": "sequential { ... }", "ModuleList": "list [ ... ]",
               "ModuleDict": "dict { ... }"}
_OPENER_OF = {"}": "{", "]": "[", ")": "("}  # of each closing bracket
_CLOSER_OF = {v: k for k, v in _OPENER_OF.items()}
_ITEMS = ("an item is a child (name = Layer(...)) or starts with let, input, expect, param, "
          "buffer, tie, forward, def, init, if, for or assert")
_STATEMENTS = "a statement is an assignment (name = ...), for, if, return or assert"
# The keywords an item may start with, by the token after the name that follows them.
_ITEM_KEYWORDS = {"=": ("let", "param", "buffer"), ":": ("input", "expect"), ".": ("tie",),
                  "(": ("def",), "{": ("if",), "in": ("for",)}

# Strings, comments, words, brackets and the two ways C comments start: enough to track
# brackets and to find a lambda without lexing the spec again.
_SCAN = re.compile(r"""#[^\n]*|f?"(?:[^"\\\r\n]|\\.)*"|f?'(?:[^'\\\r\n]|\\.)*'"""
                   r"""|[A-Za-z_][A-Za-z0-9_]*|//|/\*|[{}()\[\]]|\n""")
_LAMBDA = re.compile(r"[ \t]*([A-Za-z_*][A-Za-z0-9_ \t,*]{0,80})?:")  # bounded: linear
_PY_DEF = re.compile(r"([ \t]*)def[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*\(([^()\n]*)\)[ \t]*"
                     r"(->[^:{=\n]*)?(:)[^\n]*")
_DECLARATION = re.compile(r"(?:model|block)[ \t]+[A-Za-z]|from[ \t]+[\"']")
_REST_OF_LINE = re.compile(r"//[^\n]*\n[ \t\r]*")
_ASSIGNED = re.compile(r"([A-Za-z][A-Za-z0-9_]*)[ \t]*=[ \t]*\Z")
_DOT_NAME = re.compile(r"[ \t]*\.[ \t]*([A-Za-z][A-Za-z0-9_]*)")
_CALLED = re.compile(r"[ \t]*\(")
_NEXT = re.compile(r"[ \t\r\n]*(=(?!=)|:|\.|\(|\{|in(?![A-Za-z0-9_]))")
_HABITS = re.compile(r"\b(?:self|nn|torch|F)[ \t]*\.|\bdef[ \t]+forward\b|\bself\b")

# A word followed by another where an item begins: a layer without its parentheses
# (`ReLU Linear(1, 1)`), or a word used as a keyword (`task x = ...`); see _bare_word.
_PARENTHESES = "a layer needs parentheses, even without arguments: write 'ReLU()'"

# Known mistakes, recognised by the parser state they leave it in (lark's match_examples).
_KNOWN_MISTAKES = {
    _PARENTHESES: [
        "model M { a = ReLU }",
        "model M { a = sequential { ReLU } }",
        "model M { a = sequential { ReLU Linear(1, 1) } }",
    ],
    "a block of items needs braces: write 'if condition { ... }' (there is no ':' "
    "after the condition)": [
        "model M { if a: b = ReLU() }",
        "model M { forward(x) { if a: x = x } }",
    ],
    "a conditional expression is written 'a if condition else b', on one line with its "
    "value; an 'if' that starts a line starts an if-item": [
        "model M { let a = b\n if c else d }",
        "model M { forward(x) { y = x\n if c else x\n return y } }",
    ],
    "a conditional value is written 'a if condition else b' (an if with braces is an item or "
    "a statement, not a value)": [
        "model M { let a = if true { 1 } else { 2 } }",
        "model M { a = Linear(1, if true { 1 } else { 2 }) }",
        "model M { forward(x) { y = if a { x } else { x } return y } }",
    ],
    "a tuple is written in parentheses: let a, b = (1, 2)": [
        "model M { let a, b = 1, 2 }",
        "model M { let a = 1, 2 }",
        "model M { forward(x) { a, b = x, x\n return a } }",
    ],
    "on the line of a module, 'for' makes a repeat ('Layer(...) for i in range(n)', no "
    "braces); a for loop item ('for v in values { ... }') starts on a line of its own": [
        "model M { s = sequential { Linear(2, 2) for i in range(2) { ReLU() } } }",
    ],
    "a call's result is assigned to a name (y = fc(x)); only a list's append and extend "
    "stand alone": [
        "model M { forward(x) { fc(x) return x } }",
    ],
    "a for loop item needs a body in braces ('for v in values { ... }'); a repeat "
    "('Layer(...) for i in range(n)') is an item of a list or sequential, with its 'for' on "
    "the line of its item": [
        "model M { a = list [ Linear(1, 1)\n for i in range(3) ] }",
        "model M { a = sequential { ReLU()\n for i in range(3) } }",
        "model M { a = Linear(1, 1) for i in range(3) }",
    ],
    "'init' starts an init block: init { Linear.weight: normal(0.0, 0.02) }; a param is "
    "initialised in its own expression, as torchvision writes it: "
    "param p = empty(n).normal_(std=0.02)": [
        "model M { param p = empty(3) init normal(std=0.02) }",
    ],
}


# ---------------------------------------------------------------- known mistakes


def known_mistake(err: UnexpectedInput, parser: Lark) -> str | None:
    """The message of the known mistake that stopped ``parser`` in the state of ``err``."""
    if not isinstance(err, UnexpectedToken) or err.state is None:
        return None
    return _mistake_states(parser).get((err.state.position, err.token.type))


# lark's match_examples compares the whole parser stack, so an example matches only a mistake
# at the same nesting depth after the same number of items; the state alone says enough.
@functools.lru_cache(maxsize=1)
def _mistake_states(parser: Lark) -> dict[tuple[Any, str], str]:
    """The parser state and token at which each known mistake's examples fail."""
    states: dict[tuple[Any, str], str] = {}
    for message, examples in _KNOWN_MISTAKES.items():
        for example in examples:
            try:
                parser.parse(example, start="start")
            except UnexpectedToken as err:
                if err.state is not None:
                    states.setdefault((err.state.position, err.token.type), message)
            except UnexpectedInput:
                continue
    return states


def at_end(err: UnexpectedInput) -> bool:
    """Whether the parse failed at the end of the text."""
    return isinstance(err, UnexpectedEOF) or (
        isinstance(err, UnexpectedToken) and err.token.type == "$END")


# ---------------------------------------------------------------- a failed parse


def hint_for_error(err: UnexpectedInput, parser: Lark, text: str, pos: int) -> Hint | None:
    """A Python habit or a lost bracket that explains the failed parse: message and where.
    ``pos`` is where in ``text`` the parse failed (its end for an unexpected end)."""
    scan = _Scan(text, pos)
    line_start = text.rfind("\n", 0, pos) + 1
    return (_python_def(text, pos, line_start, scan)
            or _comment(text, pos, line_start, scan)
            or _lambda(text, pos, scan)
            or _brackets(err, text, pos, line_start, scan)
            or _prefix(err, text)
            or _bare_word(err, parser, text)
            or _statement_word(err))


class _Scan:
    """The brackets open at a position of the text, and what a scan up to it met."""

    def __init__(self, text: str, end: int) -> None:
        self.open: list[tuple[str, int, int]] = []  # (bracket, position, indent of its line)
        self.suspect: tuple[str, int, int] | None = None
        self.extra: int | None = None  # a closing bracket that closes nothing
        self.lambda_at: int | None = None  # the last `lambda x:`
        self.slashes = -1  # the last '//'
        line_start, indent, first = 0, -1, True
        for match in _SCAN.finditer(text, 0, end):
            token, pos = match.group(), match.start()
            if token == "\n":
                line_start, indent, first = pos + 1, -1, True
                continue
            if token[0] == "#":
                continue
            if indent < 0:
                indent = len(text[line_start:pos]) - len(text[line_start:pos].lstrip(" \t"))
            if token in _CLOSER_OF:
                self.open.append((token, pos, indent))
            elif token in _OPENER_OF:
                if not self.open or self.open[-1][0] != _OPENER_OF[token]:
                    self.extra = pos if not self.open else None
                    break
                opener = self.open.pop()
                # A '}' starting a line less indented than the line of its '{' most likely
                # closes an outer brace: the '}' of this one is the one missing.
                if token == "}" and first and indent < opener[2] and self.suspect is None:
                    self.suspect = opener
            elif token == "//":
                self.slashes = pos
            elif token == "lambda" and _LAMBDA.match(text, match.end()):
                self.lambda_at = pos
            first = False

    def in_body(self, before: int | None = None) -> bool:
        """Whether a '{' is open (one opened before ``before``)."""
        return any(bracket == "{" and (before is None or at < before)
                   for bracket, at, _ in self.open)


def _python_def(text: str, pos: int, line_start: int, scan: _Scan
                ) -> Hint | None:
    """`def forward(self, x):` and every other Python function header."""
    line_end = text.find("\n", pos)
    match = _PY_DEF.fullmatch(text, line_start, len(text) if line_end < 0 else line_end)
    if match is None:
        return None
    name, params, ret = match.group(2), match.group(3), match.group(4) or ""
    message = _def_message(name, params, ret, has_def=True, colon=True,
                           in_model=scan.in_body(), body=" { ... }")
    return message, match.end(1), match.end(5)


def _def_message(name: str, params: str, ret: str, *, has_def: bool, colon: bool,
                 in_model: bool, body: str) -> str:
    if name == "__init__":
        return ("there is no __init__: a model declares its children in its body, as in "
                "'fc = Linear(...)'")
    args = [" ".join(a.split()) for a in params.split(",") if a.strip()]
    has_self = bool(args) and args[0].split(":")[0].split("=")[0].strip() == "self"
    if has_self:
        args = args[1:]
    if in_model or name == "forward":  # run-time functions: their parameters take no types
        args = [re.split(r"[:=]", a)[0].strip() for a in args]
        ret = ""
    shown = ", ".join(args)
    shown = shown if len(shown) <= 40 else "..."
    ret = f" {' '.join(ret.split())}" if ret.strip() else ""
    fixes = ["'def'"] if name == "forward" and has_def else []
    fixes += ["'self'"] if has_self else []
    how = [f"without {' and '.join(fixes)}"] if fixes else []
    how += ["with braces instead of ':'"] if colon else []
    what = "the forward" if name == "forward" else "a method" if in_model else "a function"
    head = f"forward({shown})" if name == "forward" else f"def {name}({shown}){ret}"
    return f"{what} is written {', '.join(how)}: write '{head}{body}'"


def _comment(text: str, pos: int, line_start: int, scan: _Scan) -> Hint | None:
    """`// a comment`: where '//' cannot be floor division, or where it made the rest of its
    line an expression that does not parse (`let a = 4  // the width`)."""
    if text.startswith("/*", pos):
        return ("comments start with '#' and run to the end of the line; there are no /* */ "
                "comments", pos, pos + 2)
    at = pos if text.startswith("//", pos) else scan.slashes
    # The parse fails at the '//', on its line, or at the start of the next line.
    if at < 0 or not (at >= line_start or _REST_OF_LINE.fullmatch(text, at, pos)):
        return None
    return "comments start with '#', not '//'", at, at + 2


def _lambda(text: str, pos: int, scan: _Scan) -> Hint | None:
    at = scan.lambda_at
    if text.startswith("lambda", pos) and _LAMBDA.match(text, pos + 6):
        at = pos  # the parse failed at the lambda itself
    # A lambda is written on one line: the parse fails on it or at the start of the next.
    if at is None or text.count("\n", at, pos) > 1:
        return None
    match = _LAMBDA.match(text, at + len("lambda"))
    assert match is not None
    params = [" ".join(p.split()) for p in (match.group(1) or "").split(",") if p.strip()]
    if not params and at != pos and "\n" in text[at:pos]:
        return None  # `lambda: ReLU()` on an earlier line may be a dict key
    # `scale = lambda x: ...` becomes `def scale(x) = ...`
    named = _ASSIGNED.search(text, max(text.rfind("\n", 0, at) + 1, at - 100), at)
    name = named.group(1) if named else "f"
    if scan.in_body():
        example, kind = f"def {name}({', '.join(params)}) = ...", "a method"
    else:
        typed = ", ".join(f"{p}: float" for p in params)
        example, kind = f"def {name}({typed}) = ...", "a function"
    return (f"there are no lambdas: write {kind} with def, as in '{example}', and call it by "
            f"name", at, at + len("lambda"))


def _brackets(err: UnexpectedInput, text: str, pos: int, line_start: int, scan: _Scan
              ) -> Hint | None:
    """A bracket left open (found at the end of the file, at a closing bracket of another
    kind, or at a declaration that starts a line inside a body), or one that closes nothing."""
    token = err.token if isinstance(err, UnexpectedToken) else None
    if token is not None and str(token) in _OPENER_OF and token.type != "$END":
        if scan.extra is not None or not scan.open:
            return (f"'{token}' has no '{_OPENER_OF[str(token)]}' to close", pos, pos + 1)
        if scan.open[-1][0] == _OPENER_OF[str(token)]:
            return None
    elif not (at_end(err) or (_DECLARATION.match(text, line_start)
                                and scan.in_body(line_start))):
        return None
    if not scan.open:
        return None
    bracket, at, _ = scan.suspect or scan.open[-1]
    return f"'{bracket}' is not closed: its '{_CLOSER_OF[bracket]}' is missing", at, at + 1


def _prefix(err: UnexpectedInput, text: str) -> Hint | None:
    """`nn.Linear(...)`, `torch.nn.Linear`, `self.fc = ...` where the parse cannot take a
    dotted name (a child, a sequential item, an init rule's function)."""
    if not isinstance(err, UnexpectedToken) or err.state is None:
        return None
    stack = err.state.value_stack
    chain: list[Token] = []
    i = len(stack) - 1
    while i >= 0 and isinstance(stack[i], Token) and stack[i].type == "NAME":
        chain.append(stack[i])
        if i < 1 or not (isinstance(stack[i - 1], Token) and stack[i - 1].type == "DOT"):
            break
        i -= 2
    chain.reverse()
    if not chain or (chain[0] not in _PREFIXES and chain[0] != "self"):
        return None
    names = [str(t) for t in chain]
    start, end = chain[0].start_pos or 0, chain[-1].end_pos or 0
    if err.token.type == "DOT":
        while match := _DOT_NAME.match(text, end):
            names.append(match.group(1))
            end = match.end()
    if len(names) < 2:
        return None
    if names[0] == "self" and err.token.type == "EQUAL":
        rest = ".".join(names[1:])
        if set(err.expected or ()) == {"LPAR"}:  # a statement: `self.h = x` in a forward
            return (f"forward variables are bare names: write '{rest} = ...', not "
                    f"'self.{rest} = ...'", start, end)
        return (f"children are declared by their bare name: write '{rest} = ...', not "
                f"'self.{rest} = ...'", start, end)
    called = "(...)" if _CALLED.match(text, end) else None
    return _prefix_message(names, called), start, end


def _prefix_message(names: list[str], call: str | None) -> str:
    """The message for a dotted name that starts with 'self' or a module prefix; ``call`` is
    the call's arguments as shown, or None when the name is not called."""
    written = ".".join(names)
    shown = call or ""
    last = names[-1]
    if names[0] == "self":
        rest = ".".join(names[1:])
        if rest == "training":
            return "the module's mode is 'training': write 'training', not 'self.training'"
        return (f"children are used by their bare name: write '{rest}{shown}', not "
                f"'self.{rest}{shown}'")
    if last in _CONTAINERS:
        return f"containers are written '{_CONTAINERS[last]}', not '{written}(...)'"
    if "init" in names[1:-1]:
        return (f"init functions are named without a prefix and without the trailing '_': "
                f"write '{last.rstrip('_')}(...)', not '{written}(...)'")
    if last[:1].isupper():
        shown = "(...)" if call else ""
        return (f"layer names are torch.nn class names without a prefix: write '{last}{shown}', "
                f"not '{written}{shown}'")
    if call:
        return (f"torch functions are called by their own names, without a prefix: write "
                f"'{last}{shown}', not '{written}{shown}'")
    return f"torch names are written without a prefix: write '{last}', not '{written}'"


def _bare_word(err: UnexpectedInput, parser: Lark, text: str) -> Hint | None:
    """A word followed by another where an item starts: a layer without parentheses
    (`ReLU Linear(1, 1)`), or a word written as a keyword (`task x = ...`). A word called
    like a layer where a container may come (`a = sequental { ... }`) is a misspelt one."""
    if not isinstance(err, UnexpectedToken) or err.state is None or not err.state.value_stack:
        return None
    prev = err.state.value_stack[-1]
    if not (isinstance(prev, Token) and prev.type == "NAME"):
        return None
    word, token = str(prev), err.token
    where = (prev.start_pos or 0, prev.end_pos or 0)
    if token.type in ("LBRACE", "LSQB") and set(err.expected or ()) == {"LPAR"}:
        kinds = ("sequential", "dict") if token.type == "LBRACE" else ("list",)
        best = _close_word(word, kinds)
        if best:
            return f"'{word}' is not a keyword; did you mean '{best}'?", *where
        return (f"'{word}' is not a keyword: a container is sequential {{ ... }}, list [ ... ] "
                f"or dict {{ ... }}", *where)
    if known_mistake(err, parser) != _PARENTHESES:
        return None
    if token.type == "NAME" and word[:1].islower():
        after = _NEXT.match(text, token.end_pos or 0)
        if after and not (after.group(1) == "(" and str(token)[:1].isupper()):
            best = _close_word(word, _ITEM_KEYWORDS[after.group(1)])
            if best:
                return f"'{word}' is not a keyword; did you mean '{best}'?", *where
            return f"'{word}' is not a keyword: {_ITEMS}", *where
    return f"a layer needs parentheses, even without arguments: write '{word}()'", *where


def _statement_word(err: UnexpectedInput) -> Hint | None:
    """`task x`, `retrun x`, `print x` at the start of a statement."""
    if not (isinstance(err, UnexpectedToken) and err.state is not None
            and err.state.value_stack and "AUG_OP" in (err.expected or ())
            and err.token.type in ("NAME", "INT", "FLOAT", "STRING")):
        return None
    prev = err.state.value_stack[-1]
    if not (isinstance(prev, Token) and prev.type == "NAME"):
        return None
    where = (prev.start_pos or 0, prev.end_pos or 0)
    best = _close_word(str(prev), ("return", "assert", "for", "if"))
    if best:
        return f"'{prev}' is not a keyword; did you mean '{best}'?", *where
    return f"'{prev}' is not a keyword: {_STATEMENTS}", *where


def _close_word(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` is a slip of: letters swapped (`lte`), or one or two letters off
    (`retrun`, `inptu`). Weaker matches (`task` and `stack`) are not suggested."""
    lowered = word.lower()
    best, score = None, 0.0
    for candidate in candidates:
        ratio = 1.0 if sorted(lowered) == sorted(candidate) else difflib.SequenceMatcher(
            None, lowered, candidate).ratio()
        if ratio >= 0.75 and ratio > score:
            best, score = candidate, ratio
    return best


def misspelt_keyword(err: UnexpectedToken, parser: Lark) -> str | None:
    """The keyword an unexpected name is a slip of, among those that may come where it is."""
    if err.token.type != "NAME":
        return None
    words = [v for v in map(functools.partial(_keyword, parser), err.expected or ()) if v]
    return _close_word(str(err.token).strip(), words)


def _keyword(parser: Lark, name: str) -> str | None:
    """The word a keyword terminal matches, or None."""
    try:
        pattern = parser.get_terminal(name).pattern
    except KeyError:
        return None
    value = pattern.value if pattern.type == "str" else ""
    return value if value.isalpha() else None


# ---------------------------------------------------------------- a parsed spec


def hint_for_tree(tree: Tree[Token], text: str, *, start: int = 0, prefixes: bool = True
                  ) -> Hint | None:
    """The first of the Python spellings that parse: `y = self.fc(x)`, `F.relu(x)`, `def
    forward(self, x) { ... }`, `norm_layer=nn.BatchNorm2d`. A module prefix that the spec
    defines as a name somewhere (a forward variable `F`) is left to the checks that know
    scopes. ``start`` is where the parsed source starts in ``text``; ``prefixes=False``
    reports `self.` only."""
    if not _HABITS.search(text, start):
        return None
    hits: list[_TreeHint] = []  # message, start, end, prefix used
    total: dict[str, int] = {}
    as_prefix: dict[str, int] = {}
    todo: list[tuple[Any, bool, Any]] = [(tree, False, None)]
    while todo:
        node, in_model, parent = todo.pop()
        if isinstance(node, Token):
            if node.type == "NAME" and node in _PREFIXES:
                total[str(node)] = total.get(str(node), 0) + 1
            continue
        if not isinstance(node, Tree):
            continue
        data = node.data
        hit: _TreeHint | None = None
        if data == "model_decl":
            in_model = True
        elif data == "def_decl" and in_model:
            hit = _method_habit(node, text)
        elif data == "forward":
            hit = _forward_habit(node)
        elif data == "attr" and not (parent is not None and parent.data == "attr"
                                     and parent.children[0] is node):
            called = parent if parent is not None and parent.data == "call" and (
                parent.children[0] is node) else None
            hit = _attr_habit(node, called, text)
        elif data == "call_stmt":
            base, name = node.children[0], node.children[1]
            hit = _chain_habit([base, name], node.meta.end_pos, text)
        elif data in ("type_target", "dotted"):
            hit = _target_habit(node, text)
        if hit is not None:
            hits.append(hit)
            if hit[3] is not None:
                as_prefix[hit[3]] = as_prefix.get(hit[3], 0) + 1
        todo.extend((child, in_model, node) for child in reversed(node.children))
    for message, begin, end, prefix in hits:
        if prefix is None or (prefixes and total.get(prefix, 0) <= as_prefix.get(prefix, 0)):
            return message, begin, end
    return None


def _method_habit(node: Tree[Token], text: str) -> _TreeHint | None:
    """`def forward(self, x) { ... }` and `def helper(self, x)` in a model."""
    name, params, body = node.children[0], node.children[1], node.children[3]
    if not (isinstance(name, Token) and isinstance(params, Tree)) or params.meta.empty:
        return None
    inside = text[params.meta.start_pos + 1:params.meta.end_pos - 1]
    shown = " { ... }" if isinstance(body, Tree) and body.data == "stmt_body" else " = ..."
    if name == "forward":
        message = _def_message("forward", inside, "", has_def=True, colon=False, in_model=True,
                               body=shown)
        return message, node.meta.start_pos, params.meta.end_pos, None
    first = params.children[0] if params.children else None
    if isinstance(first, Tree) and first.children and first.children[0] == "self":
        self_token = first.children[0]
        assert isinstance(self_token, Token)
        message = _def_message(str(name), inside, "", has_def=True, colon=False,
                               in_model=True, body="")
        return message, self_token.start_pos or 0, self_token.end_pos or 0, None
    return None


def _forward_habit(node: Tree[Token]) -> _TreeHint | None:
    """`forward(self, x)`."""
    args = [c for c in node.children[1:] if isinstance(c, Token) and c.type == "NAME"]
    if not args or args[0] != "self":
        return None
    message = _def_message("forward", ", ".join(args), "", has_def=False, colon=False,
                           in_model=True, body="")
    return message, args[0].start_pos or 0, args[0].end_pos or 0, None


def _attr_habit(node: Tree[Token], call: Tree[Token] | None, text: str
                ) -> _TreeHint | None:
    names: list[Token] = []
    while isinstance(node, Tree) and node.data == "attr":
        attr = node.children[1]
        assert isinstance(attr, Token)
        names.append(attr)
        node = node.children[0]  # type: ignore[assignment]
    if not (isinstance(node, Tree) and node.data == "name"):
        return None
    base = node.children[0]
    assert isinstance(base, Token)
    return _chain_habit([base, *reversed(names)], call.meta.end_pos if call else None, text)


def _chain_habit(chain: list[Any], call_end: int | None, text: str
                 ) -> _TreeHint | None:
    """A dotted name that starts with 'self' or a module prefix; ``call_end`` is where its
    call's arguments end, if it is called."""
    base = chain[0]
    if base != "self" and base not in _PREFIXES:
        return None
    last = chain[-1]
    call = None
    if call_end is not None:
        call = " ".join(text[last.end_pos:call_end].split())
        call = call if len(call) <= 30 else "(...)"
    message = _prefix_message([str(t) for t in chain], call)
    return message, base.start_pos or 0, last.end_pos or 0, None if base == "self" else str(base)


def _target_habit(node: Tree[Token], text: str) -> _TreeHint | None:
    """`init { nn.Linear.weight: ... }` and `tie self.a.weight = self.b.weight`."""
    names = [c for c in node.children if isinstance(c, Token)]
    if not names or (names[0] != "self" and (node.data != "type_target"
                                             or names[0] not in _PREFIXES)):
        return None
    start, end = node.meta.start_pos, node.meta.end_pos
    written = " ".join(text[start:end].split())
    kept = list(names)
    while kept and (kept[0] == "self" or kept[0] in _PREFIXES):
        kept.pop(0)
    if len(kept) < 1 + (node.data == "type_target" and names[-1] == node.children[-1]):
        return None  # `nn.weight: ...`: no layer name to keep
    rest = written[written.index(str(kept[0]), len(str(names[0]))):]
    first = str(names[0])
    if first == "self":
        return (f"children are used by their bare name: write '{rest}', not '{written}'",
                start, end, None)
    return (f"layer names are torch.nn class names without a prefix: write '{rest}', not "
            f"'{written}'", start, end, first)
