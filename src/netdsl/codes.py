"""Stable diagnostic codes: one per kind of mistake, documented in ``docs/errors.md``.

A code names what went wrong, not where it was found: tools filter and suppress by it, and its
section in the docs shows a bad spec and the fixed one. Codes are never reused; a new kind of
mistake gets the next number. ``NDL0xx`` are errors, ``NDL1xx`` warnings (the spec builds, but
probably not what was meant), ``NDL2xx`` notes (what a check could not cover).
"""

from __future__ import annotations

from typing import Literal

Severity = Literal["error", "warning", "note"]

SYNTAX = "NDL001"
UNKNOWN_NAME = "NDL002"
DUPLICATE = "NDL003"
ARGUMENTS = "NDL004"
TYPE = "NDL005"
VALUE = "NDL006"
SHAPE = "NDL007"
FORWARD = "NDL008"
INIT = "NDL009"
IMPORT = "NDL010"
EXPECT = "NDL011"
LIMIT = "NDL012"
FILE = "NDL013"
MODEL = "NDL014"
CONTAINER = "NDL015"
PARAMETER = "NDL016"
RECURSION = "NDL017"
INTERNAL = "NDL099"

UNMATCHED_INIT = "NDL101"
UNUSED = "NDL102"
FLATTEN = "NDL103"
CHANNELS_LAST = "NDL104"

SKIPPED = "NDL201"
EMPTY = "NDL202"
NO_INPUT = "NDL203"

# code -> (short name, what it means); the docs have one section per entry.
CODES: dict[str, tuple[str, str]] = {
    SYNTAX: ("syntax", "the text does not parse, or a construct stands where the language "
                       "does not allow it"),
    UNKNOWN_NAME: ("unknown-name", "a name, layer, function, keyword or attribute that is not "
                                   "defined"),
    DUPLICATE: ("duplicate", "a name declared twice in one scope"),
    ARGUMENTS: ("arguments", "a call with missing, extra or repeated arguments"),
    TYPE: ("type", "a value of the wrong type"),
    VALUE: ("value", "a value out of its range, or an operation that has no result"),
    SHAPE: ("shape", "tensor shapes that do not fit, found by running the forward on meta"),
    FORWARD: ("forward", "a forward that cannot be compiled"),
    INIT: ("init", "an init rule that cannot apply"),
    IMPORT: ("import", "an import that cannot be resolved"),
    EXPECT: ("expect", "an expect declaration that does not hold"),
    LIMIT: ("limit", "a spec asks for more than a limit allows"),
    FILE: ("file", "a spec file that cannot be read"),
    MODEL: ("model", "no model, or not one model, to build"),
    CONTAINER: ("container", "a sequential, list or dict block used as it cannot be"),
    PARAMETER: ("parameter", "a model parameter given from Python or -p that does not fit"),
    RECURSION: ("recursion", "a block, function, method or let that uses itself, directly or "
                             "through others"),
    INTERNAL: ("internal", "a bug in netdsl met while compiling a spec"),
    UNMATCHED_INIT: ("unmatched-init", "an init rule that sets no parameter"),
    UNUSED: ("unused", "a parameter, child or let that nothing uses"),
    FLATTEN: ("flatten", "a Linear or LayerNorm inferred on an input with more dimensions than "
                         "it probably meant"),
    CHANNELS_LAST: ("channels-last", "an image input that looks channels-last"),
    SKIPPED: ("skipped", "a declaration checked without values for its parameters"),
    EMPTY: ("empty", "a spec file that declares no model"),
    NO_INPUT: ("no-input", "a model without input declarations: its shapes are not checked"),
}


def severity(code: str) -> Severity:
    """The severity a code has by default (``--strict`` makes warnings and notes fail)."""
    kind = code[3]
    return "error" if kind == "0" else "warning" if kind == "1" else "note"
