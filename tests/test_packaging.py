"""The wheel carries the grammar (read from the package when installed) and py.typed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_wheel(directory: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(directory)],
        check=True, capture_output=True)
    (wheel,) = directory.glob("netdsl-*.whl")
    return wheel


def test_wheel_contains_grammar_and_py_typed(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "netdsl/grammar/netdsl.lark" in names
    assert "netdsl/py.typed" in names
    for name in ("netdsl.lark", "netdsl-tables.json"):
        shipped = zipfile.ZipFile(wheel).read(f"netdsl/grammar/{name}").decode()
        assert shipped == (ROOT / "grammar" / name).read_text(encoding="utf-8")


def test_installed_wheel_reads_its_own_grammar(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("import netdsl; from netdsl import parser; "
             "print(netdsl.__file__); print(len(netdsl.parse('model M { a = ReLU() }').models)); "
             "print(parser._grammar_file(parser.TABLES_NAME)); "
             "print(parser._shipped_tables(parser.grammar_text()) is not None)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, env={"PYTHONPATH": str(site), "PATH": ""})
    module_file, count, tables, used = result.stdout.split()
    assert Path(module_file).is_relative_to(site)
    assert count == "1"
    assert Path(tables).is_relative_to(site) and used == "True"  # read, not built


def test_help_and_version_do_not_import_torch() -> None:
    """`netdsl --help` and `--version` answer at once: torch, lark and pydantic are imported
    only by the commands (issue 12)."""
    probe = ("import sys\nfrom netdsl.cli import main\n"
             "for argv in (['--help'], ['--version'], ['check', '--help']):\n"
             "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
             "import netdsl\nassert netdsl.__version__\n"
             "print(sorted(m for m in ('torch', 'lark', 'pydantic') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.splitlines()[-1] == "[]"


def test_fmt_does_not_import_torch() -> None:
    """`netdsl fmt` runs in editors and pre-commit hooks: it needs the parser, not torch."""
    probe = ("import sys\nfrom netdsl.cli import main\n"
             f"code = main(['fmt', '--check', {str(ROOT / 'examples' / 'lenet.net')!r}])\n"
             "print(code, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["0", "False"]


def test_lazy_names_are_the_public_api() -> None:
    import netdsl

    assert sorted(netdsl._HOMES) == sorted(n for n in netdsl.__all__ if n != "__version__")
    for name in netdsl.__all__:
        assert getattr(netdsl, name) is not None
