"""The documentation stays true: its spec examples check clean, and excerpts match their files.

Every ```netdsl block of the README and docs/ is either a complete spec, which must pass
``netdsl.check``, or an excerpt (its first line names the example file it comes from, and it
contains "(excerpt)"), whose every line must appear in that file as written.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import Scale

import netdsl
from netdsl.fmt import SPEC_BLOCK as BLOCK
from netdsl.fmt import is_excerpt

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCE = re.compile(r"#\s*(examples/\S+\.net)")


def blocks() -> list[tuple[str, int, str]]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            found.append((path.relative_to(ROOT).as_posix(), line, match.group(1)))
    return found


BLOCKS = blocks()


@pytest.mark.parametrize(("doc", "line", "block"),
                         [b for b in BLOCKS if not is_excerpt(b[2])],
                         ids=[f"{d}:{n}" for d, n, b in BLOCKS if not is_excerpt(b)])
def test_example_checks_clean(doc: str, line: int, block: str, tmp_path: Path) -> None:
    for example in ROOT.joinpath("examples").glob("*.net"):  # for `from "residual.net" import`
        (tmp_path / example.name).write_text(example.read_text())
    spec = tmp_path / "doc_example.net"
    spec.write_text(block)
    assert netdsl.check(spec, modules={"Scale": Scale}) == []


def names_file(block: str) -> bool:
    return SOURCE.search(block.splitlines()[0]) is not None


# Fragments written for the text alone ("..." and no file) are left out: nothing to match.
EXCERPTS = [b for b in BLOCKS if is_excerpt(b[2]) and names_file(b[2])]


@pytest.mark.parametrize(("doc", "line", "block"), EXCERPTS,
                         ids=[f"{d}:{n}" for d, n, _ in EXCERPTS])
def test_excerpt_matches_its_file(doc: str, line: int, block: str) -> None:
    source = SOURCE.search(block.splitlines()[0])
    assert source is not None
    text = (ROOT / source.group(1)).read_text(encoding="utf-8")
    lines = {raw.strip() for raw in text.splitlines()}
    missing = [written for written in block.splitlines()[1:]
               if written.strip() not in ("", "...") and written.strip() not in lines]
    assert not missing, f"{doc}:{line}: not in {source.group(1)}: {missing}"


def test_there_are_examples_and_excerpts() -> None:
    assert len(EXCERPTS) >= 5
    assert sum(not is_excerpt(b) for _, _, b in BLOCKS) >= 20
    # An excerpt says which file it is from, so that it can be checked.
    assert all(names_file(b) for _, _, b in BLOCKS if "(excerpt)" in b.splitlines()[0])
