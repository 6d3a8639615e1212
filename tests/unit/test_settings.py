"""Every environment variable is read in one place and documented in one table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ktrdr.cli import settings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "sandbox.md"
SERVICE_PACKAGES = ("ktrdr/api", "ktrdr/workers", "ktrdr/db")
ENV_READ = r"""(?:env|environ)(?:\.get)?[\(\[]\s*["']([A-Z_]+)["']"""


def _environ_reads(tree: ast.AST) -> list[int]:
    """Line numbers where `os.environ`/`os.getenv` is read (writes and whole-copies allowed)."""

    def is_environ(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "environ"
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        )

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and is_environ(node.value):
            if isinstance(node.ctx, ast.Load):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "get" and is_environ(node.func.value):
                lines.append(node.lineno)
            if node.func.attr == "getenv":
                lines.append(node.lineno)
        elif isinstance(node, ast.Compare) and any(is_environ(c) for c in node.comparators):
            lines.append(node.lineno)
    return lines


def test_only_the_settings_module_reads_the_environment_in_the_cli() -> None:
    offenders = []
    for path in sorted((ROOT / "ktrdr" / "cli").rglob("*.py")):
        if path.name == "settings.py" and path.parent.name == "cli":
            continue
        for line in _environ_reads(ast.parse(path.read_text(encoding="utf-8"))):
            offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert offenders == [], "read it through ktrdr.cli.settings instead"


def test_the_detector_finds_each_kind_of_read() -> None:
    code = (
        "import os\nos.environ.get('A')\nos.environ['B']\n'C' in os.environ\nos.getenv('D')\n"
        "os.environ['E'] = '1'\ndict(os.environ)\n"
    )
    assert _environ_reads(ast.parse(code)) == [2, 3, 4, 5]


def _documented_names() -> set[str]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z_][A-Z0-9_]*)`", section, flags=re.MULTILINE))


def _service_names() -> set[str]:
    names: set[str] = set()
    for package in SERVICE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            names |= set(
                re.findall(r"""(?:env|environ)(?:\.get)?[\(\[]\s*["']([A-Z_]+)["']""", text)
            )
            names |= set(re.findall(r"""_seconds\(env, ["']([A-Z_]+)["']""", text))
    return names


def _compose_names() -> set[str]:
    text = (ROOT / "docker-compose.sandbox.yml").read_text(encoding="utf-8")
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))


def test_every_variable_the_cli_services_and_compose_file_read_is_documented() -> None:
    documented = _documented_names()
    cli = {v.name for v in settings.VARIABLES}
    assert cli - documented == set()
    assert _service_names() - documented == set()
    assert _compose_names() - documented == set()


def test_the_service_and_compose_scans_find_what_they_should() -> None:
    assert {"KTRDR_DB_PASSWORD", "KTRDR_HEARTBEAT_TIMEOUT_S", "KTRDR_SHARED_DIR"} <= (
        _service_names()
    )
    assert {"KTRDR_API_PORT", "KTRDR_SHARED_DIR", "KTRDR_OWNER"} <= _compose_names()


def test_an_undocumented_name_is_refused() -> None:
    with pytest.raises(KeyError, match="not a documented ktrdr setting"):
        settings.get("KTRDR_NOT_A_SETTING")


def test_seconds_fall_back_to_the_default_on_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KTRDR_REGISTRY_LOCK_TIMEOUT", "soon")
    assert settings.seconds("KTRDR_REGISTRY_LOCK_TIMEOUT", 30.0) == 30.0
    monkeypatch.setenv("KTRDR_REGISTRY_LOCK_TIMEOUT", "2.5")
    assert settings.seconds("KTRDR_REGISTRY_LOCK_TIMEOUT", 30.0) == 2.5
