"""The shape issue 23 sets for `tests/`: what test modules share lives in tests/support, and no
module imports a test module (`test_*.py` or `conftest.py`); fixtures reach other modules through
conftest.py, helpers through tests/support (imports inside functions count)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
SUPPORT = TESTS / "support"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_test_module(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return name.startswith("tests.") and (last.startswith("test_") or last == "conftest")


def imported_test_modules(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """The test modules (`tests.….test_*`, `tests.….conftest`) that `source`, the text of
    `module`, imports: `import X`, `from X import …`, `from PACKAGE import test_x`, relative
    imports too."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if _is_test_module(base):
                found.append(base)
            found += [
                f"{base}.{alias.name}"
                for alias in node.names
                if _is_test_module(f"{base}.{alias.name}")
            ]
    return found


def test_no_module_imports_a_test_module() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        module = _module_name(path)
        is_package = path.name == "__init__.py"
        for imported in imported_test_modules(path.read_text(), module, is_package=is_package):
            offenders.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert offenders == [], (
        "test modules share helpers through tests/support and fixtures through conftest.py:\n"
        + "\n".join(offenders)
    )


def test_shared_modules_live_in_tests_support() -> None:
    loose = [
        str(path.relative_to(ROOT))
        for path in sorted(TESTS.rglob("*.py"))
        if SUPPORT not in path.parents
        and path.name not in {"conftest.py", "__init__.py"}
        and not path.name.startswith("test_")
    ]
    assert loose == [], f"helpers outside tests/support: {loose}"


def test_the_checker_sees_every_way_of_importing_a_test_module() -> None:
    source = """
from tests.integration.test_lifecycle import Workspace
from tests.unit.sandbox.conftest import DockerStandIn
import tests.unit.test_server
from tests.unit import test_layout
from .conftest import repo
from . import test_mcp
from tests.support.waiting import wait_for
from tests.support import cli
import tests.support.slots

def later():
    from tests.unit.sandbox.test_doctor import interrupted_create
"""
    found = imported_test_modules(source, "tests.unit.sandbox.test_x")

    assert found == [
        "tests.integration.test_lifecycle",
        "tests.unit.sandbox.conftest",
        "tests.unit.test_server",
        "tests.unit.test_layout",
        "tests.unit.sandbox.conftest",
        "tests.unit.sandbox.test_mcp",
        "tests.unit.sandbox.test_doctor",
    ]


def test_a_relative_import_in_a_package_init_is_resolved_from_the_package() -> None:
    found = imported_test_modules(
        "from .conftest import x\n", "tests.unit.sandbox", is_package=True
    )
    assert found == ["tests.unit.sandbox.conftest"]
