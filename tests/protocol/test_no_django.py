"""gateway/protocol stays free of Django: checked in source and at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PROTOCOL = Path(__file__).resolve().parents[2] / "gateway" / "protocol"


def test_no_module_under_gateway_protocol_imports_django():
    offenders = []
    for path in PROTOCOL.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "django"]

    assert offenders == []


def _loaded_after_import(package: str, roots: tuple[str, ...]) -> tuple[list[str], str]:
    """Import every module of `package` in a fresh interpreter; return the modules and which
    modules under `roots` that loaded."""
    folder = PROTOCOL.parent / package.rpartition(".")[2]
    modules = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}: importlib.import_module({package!r} + '.' + m)\n"
        f"print(sorted(k for k in sys.modules if k.split('.')[0] in {roots!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROTOCOL.parents[1],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return modules, out.stdout.strip()


def test_importing_every_protocol_module_loads_no_django():
    modules, loaded = _loaded_after_import("gateway.protocol", ("django", "channels"))

    assert modules
    assert loaded == "[]"


def test_importing_the_kiro_client_loads_no_django():
    """gateway/kiro (the HTTP client to Kiro) is below Django too (import-linter checks the
    source; this checks what importing it really loads)."""
    roots = ("django", "channels", "credentials", "usage", "kiro_site")
    modules, loaded = _loaded_after_import("gateway.kiro", roots)

    assert modules
    assert loaded == "[]"
