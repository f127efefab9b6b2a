"""Report: diagnostics printed for people and for CI (text, JSON, GitHub annotations, SARIF).

One :class:`Record` per diagnostic, whatever found it (the check, a usage mistake such as a
missing file); each format prints the same records. Text goes to stderr (results keep stdout);
the machine formats go to stdout, so that ``> report.sarif`` captures them whole.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from . import __version__, codes
from .errors import Diagnostic, inert

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
_GITHUB_LEVELS = {"error": "error", "warning": "warning", "note": "notice"}


@dataclass(frozen=True)
class Record:
    """A diagnostic as every format reports it; positions are 1-based, end column exclusive."""

    path: str | None
    line: int | None
    column: int | None
    end_line: int | None
    end_column: int | None
    severity: codes.Severity
    code: str
    message: str


def record(item: Diagnostic, path: str | None = None, strict: bool = False) -> Record:
    """``path`` stands in where the diagnostic has no span (a file-wide problem); ``strict``
    makes warnings and notes errors."""
    span = item.span
    code = item.code or codes.INTERNAL
    level: codes.Severity = "error" if strict else item.severity
    if span is None:
        return Record(path, None, None, None, None, level, code, item.message)
    return Record(span.path, span.line, span.column, span.end_line, span.end_column, level,
                  code, item.message)


def usage(message: str, path: str | None = None, code: str = codes.FILE) -> Record:
    """A problem with the command itself (a missing file): reported like the rest."""
    return Record(path, None, None, None, None, "error", code, message)


def as_json(records: Sequence[Record]) -> list[dict[str, object]]:
    return [asdict(r) for r in records]


def github(records: Sequence[Record]) -> str:
    """GitHub Actions workflow commands: one annotation per record, escaped as the runner
    requires (``%``, CR and LF everywhere; ``:`` and ``,`` in properties too)."""
    lines = []
    for r in records:
        props = {"file": r.path, "line": r.line, "col": r.column, "endLine": r.end_line,
                 "endColumn": r.end_column, "title": f"{r.code} {codes.CODES[r.code][0]}"}
        written = ",".join(f"{k}={_property(str(v))}" for k, v in props.items() if v is not None)
        lines.append(f"::{_GITHUB_LEVELS[r.severity]} {written}::{_data(r.message)}")
    return "\n".join(lines)


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def sarif(records: Sequence[Record]) -> dict[str, object]:
    """A SARIF 2.1.0 log of one run: the rules are the codes used, results point at them."""
    used = sorted({r.code for r in records})
    rules = [{"id": code, "name": _pascal(codes.CODES[code][0]),
              "shortDescription": {"text": codes.CODES[code][1]},
              "defaultConfiguration": {"level": codes.severity(code)}} for code in used]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "netdsl", "version": __version__, "rules": rules}},
            "results": [_result(r, used.index(r.code)) for r in records],
        }],
    }


def _result(r: Record, rule_index: int) -> dict[str, object]:
    result: dict[str, object] = {"ruleId": r.code, "ruleIndex": rule_index, "level": r.severity,
                                 "message": {"text": r.message}}
    if r.path is None:
        return result
    location: dict[str, object] = {"artifactLocation": {"uri": _uri(r.path)}}
    if r.line is not None:
        location["region"] = {"startLine": r.line, "startColumn": r.column,
                              "endLine": r.end_line, "endColumn": r.end_column}
    result["locations"] = [{"physicalLocation": location}]
    return result


def _uri(path: str) -> str:
    """An absolute path as a file: URI, a relative one as a URI reference (forward slashes,
    reserved characters escaped), as SARIF's artifactLocation wants them."""
    if Path(path).is_absolute():
        return Path(path).as_uri()
    return urllib.parse.quote(path.replace("\\", "/"), safe="/")


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def emit(records: Sequence[Record], fmt: str, texts: Sequence[str] = ()) -> None:
    """Print records in a machine format to stdout (text is printed by the caller, which has
    the source lines)."""
    if fmt == "github" and records:
        print(github(records))
    elif fmt == "sarif":
        print(json.dumps(sarif(records), indent=2))
    elif fmt == "text":
        for text in texts:
            print(inert_text(text), file=sys.stderr)


def inert_text(text: str) -> str:
    """A rendered diagnostic (several lines) made inert line by line for terminals and logs."""
    return "\n".join(inert(line) for line in text.split("\n"))
