"""Imports: a spec file and the files it imports -> units with their name scopes.

``from "blocks.net" import BasicBlock`` reads a file relative to the importing file. A path may
not be absolute, may not climb with ``..``, and after resolving symlinks must stay inside the
directory tree of the spec that was loaded first. Cycles are errors.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from . import codes
from . import nodes as n
from .errors import NetDSLError, Span, did_you_mean, fail
from .kept import Kept
from .limits import DEFAULT_LIMITS, Limits, check_depth, check_size
from .parser import parse_tree
from .transform import to_nodes


@dataclass
class Unit:
    """One parsed file and the declarations visible in it (its own and the imported ones)."""

    spec: n.Spec
    text: str
    # Models, blocks, functions and file-level lets (by each name a let binds).
    scope: dict[str, tuple[n.ModelDecl | n.DefDecl | n.Let, Unit]] = field(default_factory=dict)


# A spec is read as the file itself: a final symbolic link is not followed (a committed link to
# /proc/self/environ would print the environment in an error's source line), and a FIFO is
# opened without waiting for a writer, then refused with devices for not being a regular file.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def read_spec(path: Path, limits: Limits = DEFAULT_LIMITS) -> str:
    """The text of a spec file; unreadable or oversized files are errors, not tracebacks."""
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as err:
        raise NetDSLError(_unreadable(path, err), code=codes.FILE) from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        kind = "is a directory, not a spec file" if stat.S_ISDIR(mode) else \
            "not a regular file (a FIFO, socket or device)"
        raise NetDSLError(f"{path}: {kind}", code=codes.FILE)
    with os.fdopen(descriptor, "rb") as stream:
        check_size(os.fstat(descriptor).st_size, limits, str(path))  # before reading a byte
        try:
            data = stream.read(limits.max_bytes + 1)
        except OSError as err:
            raise NetDSLError(_unreadable(path, err), code=codes.FILE) from None
    check_size(len(data), limits, str(path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise NetDSLError(f"{path}: not UTF-8 text (byte {err.start})", code=codes.FILE) from None


def _unreadable(path: Path, err: OSError) -> str:
    if err.errno == errno.ELOOP and os.path.islink(path):
        return (f"{path}: is a symbolic link; netdsl reads spec files themselves, not links "
                f"(give the file it points to)")
    if isinstance(err, IsADirectoryError):
        return f"{path}: is a directory, not a spec file"
    return f"{path}: cannot read: {err.strerror or err}"


# Parsed files, by (text, path, limits): a training script or notebook that loads a spec again
# does not parse it again. Nodes are frozen, so a cached Spec is shared safely; only texts up
# to _CACHED_BYTES are kept, so the cache stays small.
_PARSED: Kept[n.Spec] = Kept(64)
_CACHED_BYTES = 256 * 1024


def parse(text: str, path: str, limits: Limits = DEFAULT_LIMITS) -> n.Spec:
    """A spec's nodes; the same text, path and limits parse once per process."""
    key = (text, path, limits)
    spec = _PARSED.get(key)
    if spec is None:
        spec = _parse(text, path, limits)
        if len(text) <= _CACHED_BYTES:
            _PARSED.put(key, spec)
    return spec


def _parse(text: str, path: str, limits: Limits) -> n.Spec:
    check_size(len(text.encode("utf-8", "surrogatepass")), limits, path)
    check_depth(text, limits, path)
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        fail("spec contains a NUL character", Span(path=path, line=line, column=1,
                                                   end_line=line, end_column=2), codes.FILE)
    return to_nodes(parse_tree(text, path), path)


@dataclass
class Loader:
    """Loads a spec and its imports, each file once, keeping every text for error messages."""

    root: Path
    limits: Limits = DEFAULT_LIMITS
    units: dict[Path, Unit] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    # The files' texts as an earlier load read them (a pickle's recipe): nothing is read from disk.
    texts: Mapping[str, str] | None = None

    def load_text(self, text: str, path: str, stack: tuple[Path, ...] = ()) -> Unit:
        self.sources[path] = text
        unit = Unit(parse(text, path, self.limits), text)
        for ident, decl in _declared(unit.spec):
            if ident.name in unit.scope:
                fail(f"'{ident.name}' is declared twice", ident.span, codes.DUPLICATE)
            unit.scope[ident.name] = (decl, unit)
        for imp in unit.spec.imports:
            self._import(unit, imp, Path(path).parent, stack)
        return unit

    def load_file(self, path: Path, stack: tuple[Path, ...] = ()) -> Unit:
        resolved = path.resolve()
        if resolved not in self.units:
            text = read_spec(path, self.limits) if self.texts is None else self.texts[str(path)]
            self.units[resolved] = self.load_text(text, str(path), (*stack, resolved))
        return self.units[resolved]

    def _import(self, unit: Unit, imp: n.Import, base: Path, stack: tuple[Path, ...]) -> None:
        target = self._resolve(imp, base)
        if target.resolve() in stack:
            chain = " -> ".join(p.name for p in (*stack, target.resolve()))
            fail(f"import cycle: {chain}", imp.path_span, codes.IMPORT)
        imported = self.load_file(target, stack)
        for ident in imp.names:
            found = imported.scope.get(ident.name)
            if found is None:
                fail(f"'{imp.path}' declares no '{ident.name}'"
                     f"{did_you_mean(ident.name, imported.scope)}", ident.span, codes.IMPORT)
            if ident.name in unit.scope:
                fail(f"'{ident.name}' is already declared", ident.span, codes.DUPLICATE)
            unit.scope[ident.name] = found

    def _resolve(self, imp: n.Import, base: Path) -> Path:
        raw = imp.path
        if not raw or PurePosixPath(raw).is_absolute() or PureWindowsPath(raw).is_absolute() \
                or PureWindowsPath(raw).drive:
            fail(f"import path '{raw}' must be relative to the importing file",
                 imp.path_span, codes.IMPORT)
        if ".." in PurePosixPath(raw.replace("\\", "/")).parts:
            fail(f"import path '{raw}' may not use '..'", imp.path_span, codes.IMPORT)
        target = base / raw
        if self.texts is not None:  # checked when the texts were first loaded
            return target
        try:  # a symlink loop, a name past the file system's 255 bytes
            inside = target.resolve().is_relative_to(self.root.resolve())
            exists = target.is_file()
        except (OSError, RuntimeError, ValueError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else "a symlink loop"
            fail(f"cannot import '{raw}': {reason.lower()}", imp.path_span, codes.IMPORT)
        if not inside:
            fail(f"import path '{raw}' leaves the spec's directory", imp.path_span, codes.IMPORT)
        if not exists:
            fail(f"cannot import '{raw}': no such file", imp.path_span, codes.IMPORT)
        return target


def _declared(spec: n.Spec) -> list[tuple[n.Ident, n.ModelDecl | n.DefDecl | n.Let]]:
    """Every name a file declares at its top level, in order."""
    found: list[tuple[n.Ident, n.ModelDecl | n.DefDecl | n.Let]] = []
    found += [(m.name, m) for m in spec.models]
    found += [(d.name, d) for d in spec.defs]
    found += [(ident, let) for let in spec.lets for ident in n.target_names(let.target)]
    return found
