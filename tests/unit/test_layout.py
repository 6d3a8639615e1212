"""The shape issues 12 and 23 set for `ktrdr/`: no import cycles (imports inside functions count),
no module over 400 lines, no function over 50 lines; `ktrdr sandbox` is a stack of feature
packages, each importing only packages below it, none holding more than 20 modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ktrdr"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50
MAX_MODULES_PER_FOLDER = 20
SANDBOX = "ktrdr.cli.sandbox"
# Lowest first: a package may import itself and the packages before it, never one after it.
SANDBOX_LAYERS = (
    "base",
    "slots",
    "home",
    "engine",
    "instances",
    "journal",
    "stack",
    "remote",
    "policy",
    "gate",
    "overview",
    "provision",
    "lifecycle",
    "e2e",
    "doctor",
    "mcp",
    "agent_tools",
    "commands",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the ktrdr modules it imports anywhere in its body. `from pkg import sub`
    counts as importing `pkg.sub` when that is a module, else `pkg`."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_in_ktrdr() -> None:
    assert cycles(import_graph(_modules())) == []


def test_the_cycle_finder_sees_a_cycle_through_a_function_local_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_module_over_400_lines() -> None:
    too_long = {
        name: lines
        for name, path in _modules().items()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}


def test_no_function_over_50_lines() -> None:
    too_long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
                length = (node.end_lineno or start) - start + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert too_long == []


def _sandbox_package(module: str) -> str | None:
    if not module.startswith(SANDBOX + "."):
        return None
    return module[len(SANDBOX) + 1 :].split(".")[0]


def upward_imports(graph: dict[str, set[str]], layers: tuple[str, ...]) -> list[str]:
    """Arrows from a sandbox package to one above it in `layers` (or to one not in it)."""
    found = []
    for module, targets in sorted(graph.items()):
        here = _sandbox_package(module)
        for target in sorted(targets):
            there = _sandbox_package(target)
            if here is None or there is None or here == there:
                continue
            if here not in layers or there not in layers:
                found.append(f"{module} -> {target}: package not in SANDBOX_LAYERS")
            elif layers.index(there) > layers.index(here):
                found.append(f"{module} -> {target}")
    return found


def test_sandbox_packages_import_only_the_packages_below_them() -> None:
    assert upward_imports(import_graph(_modules()), SANDBOX_LAYERS) == []


def test_the_layer_check_sees_an_upward_import() -> None:
    graph = {f"{SANDBOX}.base.proc": {f"{SANDBOX}.gate.loop"}, f"{SANDBOX}.gate.loop": set()}
    assert upward_imports(graph, ("base", "gate")) == [
        f"{SANDBOX}.base.proc -> {SANDBOX}.gate.loop"
    ]


def test_every_sandbox_package_is_layered_and_says_what_it_owns() -> None:
    root = PACKAGE / "cli" / "sandbox"
    packages = {p.name for p in root.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(SANDBOX_LAYERS)
    for name in packages:
        docstring = ast.get_docstring(ast.parse((root / name / "__init__.py").read_text()))
        assert "import" in (docstring or ""), f"{name}/__init__.py says what it may import"


def test_no_folder_over_20_modules() -> None:
    counts: dict[Path, int] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py":
            counts[path.parent] = counts.get(path.parent, 0) + 1
    crowded = {str(folder.relative_to(ROOT)): n for folder, n in counts.items()}
    assert {f: n for f, n in crowded.items() if n > MAX_MODULES_PER_FOLDER} == {}
