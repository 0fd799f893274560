"""The house rules of docs/architecture.md that import-linter does not check itself.

- no import circles among the project's modules (function-level imports included: a circle
  hidden in a function is still a circle in the design);
- no module uses another module's `_private` names;
- no module over MAX_LINES lines: the project's modules (migrations and tests aside) and the
  benchmarks in bench/.

The layers themselves are import-linter's contracts in pyproject.toml (`make lint`)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "credentials", "usage", "kiro_site")
MAX_LINES = 600
# Sized like the modules, but not a package of the import rules above.
BENCH = ROOT / "bench"


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _imports(module: str, path: Path) -> Iterator[tuple[str, str | None, int]]:
    """Yield (imported module, imported name or None, line) for first-party imports."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node)
            if target.split(".")[0] in PACKAGES:
                for alias in node.names:
                    yield target, alias.name, node.lineno


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for module, path in MODULES.items():
        for target, name, _ in _imports(module, path):
            if name and f"{target}.{name}" in MODULES:
                target = f"{target}.{name}"  # `from package import module`
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != module:
                graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _is_package_init(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def test_no_import_circles():
    graph = _graph()
    # A package's __init__ that re-exports its own modules is not a circle of the design.
    for module in graph:
        if _is_package_init(module):
            graph[module] = {t for t in graph[module] if not t.startswith(module + ".")}

    assert _cycles(graph) == []


def _private_uses(module: str, path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text())
    aliases: dict[str, str] = {}
    for target, name, line in _imports(module, path):
        if name is None:
            continue
        if f"{target}.{name}" in MODULES:
            aliases[name] = f"{target}.{name}"
        elif name.startswith("_") and not name.startswith("__"):
            yield f"{module}:{line} imports {target}.{name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and aliases[node.value.id] != module
        ):
            yield f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}"


def test_no_module_uses_another_modules_private_names():
    uses = [use for module, path in MODULES.items() for use in _private_uses(module, path)]

    assert uses == []


def test_no_module_is_over_the_size_limit():
    paths = [*MODULES.values(), *sorted(BENCH.glob("*.py"))]
    oversized = {
        str(path.relative_to(ROOT)): lines
        for path in paths
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }

    assert oversized == {}
