"""The denial-of-service specs of issue 10: each was a hang, an out-of-memory kill or a
quadratic blow-up on the main before the work budget, with every default limit respected.

``hardening.py`` runs each in a fresh process under its RSS cap and timeout. Each entry: the
spec file's name, its text, the command (``check`` unless said), the expected exit code and a
regex for the first line of stderr that is netdsl's (torch's warnings are skipped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

STEPS = r".*: error: this spec takes more than 1,000,000 steps to evaluate \(Limits\.max_steps"
MODULES = r".*: error: this builds more than 100,000 modules \(Limits\.max_modules"
TOO_LARGE = r".*: error: arithmetic error: result is too large"
VALID = r"netdsl: 1 valid$"


@dataclass(frozen=True)
class Dos:
    name: str  # the row's label
    spec: str  # the file name
    text: Callable[[], str]
    code: int
    stderr: str
    command: tuple[str, ...] = ("check",)
    after: tuple[str, ...] = ()  # arguments after the spec


def _forward(body: str, extra: str = "") -> str:
    lines = "".join(f"        {line}\n" for line in body.split("\n"))
    return f"model M {{\n    input x: [N, 4]\n{extra}    forward(x) {{\n{lines}    }}\n}}\n"


def _str_inputs() -> str:
    names = [f"s{i}" for i in range(30)]
    inputs = "".join(f"    input {s}: str\n" for s in names)
    body = "".join(f"        x = d[{s}](x)\n" for s in names)
    return (f"model M {{\n    input x: [N, 4]\n{inputs}"
            f"    d = dict {{ a: Identity()  b: Identity() }}\n"
            f"    forward(x, {', '.join(names)}) {{\n{body}        return x\n    }}\n}}\n")


def _rnn(layer: str) -> Callable[[], str]:
    return lambda: (f"model M {{\n    input x: [N, 4]\n    g = {layer}\n"
                    f"    forward(x) = g(x)[0]\n}}\n")


def _lines(count: int, line: Callable[[int], str], head: str = "model M {\n",
           tail: str = "}\n") -> str:
    return head + "".join(line(i) for i in range(count)) + tail


def _init_rules() -> str:
    layers = "".join(f"    l{i} = Linear(1, 1)\n" for i in range(15_000))
    rules = "".join(f'        "l{i}".weight: zeros()\n' for i in range(15_000))
    return f"model M {{\n{layers}    init {{\n{rules}    }}\n}}\n"


def _block_reuse() -> str:
    lets = "".join(f"    let v{i} = {i}\n" for i in range(40_000))
    return (f"block B {{\n{lets}    a = Identity()\n}}\n"
            "model M {\n    s = sequential { B() for i in range(99999) }\n}\n")


LITERAL = "[" + ", ".join(["1"] * 100_000) + "]"

DOS = [
    Dos("forward: x.shape[1] ** e, e = 10**12", "pow_var.net",
        lambda: _forward("e = 1000000000000\nn = x.shape[1] ** e\nreturn x * n"), 1, TOO_LARGE),
    Dos("forward: n = n ** 1024, three times", "pow_chain.net",
        lambda: _forward("n = x.shape[1]\nn = n ** 1024\nn = n ** 1024\nn = n ** 1024\n"
                         "return x * n"), 1, TOO_LARGE),
    Dos("forward: 3 nested loops over 1000 layers", "nested_loops.net",
        lambda: _forward("for p in a { for q in a { for r in a { x = r(q(p(x))) } } }\nreturn x",
                         "    a = list [ Identity() for i in range(1000) ]\n"), 1, STEPS),
    Dos("Linear(round(1, -1000000000), 2)", "round.net",
        lambda: "model M {\n    a = Linear(round(1, -1000000000), 2)\n}\n", 1,
        r".*: error: round\(\): ndigits is at most 400 either way"),
    Dos("30 str inputs over a 2-key dict", "str_inputs.net", _str_inputs, 0, VALID),
    Dos("GRU(4, 3) on [N, 4]", "gru.net", _rnn("GRU(4, 3)"), 0, VALID),
    Dos("LSTM(4, 3, num_layers=10) on [N, 4]", "lstm10.net", _rnn("LSTM(4, 3, num_layers=10)"),
        0, VALID),
    Dos("LSTM(4, 3, num_layers=1000) on [N, 4]", "lstm1000.net",
        _rnn("LSTM(4, 3, num_layers=1000)"), 0, VALID),
    Dos("1000 declarations x 99,000 modules", "many_decls.net",
        lambda: "".join(f"model M{i} {{\n    s = sequential {{ Linear(1, 1) for i in "
                        f"range(99000) }}\n}}\n" for i in range(1000)), 1, MODULES),
    Dos("block of 40,000 lets used 99,999 times", "block_reuse.net", _block_reuse, 1, MODULES),
    Dos("20,000 unknown layers", "errors.net",
        lambda: _lines(20_000, lambda i: f"    c{i} = Lnear{i}(2, 2)\n"), 1,
        r".*: error: unknown layer 'Lnear0'; did you mean 'Linear'\?"),
    Dos("15,000 path rules x 15,000 layers", "init_rules.net", _init_rules, 0, VALID),
    Dos("400 Transformer()", "transformers.net",
        lambda: _lines(400, lambda i: f"    t{i} = Transformer()\n"), 0, VALID),
    Dos("AdaptiveLogSoftmaxWithLoss, 20,000 cutoffs", "adaptive.net",
        lambda: ("model M {\n    a = AdaptiveLogSoftmaxWithLoss(8, 100000, cutoffs=["
                 + ", ".join(str(i) for i in range(1, 20_001)) + "])\n}\n"), 1,
        r".*: error: AdaptiveLogSoftmaxWithLoss\(8, 100000, cutoffs="),
    Dos("repeat over a 100,000-element literal", "literal.net",
        lambda: (f"model M {{\n    s = sequential {{ Linear(len({LITERAL}), 2) "
                 f"for i in range(1000) }}\n}}\n"),
        1, STEPS),
    Dos("1 MiB of 1+1+...", "ones.net",
        lambda: "model M {\n    let a = 1" + "+1" * 524_000 + "\n}\n",
        1, r".*: error: spec has more than 400,000 tokens \(Limits\.max_tokens"),
    Dos("BatchNorm1d(2e8, affine=false), check", "bn.net",
        lambda: "model M {\n    b = BatchNorm1d(200000000, affine=false)\n}\n", 0, VALID),
    Dos("100 x BatchNorm1d(10**9), probe", "bn100.net",
        lambda: ("model M {\n    input x: [N, 4]\n"
                 + "".join(f"    b{i} = BatchNorm1d(1000000000, affine=false)\n"
                           for i in range(100))
                 + "    forward(x) = x\n}\n"), 1,
        r".*: error: M has 0 parameters and 200,000,000,100 buffer elements, over the limit",
        command=("probe",), after=("--input", "1,4")),
    Dos("probe x.repeat(1, 300000000)", "repeat.net",
        lambda: ("model M {\n    input x: [N, 4]\n    a = Linear(4, 4)\n"
                 "    forward(x) = a(x).repeat(1, 300000000)\n}\n"), 1,
        r".*: error: probing M on \[1, 4\] makes 4,800,000,032 bytes of activations",
        command=("probe",), after=("--input", "1,4")),
    Dos("sparse init on Linear(10**6, 1)", "sparse.net",
        lambda: ("model M {\n    input x: [N, 1000000]\n    a = Linear(1000000, 1)\n"
                 "    forward(x) = a(x)\n    init { Linear.weight: sparse(0.5) }\n}\n"), 1, STEPS),
]
