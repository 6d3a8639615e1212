"""No process-global state in the sandbox core: which engine a call talks to (and whether that
engine answered) is passed along as a value, so two engines work from one process at once. A
module-level list, dict, set, context variable or cache is where such state hides."""

from __future__ import annotations

import importlib
import pkgutil
from contextvars import ContextVar
from types import ModuleType

import ktrdr.cli.sandbox

MUTABLE = (list, dict, set, bytearray, ContextVar)
# UPPER_CASE globals are constant tables (PEP 8), never written after import. Beyond those, each
# allowed global says why it holds no state of a command, an engine or an instance:
ALLOWED = {
    # Parsed compose files keyed by (path, mtime, size): a pure function of the file's content.
    "ktrdr.cli.sandbox.base.stack_file._cache",
}


def _core_modules() -> list[ModuleType]:
    package = ktrdr.cli.sandbox
    names = [
        info.name
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + ".")
        if ".commands" not in info.name
    ]
    return [importlib.import_module(name) for name in sorted(names)]


def module_state(module: ModuleType) -> list[str]:
    """`module.name` for each global of `module` (defined there) that holds mutable state."""
    found = []
    for name, value in vars(module).items():
        if name.startswith("__") or getattr(value, "__module__", module.__name__) != (
            module.__name__
        ):
            continue
        cached = callable(value) and hasattr(value, "cache_info")  # functools.cache & co
        constant = name.lstrip("_").isupper() and not isinstance(value, ContextVar)
        if (isinstance(value, MUTABLE) and not constant) or cached:
            found.append(f"{module.__name__}.{name}")
    return found


def test_the_sandbox_core_keeps_no_module_level_mutable_state() -> None:
    found = [item for module in _core_modules() for item in module_state(module)]
    assert [item for item in found if item not in ALLOWED] == []


def test_the_finder_sees_a_cell_a_context_variable_and_a_cache() -> None:
    import functools

    module = ModuleType("ktrdr.cli.sandbox.example")
    module.cell = [None]  # type: ignore[attr-defined]  # what the finder must see
    module.var = ContextVar("var")  # type: ignore[attr-defined]
    module.cached = functools.cache(lambda: 1)  # type: ignore[attr-defined]
    module.cached.__module__ = module.__name__
    module.LIMITS = {"a": 1}  # type: ignore[attr-defined]  # a constant table
    assert module_state(module) == [
        "ktrdr.cli.sandbox.example.cell",
        "ktrdr.cli.sandbox.example.var",
        "ktrdr.cli.sandbox.example.cached",
    ]
